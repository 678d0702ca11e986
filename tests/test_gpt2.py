"""Pretrained backbones and the Hugging Face adapter, on tiny random checkpoints saved by path.

Nothing is downloaded: every checkpoint is built with save_pretrained into a temporary folder.
"""

import pytest
import torch
from checkpoints import make_tiny_checkpoint
from transformers import GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from iam_tutorial.analysis import reachability
from iam_tutorial.backbones import BackboneError, backbone_tokenizer, quiet
from iam_tutorial.config import ConfigError, get_config
from iam_tutorial.data.movielens import load_movies
from iam_tutorial.family import model_config as backbone_config
from iam_tutorial.gpt2 import load_backbone
from iam_tutorial.hf_adapter import add_item_tokens, hidden_states, load_item_aware, plan_kinds
from iam_tutorial.model import ItemGPT
from iam_tutorial.serialize import GLOBAL, PADDING, Serializer
from iam_tutorial.tokenizer import item_texts
from iam_tutorial.train import run

N_LAYER, N_POSITIONS = 4, 128
REMASKING_PLANS = ("token", "hatllm", "iam-alt", "iam-heads")  # plans that add no weights


@pytest.fixture(scope="session")
def texts(synthetic_root):
    movies = item_texts(load_movies(synthetic_root))
    return [movies[m] for m in sorted(movies)]


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, texts):
    """A random 4-layer GPT-2 with a BPE of the item texts, laid out as the `gpt2` checkpoint."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("gpt2"), texts, n_layer=N_LAYER,
                                n_positions=N_POSITIONS)  # fmt: skip


@pytest.fixture(scope="session")
def tokenizer(gpt2_dir):
    return backbone_tokenizer(str(gpt2_dir))


@pytest.fixture(scope="session")
def serializer(tokenizer, texts):
    return Serializer.from_tokenizer(tokenizer, [""] + texts, N_POSITIONS)


def on_backbone(gpt2_dir, **overrides):
    return get_config("quick", backbone=str(gpt2_dir), **{"max_tokens": N_POSITIONS, **overrides})


def backbone_model(gpt2_dir, serializer, plan, **overrides) -> ItemGPT:
    cfg = on_backbone(gpt2_dir, plan=plan, **overrides)
    torch.manual_seed(1)  # the weights a plan adds must not depend on the seed: vary it
    return load_backbone(cfg, serializer.vocab_size, serializer.item_words()).eval()


def batch_of(serializer, n=4):
    g = torch.Generator().manual_seed(0)
    n_items = len(serializer.item_tokens) - 1
    histories = [
        torch.randint(1, n_items + 1, (int(k),), generator=g).tolist() for k in (2, 5, 3, 4)
    ]
    return serializer.collate(histories[:n])


def hf_gpt2(gpt2_dir, tokenizer, plan=None):
    """transformers' GPT-2 from the folder with the same grown embedding rows as ItemGPT
    (item-aware through the adapter under `plan`, plain SDPA when None)."""
    with quiet():
        hf = (load_item_aware(str(gpt2_dir), plan) if plan else
              GPT2LMHeadModel.from_pretrained(str(gpt2_dir), attn_implementation="sdpa"))  # fmt: skip
    return add_item_tokens(hf, len(tokenizer)).eval()


def test_backbone_sets_the_model_shape(gpt2_dir):
    cfg = backbone_config(on_backbone(gpt2_dir, plan="iam"))
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (N_LAYER, 4, 32)
    assert backbone_config(get_config("quick")) == get_config("quick")  # scratch: unchanged


def test_tokens_added_and_embedding_grown_from_the_mean(gpt2_dir, tokenizer, serializer):
    hf = GPT2LMHeadModel.from_pretrained(str(gpt2_dir))
    old = hf.transformer.wte.weight.detach()
    assert len(tokenizer) == len(old) + 3
    assert [tokenizer.bos_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id] == [
        len(old), len(old) + 1, len(old) + 2]  # fmt: skip
    model = backbone_model(gpt2_dir, serializer, "token", max_tokens=96)
    wte = model.transformer.wte.weight.detach()
    torch.testing.assert_close(wte[: len(old)], old)
    torch.testing.assert_close(wte[len(old) :], old.mean(0).expand(3, -1))
    # The position table is the backbone's whole one, not max_tokens rows.
    assert model.transformer.wpe.weight.shape[0] == model.n_positions == N_POSITIONS
    torch.testing.assert_close(model.transformer.wpe.weight.detach(), hf.transformer.wpe.weight)


def test_item_head_starts_at_mean_token_embedding(gpt2_dir, serializer):
    model = backbone_model(gpt2_dir, serializer, "token")
    wte = model.transformer.wte.weight.detach()
    for item in (1, 7):
        words = serializer.item_words()[item]
        torch.testing.assert_close(model.item_emb.weight[item].detach(), wte[words].mean(0))
    assert not model.item_emb.weight[0].any()


def test_token_plan_is_the_backbone_at_step_0(gpt2_dir, tokenizer, serializer):
    """Same hidden states as transformers' GPT2 (SDPA, padding mask) on every real token."""
    model, hf, batch = (
        backbone_model(gpt2_dir, serializer, "token"),
        hf_gpt2(gpt2_dir, tokenizer),
        batch_of(serializer),
    )
    real = batch.item_index != PADDING
    with torch.no_grad():
        ours = model(batch.tokens, batch.item_index)
        theirs = hf.transformer(batch.tokens, attention_mask=real.long()).last_hidden_state
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_added_sublayers_start_as_the_identity(gpt2_dir, serializer):
    """control (causal + an added causal sublayer) computes token's function at step 0, and iam
    (intra + an added inter sublayer) computes intra-everywhere's; yet the added output
    projections get gradients at once."""
    batch = batch_of(serializer)
    hidden = {}
    for name, plan, split in [("token", "token", None), ("control", "control", None),
                              ("iam", "iam", None), ("intra", "hatllm", (N_LAYER, 0, 0))]:  # fmt: skip
        model = backbone_model(gpt2_dir, serializer, plan, hatllm_split=split)
        with torch.no_grad():
            hidden[name] = model(batch.tokens, batch.item_index)
    torch.testing.assert_close(hidden["control"], hidden["token"], atol=1e-6, rtol=0)
    torch.testing.assert_close(hidden["iam"], hidden["intra"], atol=1e-6, rtol=0)
    assert not torch.allclose(hidden["iam"], hidden["token"], atol=1e-4)  # the masks do matter
    model = backbone_model(gpt2_dir, serializer, "iam").train()
    h = [list(r) for r in ([1, 2, 3], [4, 5, 6, 7])]
    model.loss(serializer.collate([x[:-1] for x in h], [x[1:] for x in h])).backward()
    for block in model.transformer.h:
        assert (
            not block.attn_2.c_proj.weight.any() and block.attn_2.c_proj.weight.grad.abs().sum() > 0
        )


@pytest.mark.parametrize("plan", REMASKING_PLANS)
def test_adapter_equals_itemgpt(gpt2_dir, tokenizer, serializer, plan):
    """transformers' GPT-2 made item-aware through the attention interface and our ItemGPT, same
    weights, same plan: equal hidden states at every position (PAD included)."""
    model, hf, batch = (
        backbone_model(gpt2_dir, serializer, plan),
        hf_gpt2(gpt2_dir, tokenizer, plan),
        batch_of(serializer),
    )
    with torch.no_grad():
        ours = model(batch.tokens, batch.item_index)
        theirs = hidden_states(hf, batch.tokens, batch.item_index)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_adapter_refuses_what_it_cannot_do(gpt2_dir):
    with pytest.raises(ValueError, match="adds attention sublayers"):
        plan_kinds("iam", N_LAYER)
    with quiet():
        hf = load_item_aware(str(gpt2_dir), "hatllm")
    with pytest.raises(ValueError, match="item_index"):
        hf(torch.zeros(1, 3, dtype=torch.long))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A tiny random Llama (grouped-query attention, rotary positions)."""
    folder = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYER,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    with quiet():
        LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("plan", REMASKING_PLANS)
def test_llama_leakage(llama_dir, plan):
    """Changing a token changes exactly the outputs that the plan lets it reach: nothing a
    layer forbids, and every output it allows."""
    with quiet():
        hf = load_item_aware(str(llama_dir), plan).eval()
    index = [GLOBAL] + [0] * 3 + [1] * 2 + [2] * 4 + [3] * 3 + [PADDING] * 2
    item_index = torch.tensor([index])
    tokens = torch.randint(0, 64, (1, len(index)), generator=torch.Generator().manual_seed(0))
    reach = reachability([(k,) for k in hf.config.item_aware_kinds], item_index)[0]
    assert not reach.all() or plan == "token"
    with torch.no_grad():
        base = hidden_states(hf, tokens, item_index)[0]
        for key in range(len(index)):
            changed = tokens.clone()
            changed[0, key] = (changed[0, key] + 1) % 64
            moved = (hidden_states(hf, changed, item_index)[0] - base).abs().amax(-1)  # (token)
            assert (moved[~reach[:, key]] < 1e-6).all(), (plan, key)
            assert moved[reach[:, key]].min() > 1e-6, (plan, key)


def test_token_plan_on_llama_is_plain_causal(llama_dir):
    with quiet():
        ours = load_item_aware(str(llama_dir), "token").eval()
        plain = LlamaForCausalLM.from_pretrained(str(llama_dir), attn_implementation="sdpa").eval()
    tokens = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    item_index = torch.tensor([[GLOBAL, 0, 0, 1, 1, 1, 2, 2, 2]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(hidden_states(ours, tokens, item_index),
                                   plain.model(tokens).last_hidden_state, atol=1e-5, rtol=0)  # fmt: skip


def test_offline_gpt2_is_one_clear_line():
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("gpt2", "config.json"), str):
        pytest.skip("gpt2 is in the local cache here")
    with pytest.raises(BackboneError, match="huggingface-cli download gpt2") as error:
        backbone_config(get_config("quick", backbone="gpt2", item_input="text"))
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)
    with pytest.raises(BackboneError, match="local folder"):
        backbone_tokenizer("gpt2")


def test_backbone_limits_are_errors(gpt2_dir, llama_dir, serializer):
    with pytest.raises(ConfigError, match="exceeds backbone .* context of 128 tokens"):
        backbone_config(get_config("quick", backbone=str(gpt2_dir), max_tokens=224))
    with pytest.raises(ConfigError, match="text\\+id"):
        backbone_config(on_backbone(gpt2_dir, item_input="text+id"))
    with pytest.raises(ConfigError, match="reads item IDs"):
        backbone_config(on_backbone(gpt2_dir, plan="sasrec"))
    with pytest.raises(ConfigError, match="exceeds backbone .* context of 64 tokens"):
        backbone_config(get_config("quick", backbone=str(llama_dir), max_tokens=65))
    assert backbone_config(get_config("quick", backbone=str(llama_dir), max_tokens=64)).n_layer == 4
    model = backbone_model(gpt2_dir, serializer, "token", max_tokens=96)
    tokens = torch.zeros(1, N_POSITIONS + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="longer than the model's 128 positions"):
        model(tokens, tokens)


def test_fine_tunes_on_cpu(monkeypatch, synthetic_root, tmp_path, gpt2_dir):
    """train.run on a backbone: its tokenizer, its shape in the results, loss falls."""
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    monkeypatch.setenv("IAM_RESULTS_DIR", str(tmp_path))
    cfg = get_config("quick", backbone=str(gpt2_dir), plan="iam", n_users=12, max_items=6,
                     max_tokens=96, batch_size=4, max_epochs=4, patience=4, lr=3e-3,
                     eval_batch_size=6)  # fmt: skip
    results = run(cfg, progress=False)
    assert results["config"]["n_layer"] == N_LAYER and results["config"]["n_embd"] == 32
    loss = results["history"]["loss"]
    assert sum(loss[-3:]) < sum(loss[:3])
    assert 0 <= results["test"]["seen_excluded"]["NDCG@10"] <= 1
