"""A pretrained LLM (Llama family: SmolLM2-135M) as an item-aware recommender, every plan on it.

The backbone is a transformers decoder loaded as it was pretrained; we change three things:
- attention: every layer calls `hf_adapter.item_aware_attention` (transformers' AttentionInterface),
  which masks it by the plan's kind for that layer: token, hatllm, iam-alt and iam-heads re-mask the
  layers the backbone has;
- iam and control add a second attention sublayer to each decoder layer, a copy of that layer's
  pretrained attention and norm whose output projection is zero: it adds exactly 0 at step 0, so
  the model starts as the backbone under the plan's masks (`AddedAttention`, `StackedLayer`);
- items: our BOS, SEP and PAD tokens join the vocabulary at the mean embedding row; the item head
  starts at each item's mean token embedding; with item_input="text+id" an ID vector, zero at step
  0, is added to every token of its item.
`loss` and `score` are ItemGPT's, so the trainer, metrics and per-user ranks are the same.
Notebook 05.
"""

# Axes: batch, token, embd (model width), item (catalog)

import copy
import functools

import torch
import torch.nn as nn
from transformers import AutoModelForCausalLM

from iam_tutorial.backbones import Shape, quiet, resolve
from iam_tutorial.backbones import hf_config as decoder_config
from iam_tutorial.config import Config, ConfigError
from iam_tutorial.hf_adapter import ATTENTION_NAME, KIND_ATTRIBUTE, add_item_tokens, item_biases
from iam_tutorial.model import ItemGPT
from iam_tutorial.plans import layer_plan


def shape(name: str) -> Shape:
    """family.py's "decoder" family: the backbone's shape and context, from its config."""
    hf = decoder_config(name)
    return Shape(hf.num_hidden_layers, hf.num_attention_heads, hf.hidden_size,
                 hf.max_position_embeddings)  # fmt: skip


class AddedAttention(nn.Module):
    """A second attention sublayer for a decoder layer: its own norm and attention, started as
    copies of the layer's pretrained ones with a zero output projection (adds 0 at step 0)."""

    def __init__(self, layer, kind: str):
        super().__init__()
        self.norm = copy.deepcopy(layer.input_layernorm)
        self.attn = copy.deepcopy(layer.self_attn)
        setattr(self.attn, KIND_ATTRIBUTE, kind)
        with torch.no_grad():
            self.attn.o_proj.weight.zero_()
            if self.attn.o_proj.bias is not None:
                self.attn.o_proj.bias.zero_()

    def forward(self, x, **kwargs):
        return self.attn(hidden_states=self.norm(x), **kwargs)[0]


class StackedLayer(nn.Module):
    """A decoder layer with added attention sublayers between its attention and its MLP:
    x + attn(norm(x)), then + added(...) for each, then + mlp(norm(...)), as IAM stacks them."""

    def __init__(self, layer, added: list[AddedAttention]):
        super().__init__()
        self.layer, self.added = layer, nn.ModuleList(added)

    def forward(self, hidden_states, **kwargs):
        layer = self.layer
        x = (
            hidden_states
            + layer.self_attn(hidden_states=layer.input_layernorm(hidden_states), **kwargs)[0]
        )
        for sublayer in self.added:
            x = x + sublayer(x, **kwargs)
        return x + layer.mlp(layer.post_attention_layernorm(x))


class ItemLLM(nn.Module):
    """A transformers decoder over serialized histories + a full-catalog item head.

    `decoder` is the base model (e.g. LlamaModel) loaded with attn_implementation="item_aware";
    `item_tokens[i]` are the tokens of catalog item i without SEP (row 0, padding, is empty)."""

    def __init__(self, cfg: Config, decoder, item_tokens: list[list[int]]):
        super().__init__()
        self.cfg, self.decoder, self.n_items = cfg, decoder, len(item_tokens) - 1
        self.n_positions = decoder.config.max_position_embeddings
        self.plan = layer_plan(cfg.plan, decoder.config.num_hidden_layers, cfg.hatllm_split)
        for i, kinds in enumerate(self.plan):
            layer = decoder.layers[i]
            setattr(layer.self_attn, KIND_ATTRIBUTE, kinds[0])
            if len(kinds) > 1:
                decoder.layers[i] = StackedLayer(
                    layer, [AddedAttention(layer, k) for k in kinds[1:]]
                )
        width = decoder.config.hidden_size
        self.item_emb = nn.Embedding(self.n_items + 1, width)  # the head: mean token embedding
        with torch.no_grad():
            self.item_emb.weight.copy_(self.mean_token_embedding(item_tokens))
        if cfg.item_input == "text+id":
            self.id_emb = nn.Embedding(self.n_items + 1, width)  # added to each token: 0 at step 0
            nn.init.zeros_(self.id_emb.weight)

    @torch.no_grad()
    def mean_token_embedding(self, item_tokens: list[list[int]]) -> torch.Tensor:
        """(item embd): each item's mean input-token embedding; row 0 (padding) zero."""
        table = self.decoder.get_input_embeddings().weight
        rows = [table[t].mean(0) if t else torch.zeros_like(table[0]) for t in item_tokens]
        return torch.stack(rows).float()

    def forward(self, tokens, item_index, items=None):
        """tokens, item_index (batch token) -> hidden (batch token embd), after the final norm."""
        if tokens.shape[1] > self.n_positions:
            raise ValueError(
                f"History of {tokens.shape[1]} tokens is longer than the backbone's context of "
                f"{self.n_positions}; serialize with max_tokens <= {self.n_positions}."
            )
        x = self.decoder.get_input_embeddings()(tokens)
        if self.cfg.item_input == "text+id":
            if items is None:
                raise ValueError("item_input='text+id' needs each token's catalog item (`items`).")
            x = x + self.id_emb(items) * (items != 0).unsqueeze(-1)  # BOS and PAD get none
        kinds = [kind for block in self.plan for kind in block]
        bias = item_biases(kinds, item_index, self.decoder.config.num_attention_heads)
        out = self.decoder(inputs_embeds=x, item_index=item_index, item_bias=bias, use_cache=False)
        return out.last_hidden_state

    def item_table(self):
        """(item embd): the vector each catalog item is scored with; row 0 is padding."""
        return self.item_emb.weight

    # The very loss and scores of the from-scratch model: full-softmax cross-entropy over the
    # catalog at every SEP, and fp32 catalog scores at each history's last SEP.
    loss = ItemGPT.loss
    score = ItemGPT.score


def load_decoder(name: str, vocab_size: int, lm=None):
    """The backbone's base decoder with item-aware attention and `vocab_size` input rows: a fresh
    copy of the weights, which are read once per process (`pretrained_lm`), or of `lm`, a causal
    LM of the same family (lab/fingerprint.py builds a tiny one)."""
    lm = copy.deepcopy(lm or pretrained_lm(name))
    add_item_tokens(lm, vocab_size)
    return lm.base_model


@functools.cache
def pretrained_lm(name: str):
    """The backbone as pretrained (float32, attn_implementation="item_aware"), loaded once."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    weights = resolve(name)
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)  # its dequantizing bar ignores logging
    try:
        with quiet():
            lm = AutoModelForCausalLM.from_pretrained(
                weights.folder, attn_implementation=ATTENTION_NAME, dtype=torch.float32,
                **weights.kwargs(),
            )  # fmt: skip
    finally:
        gguf_utils.tqdm = bar
    if lm.config._attn_implementation != ATTENTION_NAME:
        raise ConfigError(f"{type(lm).__name__} does not dispatch through AttentionInterface.")
    return lm


def apply_lora(model: ItemLLM, rank: int) -> ItemLLM:
    """LoRA adapters (peft) on every attention and MLP projection; the backbone frozen, the item
    tables, the ID vectors and any added attention sublayers' adapters trained."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    inject_adapter_in_model(config, model.decoder)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or not name.startswith("decoder.")
    return model


def build(cfg: Config, serializer, lm=None) -> ItemLLM:
    """family.build_model for a decoder backbone: ItemLLM on `cfg.backbone` (or on `lm`, see
    `load_decoder`), for a serializer built with the backbone's tokenizer."""
    decoder = load_decoder(cfg.backbone, serializer.vocab_size, lm)
    model = ItemLLM(cfg, decoder, serializer.item_words())
    return apply_lora(model, cfg.lora_rank) if cfg.finetune == "lora" else model
