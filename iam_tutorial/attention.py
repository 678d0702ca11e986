"""Masked multi-head attention: a readable einops reference and fast paths that must agree with it.

`attend` spells softmax(q k^T / sqrt(dim) + mask) v out in named axes; `attend_sdpa` hands the same
boolean mask to PyTorch's fused kernel; `attend_flex` (CUDA) skips the key blocks an item-aware mask
rules out entirely. tests/test_attention.py proves they agree, values and gradients.
"""

# Axes: batch, head, query, key, dim (per-head feature), token

import torch
import torch.nn.functional as F
from einops import einsum, rearrange

from iam_tutorial.masks import HEAD_SPLITS, allow_rule, head_groups


def per_head(allow: torch.Tensor, n_head: int) -> torch.Tensor:
    """allow (batch query key) -> (batch 1 query key), shared by every head; a head-split mask
    (batch group query key) -> (batch head query key), each group of heads with its own mask,
    the groups as `masks.head_groups` splits them (9 heads in 2 groups: 5 + 4; SmolLM2 has 9)."""
    if allow.dim() == 3:
        return rearrange(allow, "batch query key -> batch 1 query key")
    group = torch.tensor(head_groups(n_head, allow.shape[1]), device=allow.device)
    return allow[:, group]


def attend(q, k, v, allow, return_attn: bool = False):
    """Reference attention. Shapes: q (batch head query dim), k v (batch head key dim),
    allow (batch query key) or (batch group query key) bool, True = may attend -> out (batch head
    query dim) [, attn (batch head query key)]. Every row of `allow` must have a True (masks.py
    ensures it)."""
    scores = einsum(q, k, "batch head query dim, batch head key dim -> batch head query key")
    scores = scores * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~per_head(allow, q.shape[1]), -torch.inf)
    attn = scores.softmax(dim=-1)
    out = einsum(attn, v, "batch head query key, batch head key dim -> batch head query dim")
    return (out, attn) if return_attn else out


def additive_mask(allow: torch.Tensor, n_head: int) -> torch.Tensor:
    """allow (batch query key) or (batch group query key) bool -> bias (batch 1|head query key),
    float32: 0 where a query may attend, -inf where not (`per_head` maps groups to heads)."""
    allow = per_head(allow, n_head)
    return torch.zeros(allow.shape).masked_fill_(~allow, -torch.inf)


def attend_grouped(q, k, v, bias, scale: float | None = None, dropout_p: float = 0.0):
    """`attend` for grouped-query attention with an additive mask. Shapes: q (batch head query
    dim), k v (batch kv key dim), each kv head shared by head/kv query heads, bias from
    `additive_mask` -> out (batch query head dim), the layout a transformers decoder expects.

    Training on a CPU it runs as explicit matmuls, scores and softmax in float32 (no k/v copy):
    SDPA's fused CPU kernel is slower there, its backward with a mask many times its forward for
    short rows. Without autograd (scoring), or on a GPU, SDPA's fused kernel is the faster one.
    benchmarks/llm_speed.py measures both choices."""
    if q.device.type != "cpu" or not torch.is_grad_enabled():
        gqa = k.shape[1] != q.shape[1]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), scale=scale, dropout_p=dropout_p, enable_gqa=gqa
        )
        return rearrange(out, "batch head query dim -> batch query head dim")
    group = q.shape[1] // k.shape[1]
    q = rearrange(q, "batch (kv group) query dim -> batch kv group query dim", group=group)
    scores = einsum(q, k, "batch kv group query dim, batch kv key dim -> batch kv group query key")
    shared = bias.shape[1] == 1  # one mask for every head
    bias = rearrange(
        bias, "batch (kv g) query key -> batch kv g query key", g=1 if shared else group
    )
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    attn = (scores.float() * scale + bias).softmax(dim=-1).to(v.dtype)
    attn = F.dropout(attn, dropout_p) if dropout_p else attn
    out = einsum(attn, v, "batch kv group query key, batch kv key dim -> batch kv group query dim")
    return rearrange(out, "batch kv group query dim -> batch query (kv group) dim")


def attend_sdpa(q, k, v, allow, dropout_p: float = 0.0):
    """Fused attention on the same boolean mask (True = may attend); same shapes as `attend`."""
    mask = per_head(allow, q.shape[1])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def flex_block_mask(kind: str, item_index: torch.Tensor, n_head: int = 1):
    """A FlexAttention BlockMask for mask `kind` over item_index (batch token).

    Built from the very `allow_rule` the dense masks use, so both paths mean the same thing;
    blocks that are all False (an intra-item mask far off the diagonal) are never computed.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    def rule(kind, b, q_idx, kv_idx):
        return allow_rule(kind, item_index[b, q_idx], item_index[b, kv_idx], q_idx, kv_idx)

    batch, tokens = item_index.shape
    if kind in HEAD_SPLITS:  # each group of heads its kind, as masks.head_groups splits them
        first, second = HEAD_SPLITS[kind]
        group = torch.tensor(head_groups(n_head, 2), device=item_index.device)

        def mask_mod(b, h, q_idx, kv_idx):
            first_rule, second_rule = rule(first, b, q_idx, kv_idx), rule(second, b, q_idx, kv_idx)
            return torch.where(group[h] == 0, first_rule, second_rule)

        return create_block_mask(mask_mod, batch, n_head, tokens, tokens, device=item_index.device)

    def mask_mod(b, h, q_idx, kv_idx):
        return rule(kind, b, q_idx, kv_idx)

    return create_block_mask(mask_mod, batch, None, tokens, tokens, device=item_index.device)


_flex_attention = None


def attend_flex(q, k, v, block_mask):
    """FlexAttention on a BlockMask from `flex_block_mask` (CUDA; compiled once per process)."""
    global _flex_attention
    if _flex_attention is None:
        from torch.nn.attention.flex_attention import flex_attention

        _flex_attention = torch.compile(flex_attention, dynamic=False)
    return _flex_attention(q, k, v, block_mask=block_mask)
