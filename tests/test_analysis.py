"""Attention mass: shares sum to 1, masked groups get exactly nothing, a hand-computed example,
which queries count; attention_maps on a model; reachability is tested with the masks."""

import pytest
import torch

from iam_tutorial.analysis import (
    KEY_GROUPS,
    attention_maps,
    attention_mass,
    even_attention,
    even_spread_mass,
    key_groups,
    measured_queries,
)
from iam_tutorial.config import get_config
from iam_tutorial.masks import allow_mask
from iam_tutorial.model import ItemGPT
from iam_tutorial.serialize import GLOBAL, PADDING, Serializer

B, P = GLOBAL, PADDING


def uniform_attention(kind: str, item_index: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """Each query spreads its attention evenly over the keys it may see: (batch head query key)."""
    return even_attention(kind, item_index).expand(-1, heads, -1, -1)


def test_hand_computed_shares_under_uniform_causal_attention():
    # BOS, item 0 (2 tokens), item 1 (2 tokens), PAD. Measured queries: positions 3 and 4.
    # Query 3 sees keys 0..3: BOS 1/4, other 2/4, own 1/4; query 4 sees 0..4: 1/5, 2/5, 2/5.
    index = torch.tensor([[B, 0, 0, 1, 1, P]])
    table = attention_mass([("causal", uniform_attention("causal", index))], index)
    row = table.iloc[0]
    assert row["kind"] == "causal" and row["sublayer"] == 0
    assert row["bos"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert row["other_items"] == pytest.approx((2 / 4 + 2 / 5) / 2)
    assert row["own_item"] == pytest.approx((1 / 4 + 2 / 5) / 2)
    # With the first item's queries (1: BOS 1/2, own 1/2; 2: BOS 1/3, own 2/3) counted too.
    full = attention_mass(
        [("causal", uniform_attention("causal", index))], index, skip_first_item=False
    ).iloc[0]
    assert full["bos"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4)
    assert full["other_items"] == pytest.approx((0 + 0 + 2 / 4 + 2 / 5) / 4)


def test_measured_queries_exclude_bos_pad_and_first_item():
    index = torch.tensor([[B, 0, 0, 1, 2, 2, P]])
    assert measured_queries(index).tolist() == [[False, False, False, True, True, True, False]]
    assert measured_queries(index, skip_first_item=False)[0, 1:3].all()


def test_key_groups_partition_real_keys():
    index = torch.tensor([[B, 0, 0, 1, 2, 2, P], [B, 0, 1, 1, P, P, P]])
    groups = key_groups(index)
    total = sum(g.int() for g in groups.values())
    real_keys = (index != PADDING)[:, None, :].expand_as(total)
    assert torch.equal(total, real_keys.int())  # every non-PAD key in exactly one group


@pytest.fixture(scope="module")
def model_maps():
    """Attention maps of fresh iam and hatllm models on a small batch with padding."""
    items = [[], [3, 4, 2], [5, 2], [6, 7, 8, 2], [9, 2], [10, 11, 12, 13, 2]]
    serializer = Serializer(items, bos_id=0, pad_id=1, max_tokens=64)
    serializer.sep_id = 2
    batch = serializer.collate([[1, 2, 3, 4], [5, 1], [3], [2, 5, 4, 1, 3]])
    maps = {}
    for plan in ("iam", "hatllm", "token"):
        cfg = get_config("quick", plan=plan, n_layer=2, n_embd=32, n_head=2, max_tokens=64)
        torch.manual_seed(0)
        model = ItemGPT(cfg, serializer.vocab_size, serializer.item_words()[:6])
        maps[plan] = (model, attention_maps(model, batch))
    return batch, maps


def test_shares_sum_to_one_and_masked_groups_are_exactly_zero(model_maps):
    batch, maps = model_maps
    for plan, (model, attn_maps) in maps.items():
        for skip in (True, False):
            table = attention_mass(attn_maps, batch.item_index, model.plan, skip_first_item=skip)
            assert len(table) == sum(len(block) for block in model.plan)
            assert table[list(KEY_GROUPS)].sum(axis=1).tolist() == pytest.approx([1.0] * len(table))
            intra, inter = table[table.kind == "intra"], table[table.kind == "inter"]
            assert (intra.other_items == 0).all(), plan
            assert (inter.own_item == 0).all(), plan


def test_inter_share_on_bos_is_one_for_first_item_queries(model_maps):
    """Under inter, the first item's tokens can see only BOS: counting them inflates `bos`."""
    batch, maps = model_maps
    model, attn_maps = maps["iam"]
    inter = [(kind, attn) for kind, attn in attn_maps if kind == "inter"]
    first_only = batch.item_index.where(batch.item_index <= 0, PADDING)  # items >= 1 hidden
    table = attention_mass(inter, first_only, skip_first_item=False)
    assert table.bos.tolist() == pytest.approx([1.0] * len(inter))
    assert (attention_mass(inter, batch.item_index).bos < 1).all()


def test_block_column_follows_the_plan(model_maps):
    batch, maps = model_maps
    model, attn_maps = maps["iam"]
    table = attention_mass(attn_maps, batch.item_index, model.plan)
    assert table.block.tolist() == [0, 0, 1, 1]
    assert table.kind.tolist() == ["intra", "inter", "intra", "inter"]
    assert "block" not in attention_mass(attn_maps, batch.item_index).columns
    with pytest.raises(ValueError, match="do not follow"):
        attention_mass(attn_maps, batch.item_index, [("causal",)] * 4)


def test_bos_and_pad_queries_do_not_count(model_maps):
    batch, maps = model_maps
    _, attn_maps = maps["token"]
    kind, attn = attn_maps[0]
    scrambled = attn.clone()
    ignored = (batch.item_index < 1)[:, None, :, None].expand_as(attn)  # BOS, PAD, first item
    scrambled[ignored] = torch.rand(int(ignored.sum()), generator=torch.Generator().manual_seed(0))
    before = attention_mass([(kind, attn)], batch.item_index)
    after = attention_mass([(kind, scrambled)], batch.item_index)
    assert before.equals(after)


def test_no_measurable_query_raises():
    index = torch.tensor([[B, 0, 0, P]])
    with pytest.raises(ValueError, match="No query"):
        attention_mass([("causal", uniform_attention("causal", index))], index)


def test_attention_maps_restore_mode_and_follow_the_plan(model_maps):
    batch, maps = model_maps
    model, attn_maps = maps["iam"]
    model.train()
    again = attention_maps(model, batch)
    assert model.training
    assert [kind for kind, _ in again] == ["intra", "inter", "intra", "inter"]
    n = batch.tokens.shape[1]
    for (_, attn), (_, first) in zip(again, attn_maps, strict=True):
        assert attn.shape == (len(batch), 2, n, n) and not attn.requires_grad
        assert torch.allclose(attn, first)
        allow = allow_mask("causal", batch.item_index)[:, None].expand_as(attn)
        assert (attn[~allow] == 0).all()


def test_even_attention_golden_and_even_spread_mass():
    index = torch.tensor([[B, 0, 0, 1, 1, P]])
    even = even_attention("inter", index)
    assert even.shape == (1, 1, 6, 6)
    # Query 3 (item 1) sees BOS, item 0's two tokens; query 5 (PAD) sees only itself.
    assert even[0, 0, 3].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0, 0, 0])
    assert even[0, 0, 5].tolist() == [0, 0, 0, 0, 0, 1]
    assert torch.allclose(even.sum(-1), torch.ones(1, 1, 6, dtype=even.dtype))
    assert even_attention("intra|inter", index).shape == (1, 2, 6, 6)  # one map per head group
    table = even_spread_mass(["causal", "inter"], index)
    assert table.kind.tolist() == ["causal", "inter"]
    assert table.own_item[0] == pytest.approx((1 / 4 + 2 / 5) / 2)  # the hand example above
    assert table.own_item[1] == 0 and table.bos[1] == pytest.approx(1 / 3)


def test_attention_maps_of_a_text_plus_id_model():
    """A text+id model adds each token's item vector: attention_maps passes `items`."""
    items = [[], [3, 4, 2], [5, 2], [6, 7, 8, 2]]
    serializer = Serializer(items, bos_id=0, pad_id=1, max_tokens=32)
    serializer.sep_id = 2
    batch = serializer.collate([[1, 2, 3], [3, 1]])
    cfg = get_config("quick", plan="iam", n_layer=1, n_embd=16, n_head=2, max_tokens=32,
                     item_input="text+id")  # fmt: skip
    model = ItemGPT(cfg, serializer.vocab_size, serializer.item_words())
    maps = attention_maps(model, batch)
    assert [kind for kind, _ in maps] == ["intra", "inter"]
