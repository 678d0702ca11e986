"""Your own CSV log: the same sequences the MovieLens path gives, clear errors, and the module's
usage example run as written."""

import hashlib
import textwrap

import pytest

from iam_tutorial.data import custom
from iam_tutorial.data.custom import load_csv_items, load_csv_sequences
from iam_tutorial.data.movielens import (
    DataError,
    leave_one_out,
    load_movies,
    load_ratings,
    sequences_from_ratings,
)


@pytest.fixture
def log(tmp_path, synthetic_root):
    """The synthetic ratings as a CSV log with titles: user,item,timestamp,text."""
    ratings = load_ratings(synthetic_root, allow_partial=True)
    titles = load_movies(synthetic_root)["title"]
    rows = [f'{r.user},{r.movie},{r.timestamp},"{titles[r.movie]}"' for r in ratings.itertuples()]
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def write(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_same_sequences_as_the_movielens_path(log, synthetic_root):
    """Ordering by (timestamp, file row), no item filter: the official preprocessing's order."""
    ratings = load_ratings(synthetic_root, allow_partial=True)
    ratings.attrs["complete"] = True
    seqs = load_csv_sequences(log)
    assert seqs.by_user == sequences_from_ratings(ratings, min_count=1)
    assert seqs.source == f"custom CSV log.csv (30 users, {len(ratings):,} interactions)"
    assert seqs.files == {"log.csv": hashlib.sha256(log.read_bytes()).hexdigest()}
    assert leave_one_out(seqs).files == seqs.files


def test_item_texts_in_the_movies_form(log, synthetic_root):
    items = load_csv_items(log)
    movies = load_movies(synthetic_root)
    assert items.index.name == "movie" and list(items.columns) == ["title", "genres"]
    assert items.loc[1, "title"] == "Misérables, Les (1995)" and items.loc[1, "genres"] == []
    assert set(items.index) <= set(movies.index)


def test_genres_column_is_split(tmp_path):
    path = write(tmp_path, """
        item,text,kind
        7,Heat (1995),Action|Crime
        7,Heat (1995),Action|Crime
        """)  # fmt: skip
    assert load_csv_items(path, genres="kind").loc[7, "genres"] == ["Action", "Crime"]


def test_iso_dates_order_like_numbers(tmp_path):
    path = write(tmp_path, """
        user,item,timestamp
        1,30,2024-05-02T10:00:00
        1,10,2024-05-01
        1,20,2024-05-01
        """)  # fmt: skip
    assert load_csv_sequences(path).by_user == {1: [10, 20, 30]}  # a tie keeps the file order


def test_short_users_are_dropped_and_counted(tmp_path, capsys):
    path = write(tmp_path, """
        user,item,timestamp
        1,10,1
        1,11,2
        1,12,3
        2,10,1
        2,11,2
        3,10,5
        """)  # fmt: skip
    seqs = load_csv_sequences(path)
    assert seqs.by_user == {1: [10, 11, 12]}
    dropped = "2 users with < 3 interactions dropped (3 interactions)"
    assert seqs.source == f"custom CSV bad.csv (3 users, 6 interactions; {dropped})"
    assert capsys.readouterr().err == f"note: {path}: {dropped}.\n"
    with pytest.raises(DataError, match=r"2 users with < 3 interactions, e.g. \[2, 3\]"):
        load_csv_sequences(path, drop_short=False)


@pytest.mark.parametrize(
    ("text", "says"),
    [("user,item\n1,2\n", r"lacks columns \['timestamp'\] \(it has \['user', 'item'\]\)"),
     ("user,item,timestamp\n1,2,3\nu7,2,3\n", "non-integer user id 'u7' on line 3"),
     ("user,item,timestamp\n1,2.5,3\n", "non-integer item id '2.5' on line 2"),
     ("user,item,timestamp\n1,2,3\n1,,4\n", "empty cell on line 3"),
     ("user,item,timestamp\n1,2,3\n1,3\n", "empty cell on line 3"),
     ("user,item,timestamp\n1,2,yesterday\n", "'yesterday' on line 2 is neither a number"),
     ("user,item,timestamp\n", "has a header but no rows"),
     ("user,item,timestamp\n1,2,3\n7,1,2,3\n", "line 3 has 4 fields but the header 3"),
     ("user,item,timestamp\n1,2,3\n1,4,5\n1,2,3\n", r"1 row repeating an earlier \(user, item, "
      r"timestamp\), first on line 4; remove them, or pass drop_duplicates=True"),
     ("", "not a readable UTF-8 CSV")],
)  # fmt: skip
def test_bad_logs_are_clear_errors(tmp_path, text, says):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=says):
        load_csv_sequences(path)


def test_named_columns_and_bad_item_texts(tmp_path):
    path = write(tmp_path, """
        uid,movie,when,name
        1,7,1,Heat (1995)
        1,8,2,Alien (1979)
        1,7,3,Heat
        """)  # fmt: skip
    seqs = load_csv_sequences(path, user="uid", item="movie", timestamp="when")
    assert seqs.by_user == {1: [7, 8, 7]}  # repeats are kept: a re-watch is an interaction
    with pytest.raises(DataError, match="item 7 has more than one 'name'"):
        load_csv_items(path, item="movie", text="name")
    with pytest.raises(DataError, match="Missing"):
        load_csv_sequences(tmp_path / "nope.csv")


def test_module_example_runs_as_written(log, monkeypatch, capsys):
    """The docstring's example, executed verbatim in a folder holding log.csv."""
    doc = custom.__doc__
    code = textwrap.dedent("\n".join(line for line in doc.splitlines() if line.startswith("    ")))
    monkeypatch.chdir(log.parent)
    exec(compile(code, "custom.__doc__", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rank", "movie_id", "title", "score"] and len(out) == 6


def test_duplicate_rows_dropped_only_when_asked_and_counted(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    path.write_text("user,item,timestamp\n1,2,3\n1,4,5\n1,2,3\n1,6,7\n")
    seqs = load_csv_sequences(path, drop_duplicates=True)
    assert seqs.by_user == {1: [2, 4, 6]}
    assert "1 duplicate row dropped" in seqs.source and "3 interactions" in seqs.source
    assert "1 row repeating" in capsys.readouterr().err
