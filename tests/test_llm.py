"""The real pretrained LLM (SmolLM2-135M, from the GGUF `make setup` fetches), loaded once per test
session: its tokenizer, every plan's masks, step-0 identity, the premise computation, LoRA."""

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM

from iam_tutorial import premise
from iam_tutorial.analysis import reachability
from iam_tutorial.backbones import backbone_tokenizer, quiet, resolve
from iam_tutorial.config import ConfigError, get_config
from iam_tutorial.data.movielens import load_movies
from iam_tutorial.family import model_config as backbone_config
from iam_tutorial.hf_adapter import PLAN_ATTRIBUTE, make_item_aware
from iam_tutorial.llm import ItemLLM, apply_lora, load_decoder, pretrained_lm
from iam_tutorial.pipeline import build_serializer, prepare
from iam_tutorial.plans import LLM_PLANS, layer_plan
from iam_tutorial.serialize import GLOBAL, PADDING
from iam_tutorial.tokenizer import item_texts

BACKBONE = "smollm2-135m"


@pytest.fixture(scope="session")
def data(synthetic_root):
    """Users of the synthetic MovieLens, serialized with SmolLM2's tokenizer."""
    cfg = get_config("quick", backbone=BACKBONE, plan="token", n_users=12, max_items=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IAM_DATA_DIR", str(synthetic_root))
        return prepare(cfg)


def llm(data, plan, **overrides) -> ItemLLM:
    cfg = dataclasses.replace(data.cfg, plan=plan, **overrides)
    return ItemLLM(cfg, load_decoder(BACKBONE, data.serializer.vocab_size),
                   data.serializer.item_words()).eval()  # fmt: skip


def truncated(model: ItemLLM, n: int) -> ItemLLM:
    """The model's first `n` decoder layers only (then the final norm)."""
    model.decoder.layers = model.decoder.layers[:n]
    model.decoder.config.num_hidden_layers = n
    model.plan = model.plan[:n]
    return model


def test_shape_and_weights_record(data):
    assert (data.cfg.n_layer, data.cfg.n_head, data.cfg.n_embd) == (30, 9, 576)
    record = resolve(BACKBONE).record()
    assert record["quantization"] == "Q4_1" and len(record["sha256"]) == 64
    lm = pretrained_lm(BACKBONE)
    assert sum(p.numel() for p in lm.parameters()) == 134_515_008


def test_tokenizer_round_trips_every_movielens_title(ml1m_root):
    tokenizer = backbone_tokenizer(BACKBONE)
    texts = list(item_texts(load_movies(ml1m_root)).values())
    assert len(texts) == 3883
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert [tokenizer.decode(i) for i in ids] == texts
    assert 10 < sum(map(len, ids)) / len(ids) < 20  # about 15 tokens an item


def test_it_still_knows_paris():
    lm = pretrained_lm(BACKBONE)
    tokenizer = backbone_tokenizer(BACKBONE)
    make_item_aware(lm, "token")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    index = torch.zeros_like(ids)
    with torch.no_grad():
        logits = lm(input_ids=ids, item_index=index).logits[0, -1]
    assert tokenizer.decode(logits.argmax()).strip() == "Paris"


def test_token_plan_is_the_backbone(data):
    weights = resolve(BACKBONE)
    with quiet():
        plain = AutoModelForCausalLM.from_pretrained(weights.folder, attn_implementation="sdpa",
                                                     **weights.kwargs()).eval()  # fmt: skip
    batch = data.valid[[0, 1]]
    model = llm(data, "token")
    ids = batch.tokens.clamp(max=plain.config.vocab_size - 1)  # our BOS/SEP/PAD are new rows
    real = batch.item_index != PADDING
    with torch.no_grad():
        ours = model(ids, batch.item_index)
        theirs = plain.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours[real], theirs[real], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("plan,same_as", [("control", "token"), ("iam", "intra everywhere")])
def test_added_sublayers_start_as_the_identity(data, plan, same_as):
    batch = data.valid[[0, 1, 2]]
    with torch.no_grad():
        added = llm(data, plan)(batch.tokens, batch.item_index)
        if same_as == "token":
            ref = llm(data, "token")(batch.tokens, batch.item_index)
        else:  # iam's first sublayer is the pretrained one under intra; inter adds 0 at step 0
            ref_model = llm(data, "iam-alt")
            for layer in ref_model.decoder.layers:
                layer.self_attn.item_aware_kind = "intra"
            ref = ref_model(batch.tokens, batch.item_index)
    assert torch.equal(added, ref)
    assert sum(p.numel() for p in llm(data, plan).parameters()) > 150e6  # 30 sublayers added


def test_text_plus_id_starts_as_text(data):
    batch = data.valid[[0, 1]]
    with torch.no_grad():
        text = llm(data, "hatllm").score(batch)
        both = llm(data, "hatllm", item_input="text+id").score(batch)
    assert torch.equal(text, both)


def test_item_head_starts_at_mean_token_embedding(data):
    model = llm(data, "token")
    table = model.decoder.get_input_embeddings().weight
    words = data.serializer.item_words()
    torch.testing.assert_close(model.item_emb.weight[5], table[words[5]].mean(0))
    assert not model.item_emb.weight[0].any()


@pytest.mark.parametrize("plan", LLM_PLANS)
@pytest.mark.parametrize("depth", [1, 2])
def test_no_leak_through_any_plan(data, plan, depth):
    """After the first `depth` layers of the real LLM, a token changes no output the plan keeps
    it from reaching (and PAD and later tokens change nothing)."""
    model = truncated(llm(data, plan), depth)
    with torch.no_grad():  # added sublayers start at zero output: give them some, to test them
        for name, p in model.named_parameters():
            if ".added." in name and "o_proj" in name:
                p.normal_(std=0.02, generator=torch.Generator().manual_seed(1))
    index = [GLOBAL] + [0] * 3 + [1] * 2 + [2] * 4 + [PADDING] * 2
    item_index = torch.tensor([index])
    tokens = torch.randint(0, 49152, (1, len(index)), generator=torch.Generator().manual_seed(0))
    reach = reachability(model.plan, item_index)[0]
    with torch.no_grad():
        base = model(tokens, item_index)[0]
        for key in range(len(index)):
            changed = tokens.clone()
            changed[0, key] = (changed[0, key] + 7) % 49152
            moved = (model(changed, item_index)[0] - base).abs().amax(-1)
            assert (moved[~reach[:, key]] == 0).all(), (plan, depth, key)
            assert (moved[reach[:, key]] > 0).all(), (plan, depth, key)  # and all it may reach
    assert not reach.all()


def test_context_longer_than_the_backbone_is_an_error(data):
    with pytest.raises(ConfigError, match="context of 8192 tokens"):
        backbone_config(dataclasses.replace(data.cfg, max_tokens=9000, n_layer=3))
    model = llm(data, "token")
    model.n_positions = 8  # a history past the context is refused, never cut
    with pytest.raises(ValueError, match="longer than the backbone's context"):
        model(data.valid.tokens[:1], data.valid.item_index[:1])


def test_premise_equals_eager_attention_weights(data):
    """The recorder's shares equal those computed from transformers' own eager weights."""
    batch = data.valid[[0, 1, 2, 3]]
    ours = premise.measure(truncated(llm(data, "token"), 3), [batch])
    weights = resolve(BACKBONE)
    with quiet():
        eager = AutoModelForCausalLM.from_pretrained(weights.folder, attn_implementation="eager",
                                                     **weights.kwargs()).eval()  # fmt: skip
    from iam_tutorial.hf_adapter import add_item_tokens

    add_item_tokens(eager, data.serializer.vocab_size)
    mask = (batch.item_index != PADDING).long()
    with torch.no_grad():
        attn = eager.model(input_ids=batch.tokens, attention_mask=mask,
                           output_attentions=True).attentions  # fmt: skip
    groups = premise.groups_of(batch.item_index)
    queries = premise.measured_queries(batch.item_index)
    for layer in range(3):
        got = ours[ours.layer == layer].sort_values("head")
        want = premise.shares(attn[layer].double(), groups)
        for name in ("self", "own_item", "other_items", "first", "own_item_x"):
            expected = want[name].permute(1, 0, 2)[:, queries].mean(-1)
            torch.testing.assert_close(torch.tensor(got[name].values), expected, atol=1e-4, rtol=0)
    shares = ours[["own_item", "other_items", "first"]].sum(axis=1)
    assert ((shares - 1).abs() < 1e-6).all()
    assert (ours.even_own_item == ours.even_own_item.iloc[0]).all()


def test_ruled_out_follows_the_masks():
    per_head = premise.pd.DataFrame(
        [{"layer": 0, "head": h, "own_item": 0.3, "other_items": 0.5} for h in range(9)]
    )
    plans = {"token": [("causal",)], "hatllm": [("intra",)], "inter": [("inter",)],
             "iam-heads": [("intra|inter",)]}  # fmt: skip
    got = premise.ruled_out(per_head, plans).set_index("plan").ruled_out
    assert got["token"] == 0 and got["hatllm"] == 0.5 and got["inter"] == 0.3
    assert got["iam-heads"] == pytest.approx((5 * 0.5 + 4 * 0.3) / 9)


def test_lora_trains_adapters_and_tables_only(data):
    model = apply_lora(llm(data, "iam", item_input="text+id"), rank=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or not n.startswith("decoder.") for n in trainable)
    assert {"item_emb.weight", "id_emb.weight"} <= trainable
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) < 10e6


def test_serializer_uses_the_backbone_tokenizer(data):
    serializer, tokenizer = build_serializer(data.cfg, data.split)
    assert serializer.vocab_size == len(tokenizer) == 49152 + 3
    assert layer_plan("hatllm", 30)[0] == ("intra",)
    assert PLAN_ATTRIBUTE
