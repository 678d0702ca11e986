"""Item-aware attention inside any Hugging Face decoder (GPT-2, Llama, Qwen2 style), unrewritten.

transformers looks its attention function up by name (`AttentionInterface`). We register
`item_aware`: loaded with `attn_implementation="item_aware"`, every attention layer calls our
function, which builds that layer's mask (`module.layer_idx` -> the plan's kind) from the per-token
item index passed to the forward, `model(input_ids, item_index=...)`, with the very
`masks.allow_mask` ItemGPT uses. Only plans that re-mask existing layers fit: token, hatllm,
iam-alt, iam-heads. Notebook 05.
"""

# Axes: batch, head, group (of heads), query, key, dim (per-head feature), token, embd

import torch
from einops import rearrange, repeat
from transformers import AttentionInterface, AutoModelForCausalLM

from iam_tutorial.attention import additive_mask, attend, attend_grouped, per_head
from iam_tutorial.backbones import grow_rows, quiet
from iam_tutorial.masks import allow_mask
from iam_tutorial.plans import get_plan, layer_plan

ATTENTION_NAME = "item_aware"  # the name transformers dispatches on
PLAN_ATTRIBUTE = "item_aware_kinds"  # on the model's config: one mask kind per layer
KIND_ATTRIBUTE = "item_aware_kind"  # on one attention module: its own kind (llm.py sets it)
RECORDER = "item_aware_recorder"  # on an attention module: called with its weights (premise.py)


def layer_kind(module) -> str:
    """The mask kind of the attention `module`: its own (an added sublayer's), else its layer's
    entry in the config's plan."""
    if getattr(module, KIND_ATTRIBUTE, None):
        return getattr(module, KIND_ATTRIBUTE)
    kinds = getattr(module.config, PLAN_ATTRIBUTE, None)
    if kinds is None:
        raise ValueError(
            "This model has no item-aware plan: build it with load_item_aware() or "
            "make_item_aware(model, plan)."
        )
    return kinds[module.layer_idx]


def item_aware_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                         item_index=None, item_bias=None, **kwargs):  # fmt: skip
    """transformers' attention signature. Shapes: query (batch head query dim), key value
    (batch head key dim) with head possibly fewer (grouped-query attention), item_index
    (batch token) -> out (batch query head dim), no weights.

    The mask of this layer's kind comes from `item_bias` {kind: additive mask}, built once per
    forward by the caller (`item_biases`), else from item_index here. transformers' own
    `attention_mask` is ignored: our mask already hides PAD (its item index is PADDING), and a
    registered name gets no mask built for it anyway.
    """
    if item_index is None:
        raise ValueError(
            "Item-aware attention needs the item index: call model(ids, item_index=...)."
        )
    if query.shape[2] != key.shape[2] or getattr(module, "sliding_window", None):
        raise ValueError(
            "Item-aware attention covers full forwards: no KV cache, no sliding window."
        )
    kind = layer_kind(module)
    recorder = getattr(module, RECORDER, None)
    if recorder is not None:  # the einops reference, so the weights can be measured (premise.py)
        allow = per_head(allow_mask(kind, item_index.to(query.device)), query.shape[1])
        key, value = (repeat(t, "batch group key dim -> batch (group rep) key dim",
                             rep=query.shape[1] // t.shape[1]) for t in (key, value))  # fmt: skip
        if scaling is not None:  # attend scales by dim ** -0.5: fold any other scale into q
            query = query * (scaling * query.shape[-1] ** 0.5)
        out, weights = attend(query, key, value, allow, return_attn=True)
        recorder(module, weights, item_index)
        return rearrange(out, "batch head query dim -> batch query head dim").contiguous(), None
    if item_bias is not None and kind in item_bias:
        bias = item_bias[kind]
    else:
        bias = item_biases([kind], item_index.to(query.device), query.shape[1])[kind]
    return attend_grouped(query, key, value, bias, scaling, dropout), None


def item_biases(kinds, item_index: torch.Tensor, n_head: int) -> dict:
    """{kind: additive mask (batch 1|head query key)} for each mask kind in `kinds`, from
    item_index (batch token): built once per forward and shared by every layer of that kind."""
    return {kind: additive_mask(allow_mask(kind, item_index), n_head) for kind in set(kinds)}


AttentionInterface.register(ATTENTION_NAME, item_aware_attention)


def plan_kinds(plan: str, n_layer: int, hatllm_split=None) -> list[str]:
    """One mask kind per layer of a plan that adds no weights (a decoder has one attention per
    layer); plans that add sublayers (iam, control) need a model that stacks them: ItemLLM
    (llm.py, Llama-family backbones) or ItemGPT (gpt2.py)."""
    layers = layer_plan(plan, n_layer, hatllm_split)
    if get_plan(plan).new_weights or any(len(block) != 1 for block in layers):
        raise ValueError(
            f"Plan {plan!r} adds attention sublayers, which a Hugging Face decoder does not have; "
            "use token, hatllm, iam-alt or iam-heads, or ItemLLM (iam_tutorial.llm) or ItemGPT "
            "(iam_tutorial.gpt2), which add them."
        )
    return [block[0] for block in layers]


def make_item_aware(model, plan: str, hatllm_split=None):
    """Switch a loaded transformers model to item-aware attention under `plan`; returns it."""
    config = model.config.get_text_config()
    setattr(config, PLAN_ATTRIBUTE, plan_kinds(plan, config.num_hidden_layers, hatllm_split))
    model.set_attn_implementation(ATTENTION_NAME)
    if model.config._attn_implementation != ATTENTION_NAME:  # transformers only warns
        raise ValueError(
            f"{type(model).__name__} does not dispatch attention through transformers' "
            "AttentionInterface, so it cannot be made item-aware this way."
        )
    return model


def load_item_aware(name_or_path: str, plan: str, hatllm_split=None, **kwargs):
    """`AutoModelForCausalLM.from_pretrained` with item-aware attention under `plan`."""
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, attn_implementation=ATTENTION_NAME, **kwargs
    )
    return make_item_aware(model, plan, hatllm_split)


@torch.no_grad()
def add_item_tokens(model, n_tokens: int):
    """Grow the input embedding to `n_tokens` rows (our BOS, SEP, PAD after the backbone's own
    tokens), the new rows at the mean row as ItemGPT's (`backbones.grow_rows`); returns `model`.
    A checkpoint whose table already has spare rows (Qwen pads it) needs its own rule."""
    old = model.get_input_embeddings().weight.detach().clone()
    with quiet():
        model.resize_token_embeddings(n_tokens, mean_resizing=False)
    model.get_input_embeddings().weight.copy_(grow_rows(old, n_tokens))
    return model


def hidden_states(model, tokens: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states (batch token embd) for tokens, item_index (batch token)."""
    return model.base_model(input_ids=tokens, item_index=item_index).last_hidden_state
