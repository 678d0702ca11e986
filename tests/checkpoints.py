"""Tiny GPT-2 checkpoints for the tests: a random GPT-2 of toy size and a BPE of the item texts,
saved the way the `gpt2` checkpoint is. Untrained: they say nothing about what pretraining
teaches, only that loading, masking and training a backbone work."""

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from iam_tutorial.backbones import quiet

END = "<|endoftext|>"  # GPT-2's one special token


def gpt2_style_tokenizer(texts: list[str], vocab_size: int) -> GPT2TokenizerFast:
    """A byte-level BPE trained on `texts`, saved the way GPT-2's is (one special token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator(texts, trainer=trainer)
    return GPT2TokenizerFast(tokenizer_object=bpe, bos_token=END, eos_token=END, unk_token=END)


def make_tiny_checkpoint(folder, texts: list[str], vocab_size: int = 512, n_layer: int = 4,
                         n_head: int = 4, n_embd: int = 32, n_positions: int = 256,
                         seed: int = 0) -> Path:  # fmt: skip
    """Save a randomly initialised GPT-2 of toy size and a BPE trained on `texts` into `folder`,
    laid out as the `gpt2` checkpoint is: what tests and CI load instead of the real weights.
    It is untrained, so it says nothing about what pretraining teaches."""
    tokenizer = gpt2_style_tokenizer(texts, vocab_size)
    end = tokenizer.convert_tokens_to_ids(END)
    hf_cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, bos_token_id=end, eos_token_id=end)  # fmt: skip
    torch.manual_seed(seed)
    with quiet():
        GPT2LMHeadModel(hf_cfg).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return Path(folder)
