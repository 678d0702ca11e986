import pytest
import torch
from einops import rearrange, repeat

from iam_tutorial.attention import additive_mask, attend, attend_grouped, attend_sdpa, per_head
from iam_tutorial.masks import HEAD_SPLITS, MASK_KINDS, allow_mask, allow_rule
from iam_tutorial.serialize import GLOBAL, PADDING

ITEM_INDEX = torch.tensor(
    [[GLOBAL, 0, 0, 1, 1, 1, 2, 2, PADDING, PADDING], [GLOBAL, 0, 1, 1, 2, 3, 3, 3, 3, 4]]
)


def qkv(seed=0, heads=2, dim=8):
    g = torch.Generator().manual_seed(seed)
    shape = (ITEM_INDEX.shape[0], heads, ITEM_INDEX.shape[1], dim)
    return [
        torch.randn(shape, generator=g, dtype=torch.float32, requires_grad=True) for _ in range(3)
    ]


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_reference_and_sdpa_agree_with_gradients(kind):
    allow = allow_mask(kind, ITEM_INDEX)
    q, k, v = qkv()
    ref = attend(q, k, v, allow)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    fast = attend_sdpa(q2, k2, v2, allow)
    fast_grads = torch.autograd.grad(fast.square().sum(), (q2, k2, v2))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.isnan(ref).any()


@pytest.mark.parametrize("kind", [*MASK_KINDS, *HEAD_SPLITS])
@pytest.mark.parametrize(("heads", "kv_heads"), [(2, 2), (9, 3), (3, 1)])
def test_grouped_attention_matches_reference_with_gradients(kind, heads, kv_heads):
    """The decoder's fast path (explicit matmuls, additive mask, each kv head shared by a group
    of query heads) equals the reference on the same mask, odd head counts and head splits too."""
    allow = allow_mask(kind, ITEM_INDEX)
    q = qkv(seed=1, heads=heads)[0]
    k, v = qkv(seed=2, heads=kv_heads)[1:]
    expand = [repeat(t, "b kv key d -> b (kv g) key d", g=heads // kv_heads) for t in (k, v)]
    ref = rearrange(attend(q, *expand, allow), "b head query d -> b query head d")
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    fast = attend_grouped(q2, k2, v2, additive_mask(allow, heads))
    fast_grads = torch.autograd.grad(fast.square().sum(), (q2, k2, v2))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():  # scoring takes SDPA's fused kernel: the same values
        scored = attend_grouped(q2, k2, v2, additive_mask(allow, heads))
    torch.testing.assert_close(scored, ref.detach(), atol=1e-5, rtol=1e-5)


def test_additive_mask_is_the_boolean_mask():
    allow = allow_mask("intra|inter", ITEM_INDEX)
    bias = additive_mask(allow, 9)
    assert bias.shape == (2, 9, 10, 10) and bias.dtype == torch.float32
    assert set(bias.unique().tolist()) == {0.0, float("-inf")}
    assert torch.equal(bias == 0, per_head(allow, 9))


def test_attention_weights_respect_mask():
    allow = allow_mask("intra", ITEM_INDEX)
    _, attn = attend(*qkv(), allow, return_attn=True)
    assert attn.shape == (2, 2, 10, 10)
    assert attn.masked_select(~allow[:, None].expand_as(attn)).abs().max() == 0
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 10))


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_flex_mask_mod_matches_dense_mask(kind):
    """The BlockMask is built from the same allow_rule; evaluated densely it equals allow_mask."""
    flex = pytest.importorskip("torch.nn.attention.flex_attention")

    def mask_mod(b, h, q_idx, kv_idx):
        return allow_rule(kind, ITEM_INDEX[b, q_idx], ITEM_INDEX[b, kv_idx], q_idx, kv_idx)

    dense = flex.create_mask(mask_mod, 2, 1, 10, 10, device="cpu")
    assert torch.equal(dense[:, 0], allow_mask(kind, ITEM_INDEX))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention path runs on CUDA only")
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_flex_attention_matches_reference_on_cuda(kind):
    from iam_tutorial.attention import attend_flex, flex_block_mask

    item_index = ITEM_INDEX.cuda()
    q, k, v = (t.detach().cuda().requires_grad_() for t in qkv())
    out = attend_flex(q, k, v, flex_block_mask(kind, item_index))
    ref = attend(q, k, v, allow_mask(kind, item_index))
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_flex_block_mask_forward_matches_reference_on_cpu(kind):
    """Uncompiled FlexAttention runs forward on CPU: the BlockMask path gives the reference's output."""
    from torch.nn.attention.flex_attention import flex_attention

    from iam_tutorial.attention import flex_block_mask

    item_index = torch.cat([ITEM_INDEX] * 13, dim=1)[:, :128]  # BlockMask blocks are 128 wide
    q, k, v = (
        torch.randn(2, 2, 128, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    out = flex_attention(q, k, v, block_mask=flex_block_mask(kind, item_index))
    torch.testing.assert_close(
        out, attend(q, k, v, allow_mask(kind, item_index)), atol=1e-5, rtol=1e-5
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("n_head", [3, 9])
def test_flex_head_split_matches_reference_with_an_odd_head_count(n_head):
    """intra|inter with an odd head count: Flex, SDPA and the reference split the heads alike
    (masks.head_groups: 3 heads are 2 intra + 1 inter, 9 are 5 + 4)."""
    from torch.nn.attention.flex_attention import flex_attention

    from iam_tutorial.attention import flex_block_mask

    item_index = torch.cat([ITEM_INDEX] * 13, dim=1)[:, :128]  # BlockMask blocks are 128 wide
    q, k, v = (
        torch.randn(2, n_head, 128, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    allow = allow_mask("intra|inter", item_index)
    ref = attend(q, k, v, allow)
    out = flex_attention(q, k, v, block_mask=flex_block_mask("intra|inter", item_index, n_head))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attend_sdpa(q, k, v, allow), ref, atol=1e-5, rtol=1e-5)
