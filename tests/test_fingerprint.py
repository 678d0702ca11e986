"""A stored cell's fingerprint follows the behaviour of the code and the data, not the code's text:
it holds when code moves, is rewritten equivalently, or runs on another thread count, and breaks
when the numerics, the config or the data change."""

import dataclasses

import pytest
import torch
from transformers import AttentionInterface

from iam_tutorial import hf_adapter, model
from iam_tutorial.attention import attend
from iam_tutorial.config import get_config
from iam_tutorial.lab import fingerprint as fp
from iam_tutorial.lab import store

TINY = dict(n_users=12, n_layer=3, n_head=2, n_embd=16, max_items=6, max_tokens=96, vocab_size=300,
            batch_size=4, max_epochs=2, eval_batch_size=5)  # fmt: skip


@pytest.fixture
def synthetic_env(monkeypatch, synthetic_root):
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    fp._probe.cache_clear()
    yield
    fp._probe.cache_clear()


def fresh(cfg):
    fp._probe.cache_clear()
    return fp.fingerprint(cfg)


@pytest.mark.parametrize("plan", ["iam", "hatllm", "sasrec", "popularity"])
def test_the_same_code_on_another_thread_count_matches(synthetic_env, plan):
    cfg = get_config("quick", plan=plan, **TINY)
    threads = torch.get_num_threads()
    first = fresh(cfg)
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        again = fresh(cfg)
    finally:
        torch.set_num_threads(threads)
    assert fp.matches(first, again) and first["digest"] == again["digest"]
    assert len(first["behaviour"]) == (0 if plan == "popularity" else 5 + fp.USERS * fp.ITEMS)


def test_moved_or_rewritten_code_keeps_the_fingerprint(synthetic_env, monkeypatch):
    cfg = get_config("quick", plan="iam", **TINY)
    before = fresh(cfg)
    # The fused kernel swapped for the einops reference (same math, other code), docstrings gone.
    monkeypatch.setattr(
        model, "attend_sdpa", lambda q, k, v, allow, dropout_p=0.0: attend(q, k, v, allow)
    )
    monkeypatch.setattr(model.ItemGPT, "__doc__", None)
    assert fp.matches(before, fresh(cfg))


def test_changed_numerics_config_or_data_break_the_fingerprint(synthetic_env, monkeypatch):
    cfg = get_config("quick", plan="iam", **TINY)
    before = fresh(cfg)
    assert not fp.matches(before, fresh(dataclasses.replace(cfg, lr=cfg.lr * 2)))  # config
    assert not fp.matches(before, fresh(dataclasses.replace(cfg, n_users=11)))  # data
    with monkeypatch.context() as m:  # attention scaled a little differently
        m.setattr(
            model,
            "attend_sdpa",
            lambda q, k, v, allow, dropout_p=0.0: attend(q * 1.05, k, v, allow),
        )
        assert not fp.matches(before, fresh(cfg))
    with monkeypatch.context() as m:  # another schedule
        m.setattr("iam_tutorial.train.lr_factor", lambda step, total, warmup: 0.5)
        assert not fp.matches(before, fresh(cfg))
    assert fp.matches(before, fresh(cfg))


def test_matches_is_a_tolerance_on_behaviour_and_exact_on_the_digest():
    current = {"digest": "a", "behaviour": [8.0, 1.0, 0.0]}
    assert fp.matches({"digest": "a", "behaviour": [8.004, 1.0005, 1e-6]}, current)
    assert not fp.matches({"digest": "a", "behaviour": [8.1, 1.0, 0.0]}, current)
    assert not fp.matches({"digest": "b", "behaviour": [8.0, 1.0, 0.0]}, current)
    assert not fp.matches("0123abcd", current)  # a cell stored under the old code-text hash
    assert not fp.matches({"digest": "a", "behaviour": [8.0]}, current)


def test_a_stored_cell_is_reused_only_while_it_matches(synthetic_env, tmp_path, monkeypatch):
    cfg = get_config("quick", plan="sasrec", **TINY)
    store.write_cell(cfg, {"plan": "sasrec", "seed": 0, "marker": 1}, tmp_path)
    assert store.stored_cell(cfg, tmp_path)["marker"] == 1
    fp._probe.cache_clear()
    monkeypatch.setattr("iam_tutorial.train.lr_factor", lambda step, total, warmup: 0.5)
    assert store.stored_cell(cfg, tmp_path) is None


def test_a_decoder_cell_follows_its_attention(synthetic_env, monkeypatch):
    """On the LLM (a narrow copy of SmolLM2's architecture, every layer), rewriting the attention
    equivalently keeps the fingerprint and changing its numbers breaks it."""
    cfg = get_config("quick", backbone="smollm2-135m", plan="iam-heads", n_users=12, max_items=6)
    before = fresh(cfg)
    original = hf_adapter.item_aware_attention

    def same(*args, **kwargs):  # the same attention, reached through another function
        return original(*args, **kwargs)

    def other(module, query, *args, **kwargs):
        return original(module, query * 1.05, *args, **kwargs)

    try:
        AttentionInterface.register(hf_adapter.ATTENTION_NAME, same)
        assert fp.matches(before, fresh(cfg))
        AttentionInterface.register(hf_adapter.ATTENTION_NAME, other)
        assert not fp.matches(before, fresh(cfg))
    finally:
        AttentionInterface.register(hf_adapter.ATTENTION_NAME, original)
