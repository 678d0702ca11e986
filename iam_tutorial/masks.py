"""Attention masks from the per-token item index: causal, intra-item and inter-item.

IAM (From Token to Item, WWW 2026) stacks an intra-item layer (a token sees only its own item) and
an inter-item layer (a token sees only other items); HatLLM (2025) calls them IN and CR. One
convention everywhere: boolean, True = may attend, shape (batch query key). Notebook 02 draws every
mask.
"""

# Axes: batch, head, query (rows of a mask), key (columns), token

import torch
from einops import rearrange

from iam_tutorial.serialize import GLOBAL, PADDING

MASK_KINDS = ("causal", "intra", "inter")
# A head-split sublayer: its heads split into groups as `head_groups` says, one kind per group.
HEAD_SPLITS = {"intra|inter": ("intra", "inter")}


def head_groups(n_head: int, n_groups: int) -> list[int]:
    """The group of each head: as even as they go, earlier groups one larger (9 heads in 2 groups
    are 5 + 4: [0, 0, 0, 0, 0, 1, 1, 1, 1]). The one rule for the dense mask, the Flex mask and
    premise.py's measurement."""
    if n_head < n_groups:
        raise ValueError(f"{n_head} heads cannot be split into {n_groups} groups.")
    sizes = [n_head // n_groups + (g < n_head % n_groups) for g in range(n_groups)]
    return [g for g, size in enumerate(sizes) for _ in range(size)]


def allow_rule(kind: str, q_item, k_item, q_pos, k_pos):
    """Whether a query token may attend to a key token; elementwise and broadcastable.

    - causal: the key is not later than the query and is not PAD;
    - intra:  causal, and the key is in the query's item or is the global BOS;
    - inter:  causal, and the key is in another item or is the global BOS.
    A PAD query sees only itself, so no row is ever empty (no NaN) and real rows never see PAD.
    The same function builds dense masks (below) and FlexAttention block masks (attention.py).
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"Unknown mask kind {kind!r}: choose one of {', '.join(MASK_KINDS)}.")
    allow = (k_pos <= q_pos) & (k_item != PADDING)
    if kind == "intra":
        allow = allow & ((q_item == k_item) | (k_item == GLOBAL))
    elif kind == "inter":
        allow = allow & ((q_item != k_item) | (k_item == GLOBAL))
    return torch.where(q_item != PADDING, allow, q_pos == k_pos)


def allow_mask(kind: str, item_index: torch.Tensor) -> torch.Tensor:
    """Dense mask. Shapes: item_index (batch token) -> allow (batch query key), bool; a head-split
    kind ("intra|inter") gives (batch group query key), one mask per group of heads."""
    if kind in HEAD_SPLITS:
        return torch.stack([allow_mask(k, item_index) for k in HEAD_SPLITS[kind]], dim=1)
    pos = torch.arange(item_index.shape[-1], device=item_index.device)
    return allow_rule(
        kind,
        rearrange(item_index, "batch query -> batch query 1"),
        rearrange(item_index, "batch key -> batch 1 key"),
        rearrange(pos, "query -> 1 query 1"),
        rearrange(pos, "key -> 1 1 key"),
    )


def allow_causal(item_index: torch.Tensor) -> torch.Tensor:
    return allow_mask("causal", item_index)


def allow_intra_item(item_index: torch.Tensor) -> torch.Tensor:
    return allow_mask("intra", item_index)


def allow_inter_item(item_index: torch.Tensor) -> torch.Tensor:
    return allow_mask("inter", item_index)
