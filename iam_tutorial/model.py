"""A tiny GPT-2 from scratch whose attention sublayers each follow a mask from a layer plan.

Parameter names match transformers' GPT-2 (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...),
so a `GPT2LMHeadModel` state dict loads with `load_gpt2_weights`. The recommender head reads the
hidden state at each item's SEP and scores the whole catalog (SASRec-style: every prefix trained at
once).
"""

# Axes: batch, head, token, dim (per-head feature), embd (model width), item

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from iam_tutorial.attention import attend, attend_flex, attend_sdpa, flex_block_mask
from iam_tutorial.masks import allow_mask
from iam_tutorial.plans import layer_plan
from iam_tutorial.serialize import IGNORE, Batch


class SelfAttention(nn.Module):
    """Multi-head self-attention under a given mask (GPT-2's `attn`: c_attn, c_proj)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, impl: str):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.dropout, self.impl = n_head, dropout, impl

    def forward(self, x, allow, return_attn: bool = False):
        """x (batch token embd), allow (batch query key) or a flex BlockMask -> (batch token
        embd)."""
        q, k, v = rearrange(
            self.c_attn(x),
            "batch token (three head dim) -> three batch head token dim",
            three=3,
            head=self.n_head,
        )
        attn = None
        if return_attn or self.impl == "einops":
            y, attn = attend(q, k, v, allow, return_attn=True)
        elif self.impl == "flex":
            y = attend_flex(q, k, v, allow)
        else:
            y = attend_sdpa(q, k, v, allow, self.dropout if self.training else 0.0)
        y = rearrange(y, "batch head token dim -> batch token (head dim)")
        return self.resid_dropout(self.c_proj(y)), attn


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN block: one attention sublayer per mask kind in `kinds`, then the MLP.

    The first sublayer keeps GPT-2's names (ln_1, attn); a second one (IAM) is ln_1_2, attn_2.
    """

    def __init__(self, kinds: tuple[str, ...], n_embd, n_head, dropout, impl):
        super().__init__()
        self.kinds = kinds
        for i, _ in enumerate(kinds):
            suffix = "" if i == 0 else f"_{i + 1}"
            self.add_module(f"ln_1{suffix}", nn.LayerNorm(n_embd))
            self.add_module(f"attn{suffix}", SelfAttention(n_embd, n_head, dropout, impl))
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def sublayers(self):
        """(mask kind, layer norm, attention) for each attention sublayer, in order."""
        for i, kind in enumerate(self.kinds):
            suffix = "" if i == 0 else f"_{i + 1}"
            yield kind, getattr(self, f"ln_1{suffix}"), getattr(self, f"attn{suffix}")

    def forward(self, x, masks: dict, attn_maps: list | None = None):
        for kind, ln, attn in self.sublayers():
            y, weights = attn(ln(x), masks[kind], return_attn=attn_maps is not None)
            x = x + y
            if attn_maps is not None:
                attn_maps.append((kind, weights))
        return x + self.mlp(self.ln_2(x))


class ItemGPT(nn.Module):
    """GPT-2 over serialized histories + a full-catalog item head.

    Built from a vocabulary size and an item-token table: `item_tokens[i]` are the tokens of
    catalog item i without the shared SEP (row 0, padding, is empty).
    `item_head="id"`: a learned item table; `"tied"`: an item's vector is the mean of its tokens'
    input embeddings (text-derived for text items; SASRec's shared embedding for ID items).
    `item_input="text+id"` adds each item's row of that table to every token of the item, so the
    model knows item identity as well as text, at no extra parameters.
    """

    def __init__(self, cfg, vocab_size: int, item_tokens: list[list[int]]):
        super().__init__()
        n_items = len(item_tokens) - 1
        self.cfg, self.n_items = cfg, n_items
        self.plan = layer_plan(cfg.plan, cfg.n_layer, cfg.hatllm_split)
        self.n_positions = cfg.max_tokens
        # config.check_config has checked every value (attn_impl, n_embd % n_head, item inputs).
        blocks = [Block(k, cfg.n_embd, cfg.n_head, cfg.dropout, cfg.attn_impl) for k in self.plan]
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.max_tokens, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList(blocks),
                ln_f=nn.LayerNorm(cfg.n_embd),
            )
        )
        if cfg.item_head == "id":
            self.item_emb = nn.Embedding(n_items + 1, cfg.n_embd)
        elif cfg.item_head != "tied":
            raise ValueError(f"Unknown item_head {cfg.item_head!r}: use 'id' or 'tied'.")
        self._register_item_tokens(item_tokens)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * len(self.plan)))

    def _register_item_tokens(self, words: list[list[int]]):
        """Item tokens, padded: (item token) ids and averaging weights (the tied head's input)."""
        width = max(len(w) for w in words)
        ids = torch.zeros(len(words), width, dtype=torch.long)
        weight = torch.zeros(len(words), width)
        for i, w in enumerate(words):
            ids[i, : len(w)], weight[i, : len(w)] = torch.tensor(w, dtype=torch.long), 1.0
        self.register_buffer("item_token_ids", ids, persistent=False)
        self.register_buffer("item_token_weight", weight / weight.sum(1, keepdim=True).clamp(min=1))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def build_masks(self, item_index: torch.Tensor, dense: bool = False) -> dict:
        """One mask per kind in the plan, built once per batch and shared by every layer
        (FlexAttention block masks on the flex path unless `dense`)."""
        kinds = sorted({kind for block in self.plan for kind in block})
        if self.cfg.attn_impl == "flex" and not dense:
            return {kind: flex_block_mask(kind, item_index, self.cfg.n_head) for kind in kinds}
        return {kind: allow_mask(kind, item_index) for kind in kinds}

    def forward(self, tokens, item_index, attn_maps: list | None = None, items=None):
        """tokens, item_index (batch token) -> hidden (batch token embd). Pass a list as
        `attn_maps` to receive (kind, attention (batch head query key)) per sublayer; `items`
        (batch token), each token's catalog item, is needed with item_input='text+id'."""
        n_tokens = tokens.shape[1]
        if n_tokens > self.n_positions:
            raise ValueError(
                f"History of {n_tokens} tokens is longer than the model's {self.n_positions} "
                f"positions; serialize with max_tokens <= {self.n_positions} or raise max_tokens."
            )
        pos = torch.arange(n_tokens, device=tokens.device)
        x = self.transformer.wte(tokens) + self.transformer.wpe(pos)
        if self.cfg.item_input == "text+id":
            if items is None:
                raise ValueError("item_input='text+id' needs each token's catalog item (`items`).")
            x = x + self.item_emb(items) * (items != 0).unsqueeze(-1)  # BOS and PAD get none
        x = self.transformer.drop(x)
        masks = self.build_masks(item_index, dense=attn_maps is not None)  # weights need dense
        for block in self.transformer.h:
            x = block(x, masks, attn_maps)
        return self.transformer.ln_f(x)

    def lm_logits(self, hidden):
        """Next-token logits through the tied input embedding (GPT2LMHeadModel's lm_head)."""
        return hidden @ self.transformer.wte.weight.T

    def item_table(self):
        """(item embd): the vector each catalog item is scored with; row 0 is padding."""
        return self.item_emb.weight if self.cfg.item_head == "id" else self.mean_token_table()

    def mean_token_table(self):
        """(item embd): each item's mean token embedding, row 0 (padding) zero: the tied head, and
        where a pretrained backbone's learned item table starts (gpt2.init_item_head)."""
        token_vectors = self.transformer.wte(self.item_token_ids)
        return torch.einsum("itd,it->id", token_vectors, self.item_token_weight)

    def loss(self, batch: Batch):
        """Full-softmax cross-entropy over the catalog at every SEP that has a next item."""
        hidden = self(batch.tokens, batch.item_index, items=batch.items)
        where = batch.targets != IGNORE
        logits = hidden[where] @ self.item_table().T
        return F.cross_entropy(logits.float(), batch.targets[where])

    def score(self, batch: Batch):
        """Catalog scores (batch item) for the item after each history (read at its last SEP).

        The final product runs in fp32 even under bf16 autocast: bf16 scores tie the target with
        other items for most users, and ranks must not depend on how ties are broken."""
        hidden = self(batch.tokens, batch.item_index, items=batch.items)
        last = hidden[torch.arange(len(hidden), device=hidden.device), batch.readout]
        with torch.autocast(hidden.device.type, enabled=False):
            return last.float() @ self.item_table().float().T


CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)


@torch.no_grad()
def load_gpt2_weights(model: ItemGPT, hf_state: dict) -> list[str]:
    """Copy a transformers GPT-2 state dict into `model`; returns the names loaded.

    HF's Conv1D stores weights as (in, out), nn.Linear as (out, in): those are transposed.
    lm_head is tied to wte in both, so it is skipped.
    """
    own = model.state_dict()
    loaded = []
    for name, value in hf_state.items():
        if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if name not in own:
            raise KeyError(f"{name} has no counterpart in the model; is this a GPT-2 state dict?")
        if name.endswith(CONV1D_WEIGHTS):
            value = value.T
        if own[name].shape != value.shape:
            raise ValueError(
                f"{name}: shape {tuple(value.shape)} != model's {tuple(own[name].shape)} (a "
                f"pretrained backbone with added tokens: use iam_tutorial.gpt2.load_backbone)."
            )
        own[name].copy_(value)
        loaded.append(name)
    return loaded
