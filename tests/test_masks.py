"""Masks: hand-written golden grids, equivalences, edge cases, and leakage properties of one
attention sublayer and of whole models under every layer plan."""

import pytest
import torch

from iam_tutorial.analysis import reachability
from iam_tutorial.attention import attend
from iam_tutorial.config import get_config
from iam_tutorial.masks import (
    MASK_KINDS,
    allow_causal,
    allow_inter_item,
    allow_intra_item,
    allow_mask,
    head_groups,
)
from iam_tutorial.model import ItemGPT
from iam_tutorial.plans import layer_plan
from iam_tutorial.serialize import GLOBAL, PADDING, Serializer

B, P = GLOBAL, PADDING
# BOS, an item of 2 tokens, one of 3, one of 3, then one PAD: 10 positions.
ITEM_INDEX = [B, 0, 0, 1, 1, 1, 2, 2, 2, P]

# Rows are queries, columns keys; 1 = may attend. A PAD query sees only itself.
GOLDEN = {
    "causal": [
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ],
    # Own item (up to the query) and BOS.
    "intra": [
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 1, 1, 0, 0, 0, 0, 0],
        [1, 0, 0, 1, 1, 1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 1, 1, 0, 0],
        [1, 0, 0, 0, 0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ],
    # Earlier items and BOS, never the query's own item (not even itself: the residual keeps it).
    "inter": [
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ],
}

PLANS = ("token", "control", "hatllm", "iam", "iam-alt")


def random_item_index(generator, batch=4, max_items=4, max_len=3, max_pad=3) -> torch.Tensor:
    """Right-padded random histories (batch token); the last row is all padding when batch > 1."""
    draw = lambda low, high: int(torch.randint(low, high + 1, (1,), generator=generator))
    rows = []
    for _ in range(batch):
        lengths = [draw(1, max_len) for _ in range(draw(1, max_items))]
        rows.append([GLOBAL] + [i for i, n in enumerate(lengths) for _ in range(n)])
    width = max(len(r) for r in rows) + draw(0, max_pad)
    index = torch.tensor([r + [PADDING] * (width - len(r)) for r in rows])
    if batch > 1:
        index[-1] = PADDING
    return index


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_golden_grids(kind):
    allow = allow_mask(kind, torch.tensor([ITEM_INDEX]))
    assert allow.dtype == torch.bool and allow.shape == (1, 10, 10)
    assert allow[0].int().tolist() == GOLDEN[kind]


def test_named_builders_match_allow_mask():
    index = torch.tensor([ITEM_INDEX])
    for kind, build in (
        ("causal", allow_causal),
        ("intra", allow_intra_item),
        ("inter", allow_inter_item),
    ):
        assert torch.equal(build(index), allow_mask(kind, index))


def test_one_item_reduces_to_causal_and_bos_only():
    index = torch.tensor([[GLOBAL, 0, 0, 0, 0, PADDING]])
    causal = allow_mask("causal", index)
    assert torch.equal(allow_mask("intra", index), causal)
    bos_only = torch.zeros_like(causal)
    bos_only[0, :5, 0] = True
    bos_only[0, 5, 5] = True  # the PAD query sees itself
    assert torch.equal(allow_mask("inter", index), bos_only)


def test_intra_or_inter_is_causal_for_real_queries():
    index = random_item_index(torch.Generator().manual_seed(0), batch=16)
    real = index != PADDING
    union = allow_mask("intra", index) | allow_mask("inter", index)
    assert torch.equal(union[real], allow_mask("causal", index)[real])
    overlap = allow_mask("intra", index) & allow_mask("inter", index)
    assert not overlap[..., 1:][real].any()  # they share only the BOS column


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_no_empty_row_and_no_pad_key_for_real_queries(kind):
    index = random_item_index(torch.Generator().manual_seed(1), batch=32)
    allow = allow_mask(kind, index)
    assert allow.any(-1).all()
    real = index != PADDING
    pad_keys = (index == PADDING)[:, None, :].expand_as(allow)
    assert not (allow & pad_keys)[real].any()
    assert torch.equal(
        allow[~real], torch.eye(index.shape[1], dtype=torch.bool).expand_as(allow)[~real]
    )


def test_batch_rows_are_independent():
    index = random_item_index(torch.Generator().manual_seed(2), batch=6)
    for kind in MASK_KINDS:
        batched = allow_mask(kind, index)
        for b in range(len(index)):
            assert torch.equal(batched[b], allow_mask(kind, index[b : b + 1])[0])


def test_head_groups_split_evenly_first_groups_larger():
    assert head_groups(9, 2) == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert head_groups(3, 2) == [0, 0, 1]
    assert head_groups(4, 2) == [0, 0, 1, 1]
    assert head_groups(1, 1) == [0]
    with pytest.raises(ValueError, match="cannot be split"):
        head_groups(1, 2)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="Unknown mask kind"):
        allow_mask("diagonal", torch.tensor([ITEM_INDEX]))


# --- leakage: one attention sublayer -------------------------------------------------------------


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_attend_sees_exactly_what_the_mask_allows(kind):
    """Perturbing k and v at key p changes query q's output iff allow[q, p]."""
    gen = torch.Generator().manual_seed(3)
    index = random_item_index(gen, batch=3)
    allow = allow_mask(kind, index)
    batch, n = index.shape
    q, k, v = torch.randn(3, batch, 2, n, 4, generator=gen, dtype=torch.float64)
    out = attend(q, k, v, allow)
    for p in range(n):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, p] += torch.randn(batch, 2, 4, generator=gen, dtype=torch.float64)
        v2[:, :, p] += 1.0
        changed = (attend(q, k2, v2, allow) != out).any(-1).any(1)  # (batch query)
        assert torch.equal(changed, allow[:, :, p]), f"{kind}: key {p}"


# --- leakage: whole models ---------------------------------------------------------------------


def tiny_serializer() -> Serializer:
    """Six catalog items of 1 to 4 tokens, each ending with SEP (id 2); 0 is BOS and 1 is PAD."""
    items = [[], [3, 4, 2], [5, 2], [6, 7, 8, 2], [2], [9, 10, 11, 12], [13, 14, 2]]
    serializer = Serializer(items, bos_id=0, pad_id=1, max_tokens=64)
    serializer.sep_id = 2
    return serializer


@pytest.fixture(scope="module")
def tiny_batch():
    serializer = tiny_serializer()
    batch = serializer.collate([[1, 2, 3], [5, 6, 3, 2, 1], [4, 2]])
    return serializer, batch


def residual_states(model, tokens, item_index) -> list[torch.Tensor]:
    """The input of every attention sublayer (the normed residual stream), then the output;
    each (batch token embd)."""
    states = []
    hooks = [
        attn.register_forward_hook(lambda module, args, out: states.append(args[0]))
        for block in model.transformer.h
        for _, _, attn in block.sublayers()
    ]
    try:
        output = model(tokens, item_index)
    finally:
        for hook in hooks:
            hook.remove()
    return states + [output]


@pytest.mark.parametrize("plan", PLANS)
def test_model_changes_only_what_the_plan_can_reach(plan, tiny_batch):
    """Changing the token at p changes exactly the positions that p reaches through the masks
    stacked so far (composed with the residual stream), checked before every attention sublayer
    and at the output; positions before p never change. Checking only the output would miss
    leaks: one intra and one inter sublayer already reach everything causal."""
    serializer, batch = tiny_batch
    cfg = get_config("quick", plan=plan, n_layer=2, n_embd=32, n_head=2, max_tokens=64)
    torch.manual_seed(0)
    model = ItemGPT(cfg, serializer.vocab_size, serializer.item_words()[:7]).double().eval()
    kinds = [(kind,) for block in layer_plan(plan, 2) for kind in block]
    reach = [reachability(kinds[:j], batch.item_index) for j in range(len(kinds) + 1)]
    with torch.no_grad():
        before = residual_states(model, batch.tokens, batch.item_index)
        for p in range(batch.tokens.shape[1]):
            tokens = batch.tokens.clone()
            tokens[:, p] = (tokens[:, p] + 7) % serializer.vocab_size
            after = residual_states(model, tokens, batch.item_index)
            for j, (old, new) in enumerate(zip(before, after, strict=True)):
                delta = (new - old).abs().amax(-1)  # (batch query)
                where = f"{plan}: token {p}, state {j}"
                assert (delta[~reach[j][:, :, p]] == 0).all(), f"leak: {where}"
                assert (delta[reach[j][:, :, p]] > 1e-9).all(), f"no effect: {where}"
                assert (delta[:, :p] == 0).all(), where


def test_reachability_of_plans():
    """Intra then inter (either order) reaches everything causal; inter alone never reaches
    earlier tokens of the query's own item; intra alone never leaves it."""
    index = torch.tensor([ITEM_INDEX])
    causal = allow_mask("causal", index)
    assert torch.equal(reachability([("intra", "inter")], index), causal)
    assert torch.equal(reachability([("inter",), ("intra",)], index), causal)
    assert torch.equal(reachability([("intra",)] * 3, index), allow_mask("intra", index))
    inter = reachability([("inter",)] * 3, index)
    assert not inter[0, 4, 3] and not inter[0, 8, 6]
    assert inter[0, 8, 1] and inter[0, 5, 0]
