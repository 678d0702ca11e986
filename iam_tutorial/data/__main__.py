"""`python -m iam_tutorial.data [--mode quick|full]`: fetch MovieLens-1M if missing, print statistics."""

import argparse

from iam_tutorial.config import get_config
from iam_tutorial.data.movielens import (
    DataError,
    download_ml1m,
    download_sasrec,
    load_sequences,
    sequence_stats,
)
from iam_tutorial.paths import data_dir


def ensure_data() -> None:
    """Download what is missing; offline, say where to put the files instead."""
    root = data_dir()
    if not (root / "ml-1m" / "movies.dat").exists():
        download_ml1m(root)
    if not (root / "ml-1m-sasrec" / "ml-1m.txt").exists():
        try:
            download_sasrec(root)
        except DataError as e:  # optional: the official ratings alone suffice
            print(f"note: benchmark sequences not fetched ({e})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default=None)
    args = parser.parse_args(argv)
    cfg = get_config(args.mode)
    ensure_data()
    sequences = load_sequences(cfg.n_users)
    print(f"MovieLens-1M in {data_dir()} ({sequences.source}), {cfg.mode} users:")
    for key, value in sequence_stats(sequences).items():
        print(f"  {key:>14}: {value:,}")


if __name__ == "__main__":
    main()
