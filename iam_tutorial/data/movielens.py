"""MovieLens-1M: download, validated loading, standard sequences, leave-one-out split.

Two sources give the same per-user sequences of original movie ids (tests/test_movielens.py proves it):
the official GroupLens files (`ml-1m/`), preprocessed the standard way, and the SASRec benchmark form
(`ml-1m-sasrec/ml-1m.txt` plus id maps). Partial data is refused or used only for what it covers.
"""

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from iam_tutorial.paths import data_dir

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
ML1M_RATINGS_ROWS = 1_000_209
ML1M_USERS = 6_040
MIN_ITEM_RATINGS = 5  # the standard filter: movies with fewer ratings in the whole data set go

SASREC_BASE = "https://raw.githubusercontent.com"
SASREC_FILES = {  # file -> (url, sha256)
    "ml-1m.txt": (
        f"{SASREC_BASE}/kang205/SASRec/master/data/ml-1m.txt",
        "b725f3acb3986fe3130bffd1e77a74d182a1f51799567a236dbd60270f95b0a2",
    ),
    "sas_to_original_items.txt": (
        f"{SASREC_BASE}/asash/ml1m-sas-mapping/main/sas_to_original_items.txt",
        "9ae42c23af0b0fe2f189b9d5acc6cf3936bffe1a9568390cf5d100c0c1b1fca1",
    ),
    "sas_to_original_users.txt": (
        f"{SASREC_BASE}/asash/ml1m-sas-mapping/main/sas_to_original_users.txt",
        "121893a66ab13fad83a67e12e3b3e6ddc56bcd01f0bcedf2ccb10bd8405e6239",
    ),
}

# The official `::` files: columns and the dtype each must parse to.
DAT_SCHEMAS = {
    "ratings.dat": {"user": "int32", "movie": "int32", "rating": "int8", "timestamp": "int64"},
    "movies.dat": {"movie": "int32", "title": "string", "genres": "string"},
    "users.dat": {
        "user": "int32",
        "gender": "string",
        "age": "int16",
        "occupation": "int16",
        "zip": "string",
    },
}


class DataError(RuntimeError):
    """Missing, partial or corrupt MovieLens data; the message says what to do."""


# --- download -----------------------------------------------------------------------------------


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, algorithm: str, expected: str) -> Path:
    """Fetch `url` to `dest` with a progress bar; verify its checksum; write atomically.

    The bytes go to a temporary file beside `dest` and are renamed only once the checksum
    matches, so an interrupted or corrupt download never leaves a half file behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = _digest(Path(tmp), algorithm)
        if actual != expected:
            raise DataError(f"{url}: {algorithm} {actual} != expected {expected}; try again.")
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DataError(
            f"Could not download {url} ({e}). Offline? Fetch it on another machine and place the "
            f"files as described in data/README.md, or set IAM_DATA_DIR to a folder that has them."
        ) from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_ml1m(root: Path | None = None) -> Path:
    """Download and unpack the official ML-1M zip into `root/ml-1m` (skipped when present)."""
    root = Path(root or data_dir())
    target = root / "ml-1m"
    if all((target / name).exists() for name in DAT_SCHEMAS):
        return target
    archive = download(ML1M_URL, root / "ml-1m.zip", "md5", ML1M_MD5)
    with zipfile.ZipFile(archive) as z:
        z.extractall(root)  # the archive holds one folder, ml-1m/
    return target


def download_sasrec(root: Path | None = None) -> Path:
    """Download the SASRec benchmark sequences and id maps into `root/ml-1m-sasrec`."""
    target = Path(root or data_dir()) / "ml-1m-sasrec"
    for name, (url, sha256) in SASREC_FILES.items():
        if not (target / name).exists():
            download(url, target / name, "sha256", sha256)
    return target


# --- the official files -------------------------------------------------------------------------


def read_dat(path: Path) -> pd.DataFrame:
    """Read one official `::`-separated latin-1 file into a typed frame, validating every row."""
    path = Path(path)
    schema = DAT_SCHEMAS[path.name]
    if not path.exists():
        raise DataError(
            f"Missing {path}. Run `python -m iam_tutorial.data` to download MovieLens-1M, or "
            f"place the official files in {path.parent} (see data/README.md)."
        )
    lines = path.read_bytes().decode("latin-1").splitlines()
    rows = [line.split("::") for line in lines]
    bad = [i for i, r in enumerate(rows) if len(r) != len(schema)]
    if bad:
        i = bad[0]
        raise DataError(
            f"{path}: {len(bad)} rows lack {len(schema)} '::'-separated fields "
            f"(first: line {i + 1}: {lines[i][:80]!r}). Wrong separator or a truncated/corrupt "
            f"file: download it again."
        )
    frame = pd.DataFrame(rows, columns=list(schema))
    for column, dtype in schema.items():
        if dtype != "string":
            values = pd.to_numeric(frame[column], errors="coerce")
            if values.isna().any():
                i = int(values.isna().to_numpy().argmax())
                raise DataError(
                    f"{path}: non-numeric {column} on line {i + 1}: {lines[i][:80]!r}. "
                    f"The file is corrupt: download it again."
                )
            frame[column] = values
    return frame.astype(schema)


def load_movies(root: Path | None = None) -> pd.DataFrame:
    """Movies indexed by id: `title` keeps its year (titles repeat; always map by id)."""
    movies = read_dat(Path(root or data_dir()) / "ml-1m" / "movies.dat")
    movies["genres"] = movies["genres"].str.split("|")
    return movies.set_index("movie")


def load_users(root: Path | None = None) -> pd.DataFrame:
    return read_dat(Path(root or data_dir()) / "ml-1m" / "users.dat").set_index("user")


def load_ratings(root: Path | None = None, allow_partial: bool = False) -> pd.DataFrame:
    """All ratings in file order. A file that is not the complete official one raises unless
    `allow_partial`; then `attrs["complete"]` is False and `attrs["covered_users"]` holds the users
    whose ratings are certainly all there (every user but the last one in the file)."""
    path = Path(root or data_dir()) / "ml-1m" / "ratings.dat"
    ratings = read_dat(path)
    complete = len(ratings) == ML1M_RATINGS_ROWS
    if not complete and not allow_partial:
        raise DataError(
            f"{path} has {len(ratings):,} rows, not the official {ML1M_RATINGS_ROWS:,}: it is partial. "
            f"Download the complete file (`python -m iam_tutorial.data`), or pass allow_partial=True "
            f"to use only the users it fully covers."
        )
    users = ratings["user"].unique()
    ratings.attrs["complete"] = complete
    ratings.attrs["covered_users"] = users if complete else users[users != ratings["user"].iloc[-1]]
    return ratings


def sequences_from_ratings(
    ratings: pd.DataFrame, keep_items=None, min_count: int = MIN_ITEM_RATINGS
) -> dict[int, list[int]]:
    """The standard preprocessing: implicit feedback (every rating counts), movies with fewer than
    `min_count` ratings removed (or only `keep_items` kept), each user ordered by (timestamp,
    position in the file). The item filter needs the whole data set, so partial ratings need
    `keep_items`."""
    if keep_items is None:
        if not ratings.attrs.get("complete", True):
            raise DataError(
                f"The >= {min_count}-ratings item filter needs the complete ratings.dat; this one "
                f"is partial. Pass keep_items (e.g. the benchmark's item map) or download it whole."
            )
        counts = ratings["movie"].value_counts()
        keep_items = counts.index[counts >= min_count]
    kept = ratings[ratings["movie"].isin(np.asarray(keep_items))]
    kept = kept.assign(row=np.arange(len(kept))).sort_values(["user", "timestamp", "row"])
    return {int(u): g.tolist() for u, g in kept.groupby("user", sort=True)["movie"]}


# --- the benchmark form -------------------------------------------------------------------------


def _read_pairs(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"Missing {path}. Run `python -m iam_tutorial.data` or see data/README.md.")
    try:
        pairs = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not two integers per line ({e}); download it again.") from e
    if pairs.shape[1] != 2:
        raise DataError(f"{path}: expected 2 columns, found {pairs.shape[1]}; download it again.")
    return pairs


def load_benchmark_sequences(root: Path | None = None) -> dict[int, list[int]]:
    """SASRec's ml-1m.txt mapped back to original user and movie ids (file order kept)."""
    folder = Path(root or data_dir()) / "ml-1m-sasrec"
    pairs = _read_pairs(folder / "ml-1m.txt")
    user_map = dict(_read_pairs(folder / "sas_to_original_users.txt").tolist())
    item_map = dict(_read_pairs(folder / "sas_to_original_items.txt").tolist())
    missing = (
        set(np.unique(pairs[:, 0])) - user_map.keys()
        | set(np.unique(pairs[:, 1])) - item_map.keys()
    )
    if missing:
        raise DataError(
            f"{folder}: ids without a mapping, e.g. {sorted(missing)[:5]}; re-download."
        )
    sequences: dict[int, list[int]] = {}
    for user, item in pairs.tolist():
        sequences.setdefault(user_map[user], []).append(item_map[item])
    return dict(sorted(sequences.items()))


def count_rows(path: Path) -> int:
    """Lines in a file, counted without parsing it."""
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# --- one entry point -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """Chronological movie-id sequences of the selected users, and where they came from."""

    by_user: dict[int, list[int]]
    source: str  # "official ratings.dat" or "SASRec benchmark ml-1m.txt"


def load_sequences(n_users: int | None = None, root: Path | None = None) -> Sequences:
    """Sequences of original users 1..n_users (all when None), from the complete official ratings
    when present, else from the benchmark form. Raises when the data cannot cover the request."""
    root = Path(root or data_dir())
    ratings_path = root / "ml-1m" / "ratings.dat"
    benchmark = root / "ml-1m-sasrec" / "ml-1m.txt"
    rows = count_rows(ratings_path) if ratings_path.exists() else None
    if rows == ML1M_RATINGS_ROWS:
        by_user, source = sequences_from_ratings(load_ratings(root)), "official ratings.dat"
    elif benchmark.exists():
        by_user, source = load_benchmark_sequences(root), "SASRec benchmark ml-1m.txt"
    elif rows is not None:
        raise DataError(
            f"{ratings_path} is partial ({rows:,} of {ML1M_RATINGS_ROWS:,} rows) and no "
            f"benchmark sequences are in {benchmark.parent}; the >= 5-ratings filter needs the whole "
            f"data set. Run `python -m iam_tutorial.data` to download both."
        )
    else:
        raise DataError(
            f"No MovieLens-1M in {root}. Run `python -m iam_tutorial.data` (downloads ~6 MB), or "
            f"set IAM_DATA_DIR to a folder holding ml-1m/ (see data/README.md)."
        )
    wanted = range(1, (n_users or ML1M_USERS) + 1)
    missing = [u for u in wanted if u not in by_user]
    if missing:
        raise DataError(
            f"{source} lacks users {missing[:5]}... of 1..{len(wanted)}; use fewer users."
        )
    return Sequences({u: by_user[u] for u in wanted}, source)


# --- split and statistics -----------------------------------------------------------------------


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out over catalog indices 1..n_items (0 is padding): per user, `train` is all but
    the last two items, `valid` the second-last and `test` the last."""

    users: list[int]
    train: list[list[int]]
    valid: list[int]
    test: list[int]
    movie_ids: np.ndarray  # catalog index -> original movie id (index 0 unused)
    source: str = ""  # where the sequences came from (Sequences.source)

    @property
    def n_items(self) -> int:
        return len(self.movie_ids) - 1

    def histories(self, split: str) -> tuple[list[list[int]], list[int]]:
        """(input histories, targets): valid sees train; test sees train + the valid item."""
        if split == "valid":
            return self.train, self.valid
        if split == "test":
            return [t + [v] for t, v in zip(self.train, self.valid, strict=True)], self.test
        raise ValueError(f"Unknown split {split!r}: use 'valid' or 'test'.")


def leave_one_out(sequences: Sequences | dict[int, list[int]]) -> LeaveOneOut:
    """Index the catalog (movies seen by these users, sorted by id) and split each user."""
    by_user = sequences.by_user if isinstance(sequences, Sequences) else sequences
    short = [u for u, s in by_user.items() if len(s) < 3]
    if short:
        raise DataError(f"Users {short[:5]} have < 3 items; leave-one-out needs train/valid/test.")
    movie_ids = np.array([0] + sorted({m for s in by_user.values() for m in s}))
    index = {int(m): i for i, m in enumerate(movie_ids)}
    seqs = [[index[m] for m in s] for s in by_user.values()]
    return LeaveOneOut(
        users=list(by_user),
        train=[s[:-2] for s in seqs],
        valid=[s[-2] for s in seqs],
        test=[s[-1] for s in seqs],
        movie_ids=movie_ids,
        source=sequences.source if isinstance(sequences, Sequences) else "given sequences",
    )


def sequence_stats(sequences: Sequences | dict[int, list[int]]) -> dict[str, float]:
    """Users, items, interactions and history-length percentiles."""
    by_user = sequences.by_user if isinstance(sequences, Sequences) else sequences
    lengths = np.array([len(s) for s in by_user.values()])
    stats = {
        "users": len(by_user),
        "items": len({m for s in by_user.values() for m in s}),
        "interactions": int(lengths.sum()),
        "mean_length": round(float(lengths.mean()), 1),
    }
    for q in (0, 50, 90, 100):
        stats[f"p{q}_length"] = int(np.percentile(lengths, q, method="nearest"))
    return stats
