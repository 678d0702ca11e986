"""MovieLens-1M loading, your own CSV log in the same form, a synthetic MovieLens-shaped fixture."""

from iam_tutorial.data.custom import load_csv_items, load_csv_sequences
from iam_tutorial.data.movielens import (
    DataError,
    LeaveOneOut,
    Sequences,
    download_ml1m,
    download_sasrec,
    leave_one_out,
    load_benchmark_sequences,
    load_movies,
    load_ratings,
    load_sequences,
    load_users,
    sequence_stats,
    sequences_from_ratings,
)

__all__ = [
    "DataError",
    "LeaveOneOut",
    "Sequences",
    "download_ml1m",
    "download_sasrec",
    "leave_one_out",
    "load_csv_items",
    "load_csv_sequences",
    "load_benchmark_sequences",
    "load_movies",
    "load_ratings",
    "load_sequences",
    "load_users",
    "sequence_stats",
    "sequences_from_ratings",
]
