"""Your own interaction log, a CSV of user, item, timestamp [, item text], as the same validated
`Sequences` that MovieLens gives, so leave-one-out, every plan and `recommend` work unchanged. Ids
are integers; each user's items are ordered by (timestamp, row in the file); users with fewer than 3
interactions cannot be split into train, validation and test, so they are dropped and counted.

    from iam_tutorial import get_config
    from iam_tutorial.data import leave_one_out, load_csv_items, load_csv_sequences
    from iam_tutorial.pipeline import prepare
    from iam_tutorial.recommend import recommend
    from iam_tutorial.train import train

    seqs = load_csv_sequences("log.csv")                 # header: user,item,timestamp,text
    cfg = get_config("quick", max_steps=30)              # a first look; drop max_steps for real
    data = prepare(cfg, leave_one_out(seqs), movies=load_csv_items("log.csv"))
    model, results = train(data, progress=False)
    print(recommend(model, data, user_id=1, k=5))        # tests/test_custom_data.py runs this
"""

import csv
from pathlib import Path

import pandas as pd

from iam_tutorial.data.movielens import DataError, Sequences, note, sha256_of

MIN_INTERACTIONS = 3  # leave-one-out: at least one training item, one validation, one test


def read_log(path: str | Path, columns: dict[str, str]) -> pd.DataFrame:
    """The CSV's `columns` (our name -> its header) as strings, every cell present."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Missing {path}: give a CSV with a header row (user,item,timestamp,...).")
    extra_fields(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV ({e}).") from None
    absent = [header for header in columns.values() if header not in frame.columns]
    if absent:
        raise DataError(
            f"{path} lacks columns {absent} (it has {list(frame.columns)}); name yours with "
            f"{', '.join(f'{ours}=' for ours in columns)}."
        )
    frame = frame[list(columns.values())].set_axis(list(columns), axis=1)
    if len(frame) == 0:
        raise DataError(f"{path} has a header but no rows.")
    empty = (frame.isna() | frame.eq("")).any(axis=1)  # a short row's missing cells are NaN
    if empty.any():
        raise DataError(f"{path}: empty cell on line {_line(empty)}; every row needs every column.")
    return frame


def extra_fields(path: Path) -> None:
    """A row with more fields than the header is refused: pandas would read its first field as
    the index and shift every column left (users read as items)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f, skipinitialspace=True)
            width = len(next(rows, []))
            for line, row in enumerate(rows, start=2):
                if len(row) > width:
                    raise DataError(
                        f"{path}: line {line} has {len(row)} fields but the header {width}; "
                        "quote text that holds commas, or add the missing header name."
                    )
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable UTF-8 CSV ({e}).") from None


def _line(bad: pd.Series) -> int:
    """The file line of the first True row (line 1 is the header)."""
    return int(bad.to_numpy().argmax()) + 2


def integer_ids(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    """A column of non-negative integer ids, or a DataError naming the first bad line."""
    bad = ~frame[column].str.fullmatch(r"\d+")
    if bad.any():
        value = frame[column].iloc[_line(bad) - 2]
        raise DataError(
            f"{path}: non-integer {column} id {value!r} on line {_line(bad)}; ids must be whole "
            f"numbers (map your ids to integers first)."
        )
    return frame[column].astype("int64")


def timestamps(path: Path, frame: pd.DataFrame) -> pd.Series:
    """Numbers (e.g. Unix seconds) or ISO 8601 dates, as sortable numbers."""
    numbers = pd.to_numeric(frame["timestamp"], errors="coerce")
    if numbers.notna().all():
        return numbers
    dates = pd.to_datetime(frame["timestamp"], errors="coerce", format="ISO8601", utc=True)
    if dates.notna().all():
        return dates.astype("int64")
    bad = numbers.isna() & dates.isna()
    raise DataError(
        f"{path}: timestamp {frame['timestamp'].iloc[_line(bad) - 2]!r} on line {_line(bad)} is "
        f"neither a number nor an ISO 8601 date."
    )


def load_csv_sequences(
    path: str | Path,
    user: str = "user",
    item: str = "item",
    timestamp: str = "timestamp",
    drop_short: bool = True,
    drop_duplicates: bool = False,
) -> Sequences:
    """Each user's items in (timestamp, file row) order. Users with fewer than 3 interactions are
    dropped, counted in `source` and named in one line on stderr, or, with `drop_short=False`,
    refused. A row that repeats an earlier (user, item, timestamp) is refused, or with
    `drop_duplicates=True` dropped and counted. No item filter: the catalog is every item in the
    file."""
    path = Path(path)
    frame = read_log(path, {"user": user, "item": item, "timestamp": timestamp})
    log = pd.DataFrame(
        {
            "user": integer_ids(path, frame, "user"),
            "item": integer_ids(path, frame, "item"),
            "time": timestamps(path, frame),
        }
    )
    log, repeated = drop_repeated(path, log, drop_duplicates)
    ordered = log.sort_values(["user", "time"], kind="stable")  # ties keep the file's order
    by_user = {int(u): g.tolist() for u, g in ordered.groupby("user", sort=True)["item"]}
    source = f"custom CSV {path.name} ({len(by_user):,} users, {len(log):,} interactions"
    if repeated:
        source += f"; {plural(repeated, 'duplicate row')} dropped"
    by_user, dropped = drop_short_users(path, by_user, drop_short)
    source += f"; {dropped}" if dropped else ""
    if not by_user:
        raise DataError(f"{path}: no user has {MIN_INTERACTIONS} interactions; nothing to split.")
    return Sequences(by_user, source + ")", {path.name: sha256_of(path)})


def drop_repeated(path: Path, log: pd.DataFrame, drop: bool) -> tuple[pd.DataFrame, int]:
    """`log` less rows that repeat an earlier (user, item, timestamp), and how many: refused
    unless `drop` (the same event twice could make a user's validation and test one event)."""
    repeated = log.duplicated()
    if not repeated.any():
        return log, 0
    what = f"{plural(int(repeated.sum()), 'row')} repeating an earlier (user, item, timestamp)"
    if not drop:
        raise DataError(
            f"{path}: {what}, first on line {_line(repeated)}; remove them, or pass "
            "drop_duplicates=True to drop them (counted in the source)."
        )
    note(f"{path}: {what} dropped.")
    return log[~repeated], int(repeated.sum())


def drop_short_users(path: Path, by_user: dict, drop: bool) -> tuple[dict, str]:
    """`by_user` less users with fewer than MIN_INTERACTIONS items, and what was dropped in words
    ('' if none): refused unless `drop`."""
    short = {u: len(s) for u, s in by_user.items() if len(s) < MIN_INTERACTIONS}
    if not short:
        return by_user, ""
    what = f"{plural(len(short), 'user')} with < {MIN_INTERACTIONS} interactions"
    if not drop:
        raise DataError(
            f"{path}: {what}, e.g. {sorted(short)[:5]}; leave-one-out needs 3 "
            f"per user: remove them, or pass drop_short=True to drop them."
        )
    dropped = f"{what} dropped ({plural(sum(short.values()), 'interaction')})"
    note(f"{path}: {dropped}.")
    return {u: s for u, s in by_user.items() if u not in short}, dropped


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def load_csv_items(
    path: str | Path, item: str = "item", text: str = "text", genres: str | None = None
) -> pd.DataFrame:
    """Item texts in the `movies` form that `pipeline.prepare(cfg, split, movies)` reads: indexed
    by `movie`, with `title` (your text) and `genres` (a list: your `genres` column split on '|',
    else empty). Every item needs one text; an item given two different texts is an error."""
    path = Path(path)
    columns = {"item": item, "text": text, **({"genres": genres} if genres else {})}
    frame = read_log(path, columns)
    frame["item"] = integer_ids(path, frame, "item")
    texts = frame.drop_duplicates()
    clash = texts["item"].duplicated()
    if clash.any():
        first = int(texts["item"][clash].iloc[0])
        raise DataError(f"{path}: item {first} has more than one {text!r} (or genres); give one.")
    return pd.DataFrame(
        {
            "title": texts["text"].str.strip().tolist(),
            "genres": [g.split("|") if g else [] for g in texts.get("genres", [""] * len(texts))],
        },
        index=pd.Index(texts["item"].tolist(), name="movie"),
    ).sort_index()
