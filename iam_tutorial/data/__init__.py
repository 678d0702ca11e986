"""MovieLens-1M loading and a synthetic MovieLens-shaped fixture."""

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
    "load_benchmark_sequences",
    "load_movies",
    "load_ratings",
    "load_sequences",
    "load_users",
    "sequence_stats",
    "sequences_from_ratings",
]
