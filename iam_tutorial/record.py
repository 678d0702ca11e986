"""One results record, for a trained model and for the popularity baseline alike.

Every key is always there (a baseline has 0 epochs and no training history), so a reader never
guesses a default: metrics and per-user ranks under both protocols, how training went, and the
facts a number needs to be traced (config, protocol, data files' sha256, weights, machine, commit).
"""

import dataclasses
import platform

import torch

from iam_tutorial.backbones import resolve
from iam_tutorial.config import SCRATCH, Config
from iam_tutorial.device import cpu_name, peak_memory_mib
from iam_tutorial.metrics import metrics_and_ranks, protocol
from iam_tutorial.repro import git_commit

UNTRAINED = {
    "epochs": 0,
    "best_epoch": 0,
    "converged": None,
    "stopped_by": None,
    "steps": 0,
    "train_seconds": 0.0,
    "wall_seconds": 0.0,
    "tokens_per_second": 0,
    "params": 0,
    "trainable_params": 0,
    "history": {},
}


def training_facts(
    model, log: dict, best_epoch: int, epochs: int, patience: int, stopped_by: str | None
) -> dict:
    """How a training run went. Converged: the best epoch was not the last. Stopped by the
    plateau rule (patience epochs without a better one), the epoch or step cap, or the clock."""
    seconds = log["train_seconds"]
    return {
        "epochs": epochs,
        "best_epoch": best_epoch,
        "converged": best_epoch < epochs,
        "stopped_by": stopped_by or ("plateau" if epochs - best_epoch >= patience else "cap"),
        "steps": len(log["step"]),
        "train_seconds": round(seconds, 2),  # optimizer steps only
        "wall_seconds": log["seconds"][-1],  # training and validation
        "tokens_per_second": round(log["tokens"] / max(seconds, 1e-9)),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "history": {k: v for k, v in log.items() if k not in ("tokens", "train_seconds")},
    }


def results_record(
    cfg: Config,
    split,
    ranks: dict,
    training: dict | None = None,
    device=None,
    data_facts: dict | None = None,
    note: str = "",
) -> dict:
    """The record: `ranks` ({split: {protocol: ranks}}), `training` (training_facts, or None
    for a baseline), and every fact of the run."""
    device = device or torch.device("cpu")
    seen = "seen_excluded" if cfg.exclude_seen else "seen_included"
    return {
        "plan": cfg.plan,
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "protocol": protocol(seen=seen) + (note or " (headline; both protocols reported)"),
        "data": {
            "source": split.source,
            "users": len(split.users),
            "items": split.n_items,
            "files": split.files,
            **(data_facts or {}),
        },
        **(training or UNTRAINED),
        **metrics_and_ranks(ranks),
        **run_facts(cfg, device, (data_facts or {}).get("bf16_reason", "")),
    }


def run_facts(cfg: Config, device=None, bf16_reason: str = "") -> dict:
    """The machine, precision, weights, commit and versions a number was made with."""
    import transformers

    device = device or torch.device("cpu")
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "precision": {"bf16": bool(cfg.bf16), "why": bf16_reason},
        "weights": resolve(cfg.backbone).record() if cfg.backbone != SCRATCH else None,
        "peak_memory_mib": peak_memory_mib(device),
        "commit": git_commit(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
