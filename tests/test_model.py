import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from iam_tutorial.config import get_config
from iam_tutorial.model import ItemGPT, load_gpt2_weights
from iam_tutorial.plans import MODEL_PLANS as PLANS
from iam_tutorial.plans import layer_plan
from iam_tutorial.serialize import Serializer

N_ITEMS = 50


def tiny(plan="iam", **overrides):
    cfg = get_config("quick", plan=plan, n_layer=2, n_head=2, n_embd=32, max_tokens=48, **overrides)
    torch.manual_seed(0)
    serializer = Serializer.for_item_ids(N_ITEMS, 48)
    return ItemGPT(cfg, serializer.vocab_size, serializer.item_words()), serializer


def histories(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, N_ITEMS + 1, (int(torch.randint(3, 12, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]  # fmt: skip


def test_layer_plans():
    assert layer_plan("token", 3) == [("causal",)] * 3
    assert layer_plan("iam", 2) == [("intra", "inter")] * 2
    assert layer_plan("iam-alt", 4) == [("intra",), ("inter",)] * 2
    assert layer_plan("iam-alt", 3) == [("intra",), ("inter",), ("intra",)]
    assert layer_plan("iam-heads", 2) == [("intra|inter",)] * 2
    assert layer_plan("control", 2) == [("causal", "causal")] * 2
    assert layer_plan("hatllm", 4) == [("intra",), ("causal",), ("causal",), ("inter",)]
    assert layer_plan("hatllm", 5, (2, 1, 2)) == [("intra",)] * 2 + [("causal",)] + [("inter",)] * 2


@pytest.mark.parametrize(
    "plan, n_layer, split, message",
    [("nope", 2, None, "Unknown layer plan"), ("hatllm", 4, (1, 1, 1), "sum to"),
     ("hatllm", 1, None, ">= 2")],
)  # fmt: skip
def test_bad_plans_raise(plan, n_layer, split, message):
    with pytest.raises(ValueError, match=message):
        layer_plan(plan, n_layer, split)


def test_matches_transformers_gpt2():
    """Same weights, plain causal attention: our logits equal GPT2LMHeadModel's."""
    model, serializer = tiny("token")
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=serializer.vocab_size, n_positions=48, n_embd=32,
                                    n_layer=2, n_head=2, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                                    bos_token_id=0, eos_token_id=0))  # fmt: skip
    loaded = load_gpt2_weights(model, hf.state_dict())
    assert len(loaded) == 2 + 2 * 12 + 2  # wte, wpe, 12 tensors per block, ln_f
    batch = serializer.collate(histories(3))
    with torch.no_grad():
        ours = model.eval().lm_logits(model(batch.tokens, batch.item_index))
        theirs = hf.eval()(batch.tokens, attention_mask=(batch.item_index != -2).long()).logits
    real = batch.item_index != -2
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_parameter_counts_are_matched():
    counts = {plan: sum(p.numel() for p in tiny(plan)[0].parameters()) for plan in PLANS}
    assert counts["iam"] == counts["control"]
    assert counts["token"] == counts["hatllm"] == counts["iam-alt"] == counts["sasrec"]
    per_sublayer = 2 * 32 + 32 * 96 + 96 + 32 * 32 + 32  # ln + c_attn + c_proj
    assert counts["iam"] - counts["token"] == 2 * per_sublayer


@pytest.mark.parametrize("plan", ["token", "iam", "hatllm"])
def test_loss_at_init_is_log_catalog(plan):
    model, serializer = tiny(plan)
    h = histories(8)
    loss = model.loss(serializer.collate([x[:-1] for x in h], [x[1:] for x in h]))
    assert abs(loss.item() - math.log(N_ITEMS + 1)) < 0.1


def test_overfits_one_batch():
    model, serializer = tiny("iam")
    h = histories(4)
    batch = serializer.collate([x[:-1] for x in h], [x[1:] for x in h])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("plan", PLANS)
def test_batch_order_and_padding_invariance(plan):
    model, serializer = tiny(plan)
    model.eval()
    h = histories(5)
    with torch.no_grad():
        scores = model.score(serializer.collate(h))
        reversed_scores = model.score(serializer.collate(h[::-1]))
        alone = torch.cat([model.score(serializer.collate([x])) for x in h])  # no padding at all
    torch.testing.assert_close(scores, reversed_scores.flip(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(scores, alone, atol=1e-5, rtol=0)


def test_history_longer_than_model_is_an_error():
    model, _ = tiny("token")
    tokens = torch.zeros(1, 49, dtype=torch.long)
    with pytest.raises(ValueError, match="longer than the model's 48 positions"):
        model(tokens, tokens)


def test_reference_and_sdpa_models_agree():
    model, serializer = tiny("iam")
    ref, _ = tiny("iam", attn_impl="einops")
    ref.load_state_dict(model.state_dict())
    batch = serializer.collate(histories(4))
    torch.testing.assert_close(
        model.eval().score(batch), ref.eval().score(batch), atol=1e-5, rtol=0
    )


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="attn_impl"):
        tiny("token", attn_impl="magic")
    with pytest.raises(ValueError, match="item_head"):
        tiny("token", item_head="magic")
