import json

import huggingface_hub
import pandas as pd
import pytest

from iam_tutorial import tokenizer as tokenizer_module
from iam_tutorial.tokenizer import (
    BOS,
    PAD,
    SEP,
    item_text,
    item_texts,
    load_tokenizer,
    pretrained_gpt2_tokenizer,
    train_tokenizer,
)

TEXTS = [
    "Toy Story (1995) | Animation, Children's, Comedy",
    "Heat (1995) | Action, Crime, Thriller",
    "Jumanji (1995) | Adventure, Children's, Fantasy",
    "Misérables, Les (1995) | Drama, Musical",
    "Toy Story 2 (1999) | Animation, Children's, Comedy",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


def test_item_text_format():
    assert (
        item_text("Toy Story (1995)", ["Animation", "Children's", "Comedy"])
        == "Toy Story (1995) | Animation, Children's, Comedy"
    )
    assert item_text("Heat (1995)", ["Action"]) == "Heat (1995) | Action"


def test_item_texts_maps_ids():
    movies = pd.DataFrame(
        {"title": ["Heat (1995)", "Toy Story (1995)"], "genres": [["Action", "Crime"], ["Comedy"]]},
        index=pd.Index([6, 1], name="movie"),
    )
    assert item_texts(movies) == {6: "Heat (1995) | Action, Crime", 1: "Toy Story (1995) | Comedy"}


def test_training_is_deterministic(tok):
    again = train_tokenizer(TEXTS, vocab_size=300)
    assert again.get_vocab() == tok.get_vocab()
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    model_again = json.loads(again.backend_tokenizer.to_str())["model"]
    assert model["merges"] and model_again["merges"] == model["merges"]  # merges, in order
    assert model_again["vocab"] == model["vocab"]
    assert again(TEXTS)["input_ids"] == tok(TEXTS)["input_ids"]


def test_special_tokens_are_distinct_and_single(tok):
    ids = [tok.bos_token_id, tok.sep_token_id, tok.pad_token_id]
    assert [tok.bos_token, tok.sep_token, tok.pad_token] == [BOS, SEP, PAD]
    assert len(set(ids)) == 3 and None not in ids
    # A special token inside text stays one token, never split into bytes.
    assert tok(f"{BOS}Heat{SEP}", add_special_tokens=False)["input_ids"][0] == tok.bos_token_id


def test_save_and_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded(TEXTS)["input_ids"] == tok(TEXTS)["input_ids"]
    assert (loaded.bos_token_id, loaded.sep_token_id, loaded.pad_token_id) == (
        tok.bos_token_id,
        tok.sep_token_id,
        tok.pad_token_id,
    )
    assert len(loaded) == len(tok)


def test_decode_gives_back_the_text(tok):
    for text in TEXTS:  # byte level: accents and apostrophes survive
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_pretrained_gpt2_offline_raises(monkeypatch):
    if huggingface_hub.try_to_load_from_cache("gpt2", "tokenizer.json") is not None:
        pytest.skip("GPT-2's tokenizer is cached here, so offline loading works.")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="train_tokenizer"):
        pretrained_gpt2_tokenizer()


def test_pretrained_gpt2_refuses_an_empty_tokenizer(monkeypatch):
    class Empty:  # what transformers can hand back offline instead of failing
        @classmethod
        def from_pretrained(cls, name):
            return cls()

        def __len__(self):
            return 3

    monkeypatch.setattr(tokenizer_module, "PreTrainedTokenizerFast", Empty)
    with pytest.raises(RuntimeError, match="not 50,257"):
        pretrained_gpt2_tokenizer()
