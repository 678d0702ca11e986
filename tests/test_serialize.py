import numpy as np
import pytest
import torch

from iam_tutorial.serialize import (
    GLOBAL,
    IGNORE,
    PADDING,
    Serializer,
    token_lengths,
    token_table,
)
from iam_tutorial.tokenizer import item_texts, train_tokenizer

G, P, X = GLOBAL, PADDING, IGNORE  # short names keep the literal grids readable

# A hand-made catalog: BOS = 0, SEP = 1, PAD = 2. Index 0 is padding (no tokens); item 1 is two
# tokens + SEP, item 2 three tokens + SEP, item 3 one token + SEP.
ITEM_TOKENS = [[], [10, 11, 1], [12, 13, 14, 1], [15, 1]]


def hand_made(max_tokens: int = 32) -> Serializer:
    return Serializer(ITEM_TOKENS, bos_id=0, pad_id=2, max_tokens=max_tokens)


# --- golden examples written out by hand -----------------------------------------------------------


def test_golden_hand_made():
    s = hand_made().serialize([1, 2, 3])
    assert s.tokens == [0, 10, 11, 1, 12, 13, 14, 1, 15, 1]
    assert s.item_index == [G, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert s.sep_positions == [3, 7, 9]
    assert s.items == [1, 2, 3] and s.n_dropped == 0


def test_golden_repeated_item_gets_a_new_index():
    s = hand_made().serialize([3, 3])
    assert s.tokens == [0, 15, 1, 15, 1]
    assert s.item_index == [G, 0, 0, 1, 1]
    assert s.sep_positions == [2, 4]


@pytest.fixture(scope="module")
def movies_and_tok(real_root):
    from iam_tutorial.config import QUICK
    from iam_tutorial.data import load_movies

    texts = item_texts(load_movies(real_root))
    return texts, train_tokenizer(list(texts.values()), vocab_size=QUICK.vocab_size)


@pytest.fixture(scope="module")
def real_root(ml1m_root):
    return ml1m_root  # tests/conftest.py skips when the data is absent


def test_golden_real_tokenizer(movies_and_tok):
    texts, tok = movies_and_tok
    movie_ids = [1, 6, 2]  # Toy Story, Heat, Jumanji: catalog indices 1, 2, 3
    serializer = Serializer.from_tokenizer(tok, [""] + [texts[m] for m in movie_ids], 320)
    s = serializer.serialize([1, 2, 3])
    assert texts[6] == "Heat (1995) | Action, Crime, Thriller"
    heat = tok(texts[6], add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(heat) == [
        "He", "at", "Ġ(", "1995", ")", "Ġ|", "ĠAction", ",", "ĠCrime", ",", "ĠThriller"
    ]  # fmt: skip
    # Toy Story and Jumanji are 13 tokens each, Heat 11; each gets its SEP.
    assert s.item_index == [G] + [0] * 14 + [1] * 12 + [2] * 14
    assert s.sep_positions == [14, 26, 40]
    expected = [tok.bos_token_id]
    for m in movie_ids:
        expected += tok(texts[m], add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    assert s.tokens == expected

    table = token_table(s, tok)
    assert list(table.columns) == ["position", "token_id", "token", "item_index", "role"]
    assert table["token"].tolist()[:5] == ["<|bos|>", "T", "oy", "·Story", "·("]
    assert table["role"].tolist()[:2] == ["BOS", "item"]
    assert table.query("role == 'SEP'")["position"].tolist() == [14, 26, 40]
    assert table["item_index"].tolist() == s.item_index and table["token_id"].tolist() == s.tokens


def test_round_trip_each_item_span_decodes_to_its_text(movies_and_tok):
    texts, tok = movies_and_tok
    movie_ids = [1, 6, 2, 73, 3952]  # 73 is "Misérables, Les (1995)": latin-1 accents survive
    serializer = Serializer.from_tokenizer(tok, [""] + [texts[m] for m in movie_ids], 320)
    s = serializer.serialize([1, 2, 3, 4, 5])
    tokens, index = np.array(s.tokens), np.array(s.item_index)
    for position, m in enumerate(movie_ids):
        span = tokens[index == position]
        assert span[-1] == tok.sep_token_id and tok.sep_token_id not in span[:-1]
        assert tok.decode(span[:-1].tolist()) == texts[m]


# --- truncation to the token budget ---------------------------------------------------------------


def test_budget_fits_exactly():
    s = hand_made(max_tokens=10).serialize([1, 2, 3])  # BOS + 3 + 4 + 2 = 10
    assert s.items == [1, 2, 3] and s.n_dropped == 0 and len(s.tokens) == 10


def test_one_token_short_drops_the_oldest_whole_item():
    s = hand_made(max_tokens=9).serialize([1, 2, 3])
    assert s.tokens == [0, 12, 13, 14, 1, 15, 1]
    assert s.item_index == [G, 0, 0, 0, 0, 1, 1]  # indices restart at the first kept item
    assert s.sep_positions == [4, 6]
    assert s.items == [2, 3] and s.n_dropped == 1


def test_truncation_keeps_a_contiguous_recent_suffix():
    # Item 2 (4 tokens) does not fit after item 1; the older item 3 (2 tokens) would, but
    # skipping over item 2 would break the history's order, so it goes too.
    s = hand_made(max_tokens=6).serialize([3, 2, 1])
    assert s.items == [1] and s.n_dropped == 2 and s.tokens == [0, 10, 11, 1]


def test_only_the_most_recent_item_fits():
    s = hand_made(max_tokens=3).serialize([1, 2, 3])
    assert s.tokens == [0, 15, 1] and s.items == [3] and s.n_dropped == 2


def test_most_recent_item_too_long_raises():
    with pytest.raises(ValueError, match="does not fit max_tokens=2"):
        hand_made(max_tokens=2).serialize([1, 3])


def test_padding_item_raises():
    with pytest.raises(ValueError, match="no tokens"):
        hand_made().serialize([1, 0])


# --- collate ---------------------------------------------------------------------------------------


def test_collate_golden():
    batch = hand_made().collate([[1, 2, 3], [3]], next_items=[[2, 3, 1], [2]])
    assert batch.tokens.tolist() == [
        [0, 10, 11, 1, 12, 13, 14, 1, 15, 1],
        [0, 15, 1, 2, 2, 2, 2, 2, 2, 2],
    ]
    assert batch.item_index.tolist() == [
        [G, 0, 0, 0, 1, 1, 1, 1, 2, 2],
        [G, 0, 0, P, P, P, P, P, P, P],
    ]
    assert batch.targets.tolist() == [
        [X, X, X, 2, X, X, X, 3, X, 1],
        [X, X, 2, X, X, X, X, X, X, X],
    ]
    assert batch.readout.tolist() == [9, 2]  # the last SEP of each row
    assert len(batch) == 2


def test_collate_targets_follow_truncation():
    batch = hand_made(max_tokens=9).collate([[1, 2, 3], [3]], next_items=[[2, 3, 1], [2]])
    assert batch.tokens.tolist()[0] == [0, 12, 13, 14, 1, 15, 1]
    assert batch.targets.tolist()[0] == [X, X, X, X, 3, X, 1]  # item 1's target went with it
    assert batch.readout.tolist() == [6, 2]


def test_collate_without_targets_and_padding_is_row_independent():
    serializer = hand_made()
    alone = serializer.collate([[3, 1]])
    together = serializer.collate([[1, 2, 3], [3, 1]])
    width = alone.tokens.shape[1]
    assert (together.targets == IGNORE).all()
    assert torch.equal(together.tokens[1, :width], alone.tokens[0])
    assert torch.equal(together.item_index[1, :width], alone.item_index[0])


def test_batch_getitem_trims_columns():
    batch = hand_made().collate([[1, 2, 3], [3], [1]], next_items=[[2, 3, 1], [2], [3]])
    tail = batch[1:]
    assert tail.tokens.tolist() == [[0, 15, 1, 2], [0, 10, 11, 1]]
    assert tail.item_index.tolist() == [[G, 0, 0, P], [G, 0, 0, 0]]
    assert tail.targets.tolist() == [[X, X, 2, X], [X, X, X, 3]]
    assert tail.readout.tolist() == [2, 3]
    assert batch[[2]].tokens.shape == (1, 4)


# --- ID items (SASRec) -----------------------------------------------------------------------------


def test_for_item_ids():
    serializer = Serializer.for_item_ids(n_items=5, max_tokens=4)
    s = serializer.serialize([5, 1, 2, 4])  # budget 3 after BOS: the 3 most recent items
    assert s.tokens == [0, 3, 4, 6]
    assert s.item_index == [G, 0, 1, 2]
    assert s.sep_positions == [1, 2, 3]  # every token is its item's readout
    assert s.n_dropped == 1
    assert serializer.vocab_size == 5 + 3  # BOS, PAD, padding item 0, items 1..5
    batch = serializer.collate([[1, 2], [3]])
    assert batch.tokens.tolist() == [[0, 3, 4], [0, 5, 1]]


# --- notebook tables ---------------------------------------------------------------------------


def test_token_table_without_real_data():
    tok = train_tokenizer(["Heat (1995) | Action", "Up (2009) | Animation"], vocab_size=300)
    serializer = Serializer.from_tokenizer(tok, ["", "Up (2009) | Animation"], max_tokens=64)
    table = token_table(serializer.serialize([1, 1]), tok)
    n = len(serializer.item_tokens[1])  # the item's tokens, SEP included
    assert table["role"].tolist() == ["BOS"] + (["item"] * (n - 1) + ["SEP"]) * 2
    assert table["position"].tolist() == list(range(1 + 2 * n))
    assert table["item_index"].tolist() == [G] + [0] * n + [1] * n
    assert "".join(table["token"][1:n]).replace("·", " ") == "Up (2009) | Animation"


def test_token_lengths():
    table = token_lengths(hand_made(max_tokens=9), [[1, 2, 3], [3], [2, 1]])
    assert table.to_dict("list") == {
        "n_items": [2, 1, 2],
        "n_tokens": [7, 3, 8],
        "n_dropped": [1, 0, 0],
    }


# --- the cost on MovieLens-1M ----------------------------------------------------------------------


def test_tokens_per_item_on_ml1m(movies_and_tok):
    texts, tok = movies_and_tok
    lengths = [
        len(ids) + 1 for ids in tok(list(texts.values()), add_special_tokens=False)["input_ids"]
    ]
    assert len(lengths) == 3883
    assert 8 <= np.mean(lengths) <= 20  # ~14 tokens (SEP included) for each history item
