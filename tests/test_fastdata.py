import dataclasses

import pytest
import torch

from iam_tutorial.config import get_config
from iam_tutorial.lab.fastdata import FastPrepared
from iam_tutorial.pipeline import prepare

TINY = dict(n_users=30, n_layer=2, n_head=2, n_embd=16, max_items=5, max_tokens=80,
            vocab_size=300, batch_size=5, eval_batch_size=16)  # fmt: skip


@pytest.fixture
def env(monkeypatch, synthetic_root):
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))


def same_batches(a, b):
    fields = ("tokens", "item_index", "targets", "readout", "items")
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)


@pytest.mark.parametrize(
    "plan, overrides",
    [("iam", {}), ("token", {"max_tokens": 60, "train_horizon": 7}), ("sasrec", {})],
)
def test_fast_epochs_are_the_pipeline_epochs(env, plan, overrides):
    """Same windows, same batch order, same tensors (a small budget forces fit_budget splits)."""
    data = prepare(get_config("full", plan=plan, **{**TINY, **overrides}))
    fast = FastPrepared.from_prepared(data)
    for seed in (0, 1):
        g_slow, g_fast = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert data.windows(g_slow) == fast.windows(g_fast)
        slow = list(data.epoch(torch.Generator().manual_seed(seed)))
        quick = list(fast.epoch(torch.Generator().manual_seed(seed)))
        assert len(slow) == len(quick) > 1 and all(map(same_batches, slow, quick))
    assert fast.steps_per_epoch() == data.steps_per_epoch()


def test_split_windows_keep_every_transition(env):
    data = prepare(get_config("full", plan="token", **{**TINY, "max_tokens": 60}))
    fast = FastPrepared.from_prepared(data)
    spans = fast.spans(torch.Generator().manual_seed(0))
    assert any(b - a < data.cfg.max_items for a, b in spans)  # some windows were split
    per_user = sum(len(t) - 1 for t in data.training_histories())
    assert sum(b - a for a, b in spans) == per_user == data.transitions()


def test_for_config_shares_data_and_refuses_other_data(env):
    fast = FastPrepared.from_prepared(prepare(get_config("full", plan="token", **TINY)))
    cell = fast.for_config(dataclasses.replace(fast.cfg, plan="iam", seed=3, max_epochs=2))
    assert cell.cfg.plan == "iam" and cell.streams is fast.streams
    with pytest.raises(ValueError, match="max_tokens"):
        fast.for_config(dataclasses.replace(fast.cfg, max_tokens=64))
    with pytest.raises(ValueError, match="not sasrec"):
        fast.for_config(dataclasses.replace(fast.cfg, plan="sasrec"))


def test_padded_tokens_count_every_batch_cell(env):
    fast = FastPrepared.from_prepared(prepare(get_config("full", plan="iam", **TINY)))
    batches = list(fast.epoch(torch.Generator().manual_seed(0)))
    assert fast.padded_tokens(torch.Generator().manual_seed(0)) == sum(
        b.tokens.numel() for b in batches
    )
    moved = fast.streams.to("cpu")
    assert moved.home is fast.streams and moved.starts == fast.streams.token_start.tolist()
