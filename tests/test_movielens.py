import hashlib
import shutil
import urllib.error

import pytest

from iam_tutorial.data import __main__ as data_cli
from iam_tutorial.data import movielens
from iam_tutorial.data.movielens import (
    SYNTHETIC_MARKER,
    DataError,
    download,
    leave_one_out,
    load_benchmark_sequences,
    load_movies,
    load_ratings,
    load_sequences,
    load_users,
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
    path.write_text("\n".join(lines) + "\n")
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


# --- inputs that must fail loudly ----------------------------------------------------------------


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def full_count(monkeypatch, root) -> int:
    """Pretend the fixture's ratings.dat has the official row count (it is a whole tiny data set)."""
    rows = movielens.count_rows(root / "ml-1m" / "ratings.dat")
    monkeypatch.setattr(movielens, "ML1M_RATINGS_ROWS", rows)
    return rows


def test_cut_off_last_line_with_the_full_row_count(broken, monkeypatch):
    """The last line cut mid-field still splits into four numbers (a timestamp of 97...)."""
    full_count(monkeypatch, broken)
    path = broken / "ml-1m" / "ratings.dat"
    path.write_bytes(path.read_bytes()[:-8])  # drop the newline and the timestamp's last digits
    with pytest.raises(DataError, match=r"ratings.dat is cut off: its last line .* has no newline"):
        load_ratings(broken)
    with pytest.raises(DataError, match="re-download it with `python -m iam_tutorial.data`"):
        load_ratings(broken)


def test_cut_off_ratings_fall_back_loudly_and_on_record(broken, monkeypatch, capsys):
    rows = full_count(monkeypatch, broken)
    path = broken / "ml-1m" / "ratings.dat"
    path.write_bytes(path.read_bytes()[:-8])
    seqs = load_sequences(5, broken)
    assert (
        seqs.source
        == f"SASRec benchmark ml-1m.txt (ratings.dat cut off mid-line after {rows - 1:,} rows)"
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"note: {path.parent}: ratings.dat cut off")


def test_empty_movies_is_a_data_error(broken):
    (broken / "ml-1m" / "movies.dat").write_bytes(b"")
    with pytest.raises(DataError, match="movies.dat is empty: the file is corrupt"):
        load_movies(broken)


def test_utf8_movies_is_refused(broken):
    path = broken / "ml-1m" / "movies.dat"
    path.write_bytes(path.read_bytes().decode("latin-1").encode("utf-8"))
    with pytest.raises(DataError, match=r"is UTF-8, not the official latin-1 \(line 1 would read"):
        load_movies(broken)


@pytest.mark.parametrize(
    ("byte", "says"),
    [(b"\x85", "0x85 on line 1:"), (b"\x00", "0x00 on line 1:"),
     (b"\r", r"0x0d on line 1 \(Windows line endings\)")],
)  # fmt: skip
def test_stray_bytes_are_refused(broken, byte, says):
    path = broken / "ml-1m" / "movies.dat"
    path.write_bytes(path.read_bytes().replace(b"\n", byte + b"\n", 1))
    with pytest.raises(DataError, match=f"movies.dat: stray byte {says}"):
        load_movies(broken)


def test_movies_and_users_must_be_the_official_bytes(broken):
    """Outside a fixture folder, movies.dat and users.dat must match their official sha256."""
    (broken / "ml-1m" / SYNTHETIC_MARKER).unlink()
    for load in (load_movies, load_users):
        with pytest.raises(DataError, match="is not the official file"):
            load(broken)


def test_real_files_pass_and_a_converted_copy_does_not(ml1m_root, tmp_path):
    assert len(load_movies(ml1m_root)) == 3883 and len(load_users(ml1m_root)) == 6040
    (tmp_path / "ml-1m").mkdir()
    raw = (ml1m_root / "ml-1m" / "movies.dat").read_bytes()
    copy = tmp_path / "ml-1m" / "movies.dat"
    copy.write_bytes(raw.decode("latin-1").encode("utf-8"))
    with pytest.raises(DataError, match="is UTF-8, not the official latin-1"):
        load_movies(tmp_path)
    copy.write_bytes(raw.replace(b"Toy Story", b"Toy Storz"))  # still valid, but not official
    with pytest.raises(DataError, match="not the official file"):
        load_movies(tmp_path)


def test_benchmark_files_must_be_the_published_bytes(broken):
    (broken / "ml-1m-sasrec" / SYNTHETIC_MARKER).unlink()
    with pytest.raises(DataError, match="ml-1m.txt is not the published file"):
        load_sequences(5, broken)


def test_sources_and_checksums_are_recorded(broken, monkeypatch):
    seqs = load_sequences(5, broken)
    rows = movielens.count_rows(broken / "ml-1m" / "ratings.dat")
    assert (
        seqs.source
        == f"SASRec benchmark ml-1m.txt (ratings.dat partial: {rows:,} of 1,000,209 rows)"
    )
    assert seqs.files == {f"ml-1m-sasrec/{name}": sha256(broken / "ml-1m-sasrec" / name)
                          for name in movielens.SASREC_FILES}  # fmt: skip
    assert leave_one_out(seqs).files == seqs.files
    full_count(monkeypatch, broken)
    official = load_sequences(5, broken)
    assert official.source == "official ratings.dat"
    assert official.files == {"ml-1m/ratings.dat": sha256(broken / "ml-1m" / "ratings.dat")}
    assert official.by_user == seqs.by_user  # the two sources agree


def test_real_source_says_why(ml1m_root):
    source = load_sequences(10, ml1m_root).source
    rows = movielens.count_rows(ml1m_root / "ml-1m" / "ratings.dat")
    if rows != 1_000_209:  # this workplace's copy: the exact prefix for users 1..2999
        assert (
            source
            == f"SASRec benchmark ml-1m.txt (ratings.dat partial: {rows:,} of 1,000,209 rows)"
        )
    else:
        assert source == "official ratings.dat"


# --- the download command line ------------------------------------------------------------------


def test_cli_offline_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IAM_DATA_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(movielens.urllib.request, "urlopen", offline)
    with pytest.raises(SystemExit) as exit_:
        data_cli.main([])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: Could not download {movielens.ML1M_URL}") and "Offline?" in err


def test_cli_bad_mode_and_missing_users_are_one_line(synthetic_root, monkeypatch, capsys):
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    for argv, says in ((["--mode", "huge"], "Unknown mode"), (["--mode", "quick"], "lacks users")):
        with pytest.raises(SystemExit) as exit_:
            data_cli.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and says in err


def test_cli_downloads_a_damaged_file_again(broken, monkeypatch, capsys):
    monkeypatch.setenv("IAM_DATA_DIR", str(broken))
    calls = []
    monkeypatch.setattr(data_cli, "download_ml1m", lambda root, force: calls.append(force))
    data_cli.ensure_data()
    assert calls == []  # intact (a clean partial ratings.dat is not damage)
    (broken / "ml-1m" / "movies.dat").write_bytes(b"")
    data_cli.ensure_data()
    assert calls == [True] and "movies.dat is empty" in capsys.readouterr().out
