"""Where attention goes: per sublayer, the share of attention mass on a query's own item, on other
items and on BOS; and which tokens can reach which through a whole layer plan.

HatLLM (2025) rests its schedule on this measurement in a trained LLM: shallow layers attend within
items, deep layers across them. Notebook 02 measures fresh models, notebook 04 trained ones.
"""

# Axes: batch, head, query (rows of a mask), key (columns), token

import pandas as pd
import torch
from einops import rearrange, reduce

from iam_tutorial.masks import allow_mask
from iam_tutorial.serialize import GLOBAL, Batch

KEY_GROUPS = ("own_item", "other_items", "bos")


@torch.no_grad()
def attention_maps(model, batch: Batch) -> list[tuple[str, torch.Tensor]]:
    """(mask kind, attention (batch head query key)) for every sublayer of `model` on `batch`.

    Runs in eval mode without gradients; the model's train/eval mode is restored afterwards.
    """
    was_training, device = model.training, next(model.parameters()).device
    maps: list[tuple[str, torch.Tensor]] = []
    model.eval()
    try:  # `items`: a text+id model adds each token's item vector
        model(
            batch.tokens.to(device),
            batch.item_index.to(device),
            attn_maps=maps,
            items=batch.items.to(device),
        )
    finally:
        model.train(was_training)
    return maps


def even_attention(kind: str, item_index: torch.Tensor) -> torch.Tensor:
    """Attention that spreads each query's weight evenly over the keys mask `kind` lets it see:
    what a fresh model's near-orthogonal queries and keys give, and the yardstick for a trained
    one. Shapes: item_index (batch token) -> (batch head query key), one head (a head split
    such as "intra|inter" gives one per group)."""
    allow = allow_mask(kind, item_index).double()
    even = allow / allow.sum(-1, keepdim=True)  # masks.py leaves no row empty
    return even if even.dim() == 4 else rearrange(even, "batch query key -> batch 1 query key")


def even_spread_mass(kinds, item_index: torch.Tensor, skip_first_item: bool = True) -> pd.DataFrame:
    """`attention_mass` of even attention (`even_attention`) under each mask kind in `kinds`:
    the share of own-item, other-item and BOS keys among the keys each query may see."""
    maps = [(kind, even_attention(kind, item_index)) for kind in kinds]
    return attention_mass(maps, item_index, skip_first_item=skip_first_item)


def key_groups(item_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Masks of the keys in the query's own item, in other items, and BOS (PAD is in none).
    Shapes: item_index (batch token) -> each (batch query key) bool."""
    query = rearrange(item_index, "batch query -> batch query 1")
    key = rearrange(item_index, "batch key -> batch 1 key")
    is_item = key >= 0  # item tokens; BOS is GLOBAL and PAD is PADDING, both negative
    return {
        "own_item": is_item & (key == query),
        "other_items": is_item & (key != query),
        "bos": (key == GLOBAL).expand(-1, item_index.shape[1], -1),
    }


def measured_queries(item_index: torch.Tensor, skip_first_item: bool = True) -> torch.Tensor:
    """Queries that are averaged (batch query) bool: item tokens, never BOS or PAD.

    With `skip_first_item` the first item's tokens are left out too: they have no other item to
    attend to under any mask, so they would count "cannot look across" as "does not".
    """
    return item_index >= (1 if skip_first_item else 0)


def attention_mass(
    attn_maps: list, item_index: torch.Tensor, plan=None, skip_first_item: bool = True
) -> pd.DataFrame:
    """One row per sublayer: its number, mask kind (and block, given the `plan`) and the mean share
    of attention mass that measured queries put on own_item, other_items and bos keys.

    Each query's three shares sum to 1 (real queries never see PAD); the means weight every
    (row, head, query) equally. Shapes: attn_maps [(kind, attn (batch head query key))],
    item_index (batch token).
    """
    kinds = [kind for kind, _ in attn_maps]
    if plan is not None and kinds != [kind for block in plan for kind in block]:
        raise ValueError(f"attn_maps kinds {kinds} do not follow the plan {plan}.")
    item_index = item_index.to(attn_maps[0][1].device)
    queries = measured_queries(item_index, skip_first_item)
    if not queries.any():
        raise ValueError("No query to measure: every history is shorter than two items.")
    groups = key_groups(item_index)
    blocks = [b for b, block in enumerate(plan) for _ in block] if plan is not None else None
    rows = []
    for sublayer, (kind, attn) in enumerate(attn_maps):
        row = {"block": blocks[sublayer]} if blocks else {}
        row |= {"sublayer": sublayer, "kind": kind}
        rows.append(row | {name: _mean_share(attn, keys, queries) for name, keys in groups.items()})
    return pd.DataFrame(rows)


def _mean_share(attn: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor) -> float:
    """Mass each query puts on `keys`, averaged over heads, then over the measured queries."""
    if attn.shape[-2:] != keys.shape[-2:] or attn.shape[0] != keys.shape[0]:
        raise ValueError(
            f"attention {tuple(attn.shape)} does not match (batch head query key) for item_index "
            f"(batch token) = {tuple(queries.shape)}."
        )
    keys = rearrange(keys, "batch query key -> batch 1 query key")
    mass = reduce(attn.double() * keys, "batch head query key -> batch head query", "sum")
    mass = reduce(mass, "batch head query -> batch query", "mean")
    return float(mass[queries].mean())


def reachability(plan, item_index: torch.Tensor) -> torch.Tensor:
    """Which tokens can change which outputs after the whole plan. Shapes: item_index
    (batch token) -> reach (batch query key) bool, True when the token at `key` can influence
    the output at `query`.

    An attention sublayer mixes along its mask and the residual stream keeps what a position had:
    reach <- reach | (allow @ reach) as a boolean product; layer norms and MLPs act per token.
    """
    batch, n = item_index.shape
    reach = torch.eye(n, dtype=torch.bool, device=item_index.device).expand(batch, n, n)
    for block in plan:
        for kind in block:
            allow = allow_mask(kind, item_index)
            allow = allow.any(1) if allow.dim() == 4 else allow  # a head split: its groups' union
            reach = reach | (allow.float() @ reach.float() > 0)
    return reach
