"""MovieLens-1M: download, validated loading, standard sequences, leave-one-out split.

Two sources give the same per-user sequences of original movie ids (tests/test_movielens.py proves
it): the official GroupLens files (`ml-1m/`), preprocessed the standard way, and the SASRec
benchmark form (`ml-1m-sasrec/ml-1m.txt` plus id maps). Partial data is refused or used only for
what it covers; damaged files (empty, cut off, re-encoded, edited: checked byte by byte and against
the official checksums) are refused with what to do, and every result records its source and files'
sha256.
"""

import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
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

# The complete official files whose bytes are known (ratings.dat's are not: its row count and
# format are checked instead). The sha256 of the files in the official zip; md5s in data/README.md.
OFFICIAL_SHA256 = {
    "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
}
SYNTHETIC_MARKER = "SYNTHETIC"  # a fixture folder holding this file is exempt from the checksums
REDOWNLOAD = "re-download it with `python -m iam_tutorial.data`"
# Bytes the official files never hold: C0 controls but the newline, DEL, and latin-1's C1 range
# (str.splitlines would also cut lines at some of them, shifting every row after).
STRAY_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f-\x9f]")

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


def download_ml1m(root: Path | None = None, force: bool = False) -> Path:
    """Download and unpack the official ML-1M zip into `root/ml-1m` (skipped when present,
    unless `force`: then the files are replaced)."""
    root = Path(root or data_dir())
    target = root / "ml-1m"
    if not force and all((target / name).exists() for name in DAT_SCHEMAS):
        return target
    archive = download(ML1M_URL, root / "ml-1m.zip", "md5", ML1M_MD5)
    with zipfile.ZipFile(archive) as z:
        z.extractall(root)  # the archive holds one folder, ml-1m/
    return target


def download_sasrec(root: Path | None = None, force: bool = False) -> Path:
    """Download the SASRec benchmark sequences and id maps into `root/ml-1m-sasrec` (those
    present are kept, unless `force`)."""
    target = Path(root or data_dir()) / "ml-1m-sasrec"
    for name, (url, sha256) in SASREC_FILES.items():
        if force or not (target / name).exists():
            download(url, target / name, "sha256", sha256)
    return target


# --- the official files -------------------------------------------------------------------------


def _line(raw: bytes, offset: int) -> tuple[int, str]:
    """(line number, text) of the line holding byte `offset`."""
    start, end = raw.rfind(b"\n", 0, offset) + 1, raw.find(b"\n", offset)
    return raw.count(b"\n", 0, offset) + 1, raw[start : end if end >= 0 else None].decode("latin-1")


def check_bytes(path: Path, raw: bytes) -> None:
    """Refuse bytes no official file has: none at all, a last line without its newline (a cut-off
    download), UTF-8 instead of latin-1, stray control bytes; and, where the official file is
    known (OFFICIAL_SHA256), any other bytes."""
    if not raw:
        raise DataError(f"{path} is empty: the file is corrupt; {REDOWNLOAD}.")
    if not raw.endswith(b"\n"):
        n, last = _line(raw, len(raw) - 1)
        raise DataError(
            f"{path} is cut off: its last line ({n:,}: {last[:80]!r}) has no newline "
            f"(an interrupted download or copy); {REDOWNLOAD}."
        )
    if not raw.isascii() and _is_utf8(raw):
        n, line = _line(raw, re.search(rb"[\x80-\xff]", raw).start())
        raise DataError(
            f"{path} is UTF-8, not the official latin-1 (line {n} would read "
            f"{line[:60]!r}): it was converted; {REDOWNLOAD}."
        )
    if stray := STRAY_BYTES.search(raw):
        n, line = _line(raw, stray.start())
        crlf = " (Windows line endings)" if stray.group() == b"\r" else ""
        raise DataError(
            f"{path}: stray byte 0x{stray.group()[0]:02x} on line {n}{crlf}: {line[:60]!r}; "
            f"the file is corrupt; {REDOWNLOAD}."
        )
    expected = OFFICIAL_SHA256.get(path.name)
    if expected and not (path.parent / SYNTHETIC_MARKER).exists():
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expected:
            raise DataError(
                f"{path} is not the official file (sha256 {actual[:12]}..., expected "
                f"{expected[:12]}...): edited or damaged; {REDOWNLOAD}."
            )


def _is_utf8(raw: bytes) -> bool:
    """True when non-ASCII bytes decode as UTF-8: the official latin-1 accents never do."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_dat(path: Path) -> pd.DataFrame:
    """Read one official `::`-separated latin-1 file into a typed frame, validating every byte
    (check_bytes) and row."""
    path = Path(path)
    schema = DAT_SCHEMAS[path.name]
    if not path.exists():
        raise DataError(
            f"Missing {path}. Run `python -m iam_tutorial.data` to download MovieLens-1M, or "
            f"place the official files in {path.parent} (see data/README.md)."
        )
    raw = path.read_bytes()
    check_bytes(path, raw)
    lines = raw.decode("latin-1").splitlines()
    rows = [line.split("::") for line in lines]
    bad = [i for i, r in enumerate(rows) if len(r) != len(schema)]
    if bad:
        i = bad[0]
        raise DataError(
            f"{path}: {len(bad)} rows lack {len(schema)} '::'-separated fields "
            f"(first: line {i + 1}: {lines[i][:80]!r}). Wrong separator or a truncated/corrupt "
            f"file: {REDOWNLOAD}."
        )
    frame = pd.DataFrame(rows, columns=list(schema))
    for column, dtype in schema.items():
        if dtype != "string":
            values = pd.to_numeric(frame[column], errors="coerce")
            if values.isna().any():
                i = int(values.isna().to_numpy().argmax())
                raise DataError(
                    f"{path}: non-numeric {column} on line {i + 1}: {lines[i][:80]!r}. "
                    f"The file is corrupt: {REDOWNLOAD}."
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
            f"{path} has {len(ratings):,} rows, not the official {ML1M_RATINGS_ROWS:,}: it is "
            "partial. "
            f"Download the complete file (`python -m iam_tutorial.data --force`), or pass "
            f"allow_partial=True to use only the users it fully covers."
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


def sha256_of(path: Path, expected: str | None = None) -> str:
    """The file's sha256; raises when `expected` is given and differs (fixtures are exempt)."""
    actual = _digest(path, "sha256")
    if expected and actual != expected and not (path.parent / SYNTHETIC_MARKER).exists():
        raise DataError(
            f"{path} is not the published file (sha256 {actual[:12]}..., expected "
            f"{expected[:12]}...): edited or damaged; {REDOWNLOAD}."
        )
    return actual


def benchmark_files(root: Path | None = None) -> dict[str, str]:
    """`ml-1m-sasrec/<file>` -> sha256 of the benchmark files, each checked against SASREC_FILES."""
    folder = Path(root or data_dir()) / "ml-1m-sasrec"
    for name in SASREC_FILES:
        if not (folder / name).exists():
            raise DataError(
                f"Missing {folder / name}. Run `python -m iam_tutorial.data` or see data/README.md."
            )
    return {
        f"ml-1m-sasrec/{name}": sha256_of(folder / name, expected)
        for name, (_, expected) in SASREC_FILES.items()
    }


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


def ratings_problem(path: Path) -> tuple[str, bool]:
    """Why `ratings.dat` is not the complete official file, judged from its newlines and last
    byte alone (parsing a million rows to decide which source to use would be slow):
    ("", False) when it may be; (reason, damaged) otherwise, `damaged` when it is broken rather
    than a clean prefix (partial) or absent."""
    if not path.exists():
        return "ratings.dat absent", False
    rows, size = count_rows(path), path.stat().st_size
    if size == 0:
        return "ratings.dat empty", True
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            return f"ratings.dat cut off mid-line after {rows:,} rows", True
    if rows > ML1M_RATINGS_ROWS:
        return f"ratings.dat has {rows:,} rows, more than the official {ML1M_RATINGS_ROWS:,}", True
    if rows < ML1M_RATINGS_ROWS:
        return f"ratings.dat partial: {rows:,} of {ML1M_RATINGS_ROWS:,} rows", False
    return "", False


_NOTED: set[str] = set()


def note(message: str) -> None:
    """One line on stderr, once per process: a fallback is said, never silent."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"note: {message}", file=sys.stderr)


# --- one entry point -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequences:
    """Chronological movie-id sequences of the selected users, and where they came from."""

    by_user: dict[int, list[int]]
    # "official ratings.dat", or "SASRec benchmark ml-1m.txt (why ratings.dat was not used)".
    source: str
    files: dict[str, str] = field(default_factory=dict)  # file read (relative) -> its sha256


def load_sequences(n_users: int | None = None, root: Path | None = None) -> Sequences:
    """Sequences of original users 1..n_users (all when None), from the complete official ratings
    when present, else from the benchmark form (the same sequences; `source` says why, and a
    damaged ratings.dat is also named on stderr). Raises when the data cannot cover the request."""
    root = Path(root or data_dir())
    ratings_path = root / "ml-1m" / "ratings.dat"
    benchmark = root / "ml-1m-sasrec" / "ml-1m.txt"
    problem, damaged = ratings_problem(ratings_path)
    if not problem:
        by_user, source = sequences_from_ratings(load_ratings(root)), "official ratings.dat"
        files = {"ml-1m/ratings.dat": sha256_of(ratings_path)}
    elif benchmark.exists():
        files, by_user = benchmark_files(root), load_benchmark_sequences(root)
        source = f"SASRec benchmark ml-1m.txt ({problem})"
        if damaged:
            note(
                f"{ratings_path.parent}: {problem}; using the SASRec benchmark ml-1m.txt (the "
                f"same sequences) instead. To repair ratings.dat, {REDOWNLOAD}."
            )
    elif ratings_path.exists():
        raise DataError(
            f"{ratings_path}: {problem}, and no benchmark sequences are in {benchmark.parent}; "
            f"the >= 5-ratings filter needs the whole data set. Run `python -m iam_tutorial.data "
            f"--force` to download both."
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
    return Sequences({u: by_user[u] for u in wanted}, source, files)


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
    files: dict[str, str] = field(default_factory=dict)  # the files read -> sha256 (Sequences)

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
        files=dict(sequences.files) if isinstance(sequences, Sequences) else {},
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
