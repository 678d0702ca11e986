"""What a comparison hooks into `train()` after every epoch: budget snapshots and checkpoints.

A budget snapshot: at a constant rate the first E epochs of a longer run are the E-epoch run step
for step, so the record taken at epoch E is what training E epochs alone gives (tested equal). A
checkpoint: the run's whole state after every epoch, so a run cut off by a restart resumes from
its last epoch bit for bit. `train(data, on_epoch=every_epoch(snapshots(...), checkpoints(...)))`.
"""

import copy
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from iam_tutorial.config import RETIRED, Config, ConfigError
from iam_tutorial.train import RunState, results_of


def budget_config(cfg: Config, epochs: int) -> Config:
    """The config of a run of `epochs` epochs that is otherwise `cfg`: a budget of a comparison."""
    return dataclasses.replace(cfg, max_epochs=epochs, min_epochs=min(cfg.min_epochs, epochs))


def check_snapshots(cfg: Config, snapshots) -> list[int]:
    """The snapshot epochs, sorted, if each is exactly a shorter run of this config: a constant
    rate (decay_epochs=0), no early stop before the last, validated there, no step or time cap."""
    snapshots = sorted(set(snapshots))
    if not snapshots:
        return snapshots
    why = [
        (cfg.decay_epochs != 0, "a constant rate (decay_epochs=0)"),
        (snapshots[-1] >= cfg.max_epochs or snapshots[0] < 1, f"epochs in 1..{cfg.max_epochs - 1}"),
        (cfg.min_epochs < snapshots[-1], f"min_epochs >= {snapshots[-1]} (no early stop before)"),
        (any(e % cfg.eval_every for e in snapshots), f"multiples of eval_every={cfg.eval_every}"),
        (cfg.max_steps is not None or cfg.max_train_seconds is not None, "no step or time cap"),
    ]
    needs = [need for failed, need in why if failed]
    if needs:
        raise ConfigError(f"Snapshots {snapshots} need " + ", ".join(needs) + ".")
    return snapshots


def snapshot(state: RunState) -> dict:
    """The results of a run of `state.epoch` epochs, taken mid-run: its record (config with
    max_epochs=epoch, best epoch so far, test on its weights) is what training it alone gives."""
    shorter = budget_config(state.data.cfg, state.epoch)
    weights = copy.deepcopy(state.model)
    weights.load_state_dict(state.best.state)
    data = dataclasses.replace(state.data, cfg=shorter)
    return results_of(
        weights,
        data,
        state.device,
        copy.deepcopy(state.log),
        state.best.epoch,
        state.epoch,
        None,
        state.best.ranks,
    )


def snapshots(epochs, on_snapshot: Callable[[dict], None]) -> Callable[[RunState], None]:
    """A hook that hands `on_snapshot` the results of a run of E epochs at each E of `epochs`
    (checked against the run's config before its first epoch: check_snapshots)."""
    wanted = []

    def hook(state: RunState) -> None:
        if state.epoch == 0:
            wanted[:] = check_snapshots(state.data.cfg, epochs)
        elif state.epoch in wanted:
            on_snapshot(snapshot(state))

    return hook


def checkpoint_key(cfg: Config) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def save_checkpoint(path, state: RunState) -> None:
    """Everything a resumed run needs to continue bit for bit, written atomically."""
    s = state
    saved = {
        "config": checkpoint_key(s.data.cfg),
        "epoch": s.epoch,
        "model": s.model.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "generator": s.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "log": s.log,
        "best": (s.best.score, s.best.epoch, s.best.state, s.best.ranks),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(saved, tmp)
    os.replace(tmp, path)


def resume(path, state: RunState) -> None:
    """Load a checkpoint written by `save_checkpoint` for this very config into `state` (a config
    saved before lab/experiments.py still matches: its retired grid fields are left out)."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    config = {k: v for k, v in json.loads(saved["config"]).items() if k not in RETIRED}
    if config != json.loads(checkpoint_key(state.data.cfg)):
        raise ConfigError(
            f"Checkpoint {path} was written for another config; delete it to start afresh."
        )
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    state.log.update(saved["log"])
    best = state.best
    best.score, best.epoch, best.state, best.ranks = (*saved["best"], None)[:4]
    state.epoch = saved["epoch"]


def checkpoints(path) -> Callable[[RunState], None]:
    """A hook that resumes from `path` if it exists (before the first epoch) and saves the run
    there after every epoch; the caller deletes it once the results are stored."""

    def hook(state: RunState) -> None:
        if state.epoch == 0 and Path(path).exists():
            resume(path, state)
        elif state.epoch > 0:
            save_checkpoint(path, state)

    return hook


def every_epoch(*hooks: Callable[[RunState], None]) -> Callable[[RunState], None]:
    """One hook that calls `hooks` in order (a snapshot before the checkpoint: a restart redoes
    it)."""

    def hook(state: RunState) -> None:
        for h in hooks:
            h(state)

    return hook
