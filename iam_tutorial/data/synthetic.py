"""A seeded, tiny MovieLens-shaped data set for fast unit tests, written in the official formats.

`make_synthetic_ml1m(root)` writes `root/ml-1m/{movies,users,ratings}.dat` (latin-1, `::`) and the
matching benchmark form `root/ml-1m-sasrec/` derived with the standard preprocessing, so every
loader runs on it exactly as on the real files. A `SYNTHETIC` file in each folder exempts them from
the official checksums (every other check still applies).
"""

from pathlib import Path

import numpy as np

from iam_tutorial.data.movielens import MIN_ITEM_RATINGS, SYNTHETIC_MARKER

MARKER_TEXT = "A synthetic test fixture, not MovieLens: the official checksums do not apply.\n"

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Drama", "Thriller"]


def make_synthetic_ml1m(root: Path, n_users: int = 30, n_movies: int = 40, seed: int = 0) -> Path:
    """Write the fixture under `root`; returns `root`. Movie 1 is titled with a latin-1 accent."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "ml-1m").mkdir(parents=True, exist_ok=True)
    movies = []
    for m in range(1, n_movies + 1):
        title = "Misérables, Les (1995)" if m == 1 else f"Synthetic Movie {m} ({1960 + m % 40})"
        genres = "|".join(sorted(rng.choice(GENRES, size=rng.integers(1, 4), replace=False)))
        movies.append(f"{m}::{title}::{genres}")
    users = [f"{u}::{'MF'[u % 2]}::25::{u % 21}::{10000 + u}" for u in range(1, n_users + 1)]
    ratings, popularity = [], rng.dirichlet(np.ones(n_movies) * 0.5)
    for u in range(1, n_users + 1):
        seen = rng.choice(
            np.arange(1, n_movies + 1), size=rng.integers(8, 20), replace=False, p=popularity
        )
        times = 978300000 + np.sort(rng.integers(0, 50, size=len(seen)))  # repeated times: ties
        ratings += [
            f"{u}::{m}::{rng.integers(1, 6)}::{t}" for m, t in zip(seen, times, strict=True)
        ]
    for name, lines in (("movies.dat", movies), ("users.dat", users), ("ratings.dat", ratings)):
        (root / "ml-1m" / name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (root / "ml-1m" / SYNTHETIC_MARKER).write_text(MARKER_TEXT)
    _write_benchmark(root, ratings)
    return root


def _write_benchmark(root: Path, rating_lines: list[str]) -> None:
    """The SASRec form of the fixture: >= 5-ratings filter, (timestamp, file position) order."""
    rows = [tuple(int(x) for x in line.split("::")) for line in rating_lines]
    counts = np.bincount([m for _, m, _, _ in rows])
    kept = [(u, t, i, m) for i, (u, m, _, t) in enumerate(rows) if counts[m] >= MIN_ITEM_RATINGS]
    kept.sort()
    items = {m: i + 1 for i, m in enumerate(sorted({m for *_, m in kept}))}
    users = {u: i + 1 for i, u in enumerate(sorted({u for u, *_ in kept}))}
    out = root / "ml-1m-sasrec"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ml-1m.txt").write_text("".join(f"{users[u]} {items[m]}\n" for u, _, _, m in kept))
    (out / "sas_to_original_items.txt").write_text("".join(f"{i} {m}\n" for m, i in items.items()))
    (out / "sas_to_original_users.txt").write_text("".join(f"{i} {u}\n" for u, i in users.items()))
    (out / SYNTHETIC_MARKER).write_text(MARKER_TEXT)
