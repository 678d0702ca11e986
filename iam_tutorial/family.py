"""One way to pick a model: `cfg.backbone` names a family, and each family has a shape, a
tokenizer and a builder.

- scratch (`backbone="scratch"`): ItemGPT from scratch (model.py), a BPE trained on the item texts;
- gpt2 (a GPT-2-family checkpoint): ItemGPT on its weights (gpt2.py), the checkpoint's own BPE;
- decoder (Llama, Qwen2, Mistral: SmolLM2-135M): ItemLLM (llm.py), the backbone's own tokenizer.
Only this module asks which family a backbone is. transformers loads only for a backbone.
"""

import dataclasses

from iam_tutorial.config import SCRATCH, Config, ConfigError
from iam_tutorial.model import ItemGPT
from iam_tutorial.plans import get_plan

# transformers' model_type of the decoders whose layers llm.StackedLayer reproduces.
DECODERS = ("llama", "qwen2", "mistral")


def family(backbone: str) -> str:
    """'scratch', 'gpt2' or 'decoder', from the backbone's transformers config."""
    if backbone == SCRATCH:
        return SCRATCH
    from iam_tutorial.backbones import BackboneError, hf_config

    kind = hf_config(backbone).model_type
    if kind == "gpt2" or kind in DECODERS:
        return "gpt2" if kind == "gpt2" else "decoder"
    raise BackboneError(
        f"Backbone {backbone!r} is a {kind} model; ItemGPT loads GPT-2-family weights and ItemLLM "
        f"{', '.join(DECODERS)} decoders. Make others item-aware with hf_adapter.load_item_aware."
    )


def model_config(cfg: Config) -> Config:
    """`cfg` with its backbone's shape (n_layer, n_head, n_embd); unchanged from scratch. Raises
    ConfigError where a backbone cannot serve: ID items (sasrec), `text+id` on GPT-2 (its table
    would shift every input embedding at step 0), or a token budget past the backbone's context
    (the one place it is checked)."""
    if cfg.backbone == SCRATCH:
        return cfg
    if not get_plan(cfg.plan).text:
        raise ConfigError(f"Plan {cfg.plan!r} reads item IDs; a pretrained backbone reads text.")
    kind = family(cfg.backbone)
    if kind == "gpt2" and cfg.item_input != "text":
        raise ConfigError(
            "item_input='text+id' adds an item vector to every input token, which changes the "
            "pretrained model's function at step 0; use item_input='text' with a GPT-2 backbone."
        )
    shape = _module(kind).shape(cfg.backbone)
    if cfg.max_tokens > shape.context:
        raise ConfigError(
            f"max_tokens={cfg.max_tokens} exceeds backbone {cfg.backbone!r}'s context of "
            f"{shape.context} tokens; set max_tokens <= {shape.context} (histories are never "
            "truncated)."
        )
    return dataclasses.replace(cfg, n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd)


def pretrained_tokenizer(cfg: Config):
    """The backbone's own tokenizer, or None from scratch (pipeline.py trains a BPE then)."""
    if cfg.backbone == SCRATCH:
        return None
    from iam_tutorial.backbones import backbone_tokenizer

    return backbone_tokenizer(cfg.backbone)


def build_model(cfg: Config, serializer):
    """The model `train` trains: a fresh ItemGPT, or its family's model on `cfg.backbone`'s
    weights. `cfg` is a prepared config (`pipeline.prepare` has applied `model_config`)."""
    kind = family(cfg.backbone)
    if kind == SCRATCH:
        return ItemGPT(cfg, serializer.vocab_size, serializer.item_words())
    return _module(kind).build(cfg, serializer)


def _module(kind: str):
    """The module that serves family `kind`: its `shape(name)` and `build(cfg, serializer)`."""
    if kind == "gpt2":
        from iam_tutorial import gpt2

        return gpt2
    from iam_tutorial import llm

    return llm
