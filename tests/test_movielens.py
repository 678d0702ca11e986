import shutil

import pytest

from iam_tutorial.data.movielens import (
    DataError,
    download,
    leave_one_out,
    load_benchmark_sequences,
    load_movies,
    load_ratings,
    load_sequences,
    read_dat,
    sequence_stats,
    sequences_from_ratings,
)


@pytest.fixture
def broken(tmp_path, synthetic_root):
    """A writable copy of the synthetic folder to damage."""
    return shutil.copytree(synthetic_root, tmp_path / "copy")


def test_official_format_types_and_latin1(synthetic_root):
    movies = load_movies(synthetic_root)
    assert movies.loc[1, "title"] == "Misérables, Les (1995)"  # latin-1 decoded, year kept
    assert isinstance(movies.loc[1, "genres"], list)
    ratings = load_ratings(synthetic_root, allow_partial=True)
    assert str(ratings["user"].dtype) == "int32" and str(ratings["timestamp"].dtype) == "int64"


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="python -m iam_tutorial.data"):
        load_movies(tmp_path)


def test_wrong_separator(broken):
    path = broken / "ml-1m" / "ratings.dat"
    path.write_text(path.read_text().replace("::", ","))
    with pytest.raises(DataError, match="Wrong separator"):
        read_dat(path)


def test_truncated_row(broken):
    path = broken / "ml-1m" / "ratings.dat"
    path.write_text(path.read_text() + "7::12\n")
    with pytest.raises(DataError, match="line"):
        read_dat(path)


def test_non_numeric_id(broken):
    path = broken / "ml-1m" / "ratings.dat"
    lines = path.read_text().splitlines()
    lines[3] = "x" + lines[3]
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match="non-numeric user on line 4"):
        read_dat(path)


def test_partial_ratings_refused_unless_allowed(synthetic_root):
    with pytest.raises(DataError, match="partial"):
        load_ratings(synthetic_root)
    ratings = load_ratings(synthetic_root, allow_partial=True)
    assert not ratings.attrs["complete"]
    last_user = ratings["user"].iloc[-1]
    assert last_user not in set(ratings.attrs["covered_users"])  # may be cut off: not trusted


def test_item_filter_needs_whole_data(synthetic_root):
    ratings = load_ratings(synthetic_root, allow_partial=True)
    with pytest.raises(DataError, match="complete"):
        sequences_from_ratings(ratings)


def test_order_is_timestamp_then_file_position():
    import pandas as pd

    ratings = pd.DataFrame(
        {
            "user": [1, 1, 1, 1],
            "movie": [30, 10, 20, 40],
            "rating": [5] * 4,
            "timestamp": [9, 5, 5, 1],
        }
    )
    ratings.attrs["complete"] = True
    seqs = sequences_from_ratings(ratings, min_count=1)
    assert seqs == {1: [40, 10, 20, 30]}  # 10 and 20 tie at t=5: file order decides


def test_min_count_filter():
    import pandas as pd

    users = [1, 1, 2, 2, 3]
    ratings = pd.DataFrame({"user": users, "movie": [7, 8, 7, 9, 7], "rating": 1, "timestamp": 0})
    seqs = sequences_from_ratings(ratings, min_count=2)
    assert seqs == {1: [7], 2: [7], 3: [7]}


def test_two_sources_agree_on_synthetic(synthetic_root):
    ratings = load_ratings(synthetic_root, allow_partial=True)
    ratings.attrs["complete"] = True  # the fixture is a whole (tiny) data set
    assert sequences_from_ratings(ratings) == load_benchmark_sequences(synthetic_root)


def test_two_sources_agree_on_real_users(ml1m_root):
    """The official ratings, preprocessed the standard way, give SASRec's ml-1m.txt exactly."""
    if not (ml1m_root / "ml-1m-sasrec" / "ml-1m.txt").exists():
        pytest.skip("benchmark sequences absent")
    benchmark = load_benchmark_sequences(ml1m_root)
    ratings = load_ratings(ml1m_root, allow_partial=True)
    keep = {m for s in benchmark.values() for m in s}
    ours = sequences_from_ratings(ratings, keep_items=sorted(keep)) if not ratings.attrs["complete"] \
        else sequences_from_ratings(ratings)  # fmt: skip
    covered = [int(u) for u in ratings.attrs["covered_users"]]
    assert len(covered) >= 2998
    assert all(ours[u] == benchmark[u] for u in covered)


def test_load_sequences_selects_users_and_says_source(synthetic_root):
    seqs = load_sequences(10, synthetic_root)
    assert list(seqs.by_user) == list(range(1, 11))
    assert "benchmark" in seqs.source  # the synthetic ratings.dat is "partial" by row count
    with pytest.raises(DataError, match="lacks users"):
        load_sequences(31, synthetic_root)


def test_partial_ratings_without_benchmark_is_an_error(broken):
    shutil.rmtree(broken / "ml-1m-sasrec")
    with pytest.raises(DataError, match="partial"):
        load_sequences(5, broken)


def test_quick_real_stats(ml1m_root):
    stats = sequence_stats(load_sequences(1000, ml1m_root))
    assert stats["users"] == 1000 and stats["p0_length"] >= 5
    assert stats["interactions"] == 155_105  # users 1..1000 of the standard benchmark


def test_full_real_stats(ml1m_root):
    stats = sequence_stats(load_sequences(None, ml1m_root))
    assert (stats["users"], stats["items"], stats["interactions"]) == (6040, 3416, 999_611)


def test_leave_one_out():
    split = leave_one_out({5: [30, 10, 20, 40], 9: [10, 50, 30]})
    assert list(split.movie_ids) == [0, 10, 20, 30, 40, 50]
    assert split.train == [[3, 1], [1]] and split.valid == [2, 5] and split.test == [4, 3]
    assert split.histories("test") == ([[3, 1, 2], [1, 5]], [4, 3])
    with pytest.raises(DataError, match="< 3 items"):
        leave_one_out({1: [1, 2]})


def test_download_checksum_and_atomic_write(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"movielens")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DataError, match="md5"):
        download(source.as_uri(), dest, "md5", "0" * 32)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))  # no half file left
    import hashlib

    good = hashlib.md5(b"movielens").hexdigest()
    assert download(source.as_uri(), dest, "md5", good).read_bytes() == b"movielens"


def test_download_offline_error(tmp_path):
    with pytest.raises(DataError, match="data/README.md"):
        download((tmp_path / "nope.zip").as_uri(), tmp_path / "x.zip", "md5", "0")
