"""`python -m iam_tutorial.data [--mode quick|full] [--force]`: fetch MovieLens-1M if missing or
damaged, print statistics. Offline or on broken data it prints one line and exits 2."""

import argparse

from iam_tutorial.cli import fail, guarded
from iam_tutorial.config import get_config
from iam_tutorial.data.movielens import (
    DAT_SCHEMAS,
    DataError,
    check_bytes,
    download_ml1m,
    download_sasrec,
    load_sequences,
    ratings_problem,
    sequence_stats,
)
from iam_tutorial.paths import data_dir


def official_problem(root) -> str:
    """Why an official file present in `root/ml-1m` cannot be used as it is ('' when none). A
    clean partial ratings.dat is no problem here: the benchmark form covers it."""
    for name in DAT_SCHEMAS:
        path = root / "ml-1m" / name
        try:
            if path.exists():
                check_bytes(path, path.read_bytes())
        except DataError as e:
            return str(e)
    problem, damaged = ratings_problem(root / "ml-1m" / "ratings.dat")
    return f"{root / 'ml-1m'}: {problem}." if damaged else ""


def ensure_data(force: bool = False) -> None:
    """Download what is missing or damaged (everything with `force`); offline, say where to put
    the files instead."""
    root = data_dir()
    problem = official_problem(root)
    if problem:
        print(f"note: {problem} (downloading ml-1m.zip again)")
    if force or problem or not (root / "ml-1m" / "movies.dat").exists():
        download_ml1m(root, force=True)
    if force or not (root / "ml-1m-sasrec" / "ml-1m.txt").exists():
        try:
            download_sasrec(root, force)
        except DataError as e:  # optional: the official ratings alone suffice
            print(f"note: benchmark sequences not fetched ({e})")


@guarded
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m iam_tutorial.data", description=__doc__)
    parser.add_argument("--mode", default=None, help="quick, reference or full: whose users")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    args = parser.parse_args(argv)
    try:
        cfg = get_config(args.mode)
    except ValueError as e:
        fail(str(e))
    ensure_data(args.force)
    sequences = load_sequences(cfg.n_users)
    print(f"MovieLens-1M in {data_dir()} ({sequences.source}), {cfg.mode} users:")
    for key, value in sequence_stats(sequences).items():
        print(f"  {key:>14}: {value:,}")


if __name__ == "__main__":
    main()
