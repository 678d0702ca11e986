"""GPT-2-family checkpoints (gpt2, distilgpt2, a local folder) under ItemGPT: family.py's "gpt2".

Both papers fine-tune a pretrained LLM under item-aware masks. Loading keeps the backbone's BPE
(plus BOS, SEP, PAD, whose embedding rows start at the mean row), its position table and its
weights; the item head starts at each item's mean token embedding; an attention sublayer a plan adds
(iam, control) starts as a copy of its block's pretrained one whose output projection is zero, i.e.
the identity. So at step 0 the model computes what the backbone computes under the plan's masks.
Notebook 05.
"""

# Axes: item, token, embd (model width), vocab, position

import dataclasses

import torch
import torch.nn as nn
from transformers import GPT2LMHeadModel

from iam_tutorial.backbones import BackboneError, Shape, from_hub, grow_rows, hf_config
from iam_tutorial.config import Config
from iam_tutorial.model import ItemGPT, load_gpt2_weights

# What ItemGPT's blocks compute: a checkpoint's config must hold one of these values per field.
GPT2_LIKE = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"),
             "layer_norm_epsilon": (1e-5,),
             "scale_attn_weights": (True,),
             "scale_attn_by_inverse_layer_idx": (False,),
             "add_cross_attention": (False,)}  # fmt: skip


def shape(name: str) -> Shape:
    """The backbone's shape and context, checked to be a GPT-2 that ItemGPT's blocks compute."""
    hf = hf_config(name)
    for field, allowed in GPT2_LIKE.items():
        if getattr(hf, field) not in allowed:
            raise BackboneError(
                f"Backbone {name!r}: {field}={getattr(hf, field)!r} is not GPT-2's."
            )
    if hf.n_inner not in (None, 4 * hf.n_embd):
        raise BackboneError(
            f"Backbone {name!r}: n_inner={hf.n_inner}, ItemGPT's MLP is 4 x n_embd."
        )
    return Shape(hf.n_layer, hf.n_head, hf.n_embd, hf.n_positions)


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
    model.item_emb.weight.copy_(model.mean_token_table())


def load_backbone(cfg: Config, vocab_size: int, item_tokens: list[list[int]]) -> ItemGPT:
    """ItemGPT(cfg, vocab_size, item_tokens) on `cfg.backbone`'s weights (see the module doc),
    in the backbone's shape (family.model_config checks the rest)."""
    size = shape(cfg.backbone)
    cfg = dataclasses.replace(cfg, n_layer=size.n_layer, n_head=size.n_head, n_embd=size.n_embd)
    hf = from_hub(GPT2LMHeadModel.from_pretrained, cfg.backbone, "weights")
    state = {k: v.float() for k, v in hf.state_dict().items()}
    model = ItemGPT(cfg, vocab_size, item_tokens)
    keep_positions(model, state["transformer.wpe.weight"])
    state["transformer.wte.weight"] = grow_rows(state["transformer.wte.weight"], vocab_size)
    load_gpt2_weights(model, state)
    warm_start_added_sublayers(model)
    init_item_head(model)
    return model


def build(cfg: Config, serializer) -> ItemGPT:
    """family.build_model for a GPT-2 backbone."""
    return load_backbone(cfg, serializer.vocab_size, serializer.item_words())
