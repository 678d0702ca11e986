"""The lab's per-epoch hooks into train(): a checkpoint resumes bit for bit, a budget snapshot is
the shorter run, and snapshots that would not be one are refused."""

import dataclasses

import pytest

import iam_tutorial.train as train_module
from iam_tutorial.config import ConfigError, get_config
from iam_tutorial.lab.hooks import budget_config, checkpoints, save_checkpoint, snapshots
from iam_tutorial.pipeline import prepare
from iam_tutorial.train import run

TINY = dict(n_users=12, n_layer=2, n_head=2, n_embd=16, max_items=6, max_tokens=96, vocab_size=300,
            batch_size=4, max_epochs=2, eval_batch_size=5)  # fmt: skip


def test_an_interrupted_run_resumes_bit_for_bit(synthetic_env, monkeypatch):
    """Killed after epoch 1, a run restarted on its checkpoint ends exactly as an unbroken one."""
    cfg = get_config("quick", plan="iam", **{**TINY, "max_epochs": 3, "min_epochs": 3})
    data, path = prepare(cfg), synthetic_env / "ckpt" / "iam.pt"
    unbroken = train_module.train(data, progress=False)[1]
    real, calls = train_module.run_epoch, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(data, progress=False, on_epoch=checkpoints(path))
    assert path.exists()
    monkeypatch.setattr(train_module, "run_epoch", real)
    resumed = train_module.train(data, progress=False, on_epoch=checkpoints(path))[1]
    same = lambda r: (r["history"]["loss"], r["history"]["valid_NDCG@10"], r["ranks"])  # noqa: E731
    assert same(resumed) == same(unbroken)
    with pytest.raises(ConfigError, match="another config"):
        save_checkpoint(path, train_module.start_run(data))
        train_module.train(dataclasses.replace(data, cfg=dataclasses.replace(cfg, lr=1e-2)),
                           progress=False, on_epoch=checkpoints(path))  # fmt: skip


def test_a_snapshot_is_the_shorter_run(synthetic_env):
    """At a constant rate the first E epochs of a longer run are the E-epoch run: its snapshot
    record (config, losses, best epoch, per-user ranks) equals training it alone."""
    cfg = get_config("quick", plan="iam", **{**TINY, "max_epochs": 3, "min_epochs": 3,
                                             "decay_epochs": 0})  # fmt: skip
    taken = []
    longer = run(cfg, progress=False, on_epoch=snapshots((1, 2), taken.append))
    alone = run(budget_config(cfg, 2), progress=False)
    same = lambda r: (r["config"], r["history"]["loss"], r["history"]["valid_NDCG@10"],  # noqa: E731
                      r["best_epoch"], r["epochs"], r["ranks"])  # fmt: skip
    assert [t["epochs"] for t in taken] == [1, 2] and same(taken[1]) == same(alone)
    assert longer["history"]["loss"][: len(alone["history"]["loss"])] == alone["history"]["loss"]
    assert longer["epochs"] == 3 and longer["config"]["max_epochs"] == 3


@pytest.mark.parametrize(
    "change, says",
    [({"decay_epochs": 2}, "constant rate"), ({"min_epochs": 1}, "min_epochs >= 2"),
     ({"eval_every": 3}, "multiples of eval_every"), ({"max_steps": 5}, "no step or time cap")],
)  # fmt: skip
def test_snapshots_that_are_not_a_shorter_run_are_refused(synthetic_env, change, says):
    cfg = get_config("quick", plan="token", **{**TINY, "max_epochs": 3, "min_epochs": 3,
                                               "decay_epochs": 0, **change})  # fmt: skip
    with pytest.raises(ConfigError, match=says):
        run(cfg, progress=False, on_epoch=snapshots((2,), print))
    with pytest.raises(ConfigError, match="epochs in 1..2"):
        run(dataclasses.replace(cfg, **{k: getattr(get_config("quick"), k) if k != "decay_epochs"
                                        else 0 for k in change}), progress=False,
            on_epoch=snapshots((3,), print))  # fmt: skip
