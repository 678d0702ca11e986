"""Pretrained backbones: ItemGPT on a GPT-2-family checkpoint (gpt2, distilgpt2, a local folder).

Both papers fine-tune a pretrained LLM under item-aware masks. Loading keeps the backbone's BPE (plus
BOS, SEP, PAD, whose embedding rows start at the mean row), its position table and its weights; the
item head starts at each item's mean token embedding; an attention sublayer a plan adds (iam, control)
starts as a copy of its block's pretrained one whose output projection is zero, i.e. the identity. So
at step 0 the model computes what the backbone computes under the plan's masks. Notebook 05.
"""

# Axes: item, token, embd (model width), vocab, position

import copy
import dataclasses
import functools
from pathlib import Path

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from iam_tutorial.backbones import BackboneError, from_hub, grow_rows, quiet, resolve
from iam_tutorial.config import Config, ConfigError
from iam_tutorial.model import ItemGPT, load_gpt2_weights
from iam_tutorial.plans import get_plan
from iam_tutorial.tokenizer import BOS, PAD, SEP

SCRATCH = "scratch"
END = "<|endoftext|>"  # GPT-2's one special token
GPT2_LIKE = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "layer_norm_epsilon": (1e-5,),
             "scale_attn_weights": (True,), "scale_attn_by_inverse_layer_idx": (False,),
             "add_cross_attention": (False,)}  # fmt: skip  # what ItemGPT's blocks compute


def backbone_hf_config(name: str):
    """The backbone's transformers config, checked to be a GPT-2 that ItemGPT's blocks compute."""
    hf = from_hub(AutoConfig.from_pretrained, name, "config")
    if hf.model_type != "gpt2":
        raise BackboneError(
            f"Backbone {name!r} is a {hf.model_type} model; ItemGPT loads GPT-2-family weights. "
            "Make other decoders item-aware with iam_tutorial.hf_adapter.load_item_aware."
        )
    for field, allowed in GPT2_LIKE.items():
        if getattr(hf, field) not in allowed:
            raise BackboneError(
                f"Backbone {name!r}: {field}={getattr(hf, field)!r} is not GPT-2's."
            )
    if hf.n_inner not in (None, 4 * hf.n_embd):
        raise BackboneError(
            f"Backbone {name!r}: n_inner={hf.n_inner}, ItemGPT's MLP is 4 x n_embd."
        )
    return hf


def backbone_config(cfg: Config) -> Config:
    """`cfg` with the backbone's shape (n_layer, n_head, n_embd); unchanged for scratch models.

    Raises ConfigError where a backbone cannot serve: ID items (sasrec), `text+id` (its table
    would shift every input embedding at step 0), or a token budget past the position table.
    """
    if cfg.backbone == SCRATCH:
        return cfg
    if not get_plan(cfg.plan).text:
        raise ConfigError(f"Plan {cfg.plan!r} reads item IDs; a pretrained backbone reads text.")
    from iam_tutorial.llm import is_decoder_backbone, llm_config

    if is_decoder_backbone(cfg.backbone):  # Llama-family decoders: ItemLLM (llm.py)
        return llm_config(cfg)
    if cfg.item_input != "text":
        raise ConfigError(
            "item_input='text+id' adds an item vector to every input token, which changes the "
            "pretrained model's function at step 0; use item_input='text' with a backbone."
        )
    hf = backbone_hf_config(cfg.backbone)
    if cfg.max_tokens > hf.n_positions:
        raise ConfigError(
            f"max_tokens={cfg.max_tokens} exceeds backbone {cfg.backbone!r}'s {hf.n_positions} "
            f"positions; set max_tokens <= {hf.n_positions} (histories are never truncated)."
        )
    return dataclasses.replace(cfg, n_layer=hf.n_layer, n_head=hf.n_head, n_embd=hf.n_embd)


def backbone_tokenizer(name: str):
    """The backbone's own tokenizer (its BPE) with our BOS, SEP and PAD added as new tokens; a
    fresh copy each call of one loaded once per process (a GGUF's takes ~10 s to convert)."""
    return copy.deepcopy(_backbone_tokenizer(name))


@functools.cache
def _backbone_tokenizer(name: str):
    weights = resolve(name)
    tokenizer = from_hub(
        lambda n: AutoTokenizer.from_pretrained(weights.folder, **weights.kwargs()),
        name,
        "tokenizer",
    )
    tokenizer.add_special_tokens({"bos_token": BOS, "sep_token": SEP, "pad_token": PAD})
    return tokenizer


@torch.no_grad()
def keep_positions(model: ItemGPT, table: torch.Tensor) -> None:
    """Give `model` the backbone's whole position table (position embd); `n_positions` follows,
    so a history past it raises in `forward` rather than being cut."""
    model.transformer.wpe = nn.Embedding.from_pretrained(table.clone(), freeze=False)
    model.n_positions = len(table)


@torch.no_grad()
def warm_start_added_sublayers(model: ItemGPT) -> int:
    """Each attention sublayer past a block's first (iam's inter, control's second causal) gets the
    block's pretrained layer norm and q/k/v and a zero output projection: it adds exactly 0 at
    step 0 yet receives gradients at once. Returns how many sublayers it set."""
    count = 0
    for block in model.transformer.h:
        (_, ln, attn), *added = block.sublayers()
        for _, ln_new, attn_new in added:
            ln_new.load_state_dict(ln.state_dict())
            attn_new.c_attn.load_state_dict(attn.c_attn.state_dict())
            nn.init.zeros_(attn_new.c_proj.weight)
            nn.init.zeros_(attn_new.c_proj.bias)
            count += 1
    return count


@torch.no_grad()
def init_item_head(model: ItemGPT) -> None:
    """The learned item table starts at each item's mean token embedding (its text); row 0,
    padding, at zero. A tied head is that mean by construction."""
    if model.cfg.item_head != "id":
        return
    tokens = model.transformer.wte(model.item_token_ids)  # (item token embd)
    model.item_emb.weight.copy_(torch.einsum("itd,it->id", tokens, model.item_token_weight))


def load_backbone(cfg: Config, vocab_size: int, item_tokens: list[list[int]]) -> ItemGPT:
    """ItemGPT(cfg, vocab_size, item_tokens) on `cfg.backbone`'s weights (see the module doc)."""
    cfg = backbone_config(cfg)
    hf = from_hub(GPT2LMHeadModel.from_pretrained, cfg.backbone, "weights")
    state = {k: v.float() for k, v in hf.state_dict().items()}
    model = ItemGPT(cfg, vocab_size, item_tokens)
    keep_positions(model, state["transformer.wpe.weight"])
    state["transformer.wte.weight"] = grow_rows(state["transformer.wte.weight"], vocab_size)
    load_gpt2_weights(model, state)
    warm_start_added_sublayers(model)
    init_item_head(model)
    return model


def build_model(cfg: Config, serializer) -> nn.Module:
    """The model `train` trains: a fresh ItemGPT, or one on `cfg.backbone`'s weights. `cfg` is a
    prepared config (`pipeline.prepare` has applied `backbone_config`)."""
    if cfg.backbone == SCRATCH:
        return ItemGPT(cfg, serializer.vocab_size, serializer.item_words())
    from iam_tutorial.llm import build_llm, is_decoder_backbone

    if is_decoder_backbone(cfg.backbone):
        return build_llm(cfg, serializer)
    return load_backbone(cfg, serializer.vocab_size, serializer.item_words())


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
