"""Item text and its tokenizer: a ByteLevel BPE trained offline on the catalog's item texts.

An item reads `Toy Story (1995) | Animation, Children's, Comedy`. Training the BPE takes under a
second and needs no download; the pretrained GPT-2 tokenizer is an option when it is on disk.
"""

from pathlib import Path

import pandas as pd
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, SEP, PAD = "<|bos|>", "<|sep|>", "<|pad|>"  # SEP closes every item
SPECIAL_TOKENS = [BOS, SEP, PAD]


def item_text(title: str, genres: list[str]) -> str:
    """`Heat (1995) | Action, Crime, Thriller`: title with its year, then the genres."""
    return f"{title} | {', '.join(genres)}"


def item_texts(movies: pd.DataFrame) -> dict[int, str]:
    """Movie id -> item text, for every movie in `movies` (indexed by id)."""
    return {
        int(m): item_text(r.title, r.genres)
        for m, r in zip(movies.index, movies.itertuples(), strict=True)
    }


def train_tokenizer(texts: list[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A GPT-2-style ByteLevel BPE trained on `texts`, with BOS, SEP and PAD as special tokens.

    Deterministic: the same texts in the same order give the same vocabulary and merges.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, sep_token=SEP, pad_token=PAD
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Reload a tokenizer saved with `tokenizer.save_pretrained(path)`."""
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def pretrained_gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2's own tokenizer plus our special tokens, when it is really available.

    Offline (`HF_HUB_OFFLINE=1`) without a cached copy, transformers can hand back an *empty*
    tokenizer instead of failing; we check and raise instead.
    """
    try:
        tok = PreTrainedTokenizerFast.from_pretrained("gpt2")
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"The GPT-2 tokenizer is not available ({e}); use train_tokenizer()."
        ) from e
    if len(tok) < 50_000:
        raise RuntimeError(
            f"The GPT-2 tokenizer loaded with {len(tok)} tokens, not 50,257: it is not cached and "
            f"the hub is unreachable (HF_HUB_OFFLINE?). Use train_tokenizer() on the item texts."
        )
    tok.add_special_tokens({"bos_token": BOS, "sep_token": SEP, "pad_token": PAD})
    return tok
