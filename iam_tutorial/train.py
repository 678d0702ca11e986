"""Training and evaluation of one (plan, seed): data -> serialization -> model -> AdamW -> metrics.

AdamW with warmup + cosine decay, gradient clipping, early stopping on validation NDCG@10 with the
best weights kept, bf16 autocast and torch.compile as GPU options. The CLI writes one results JSON:
  python -m iam_tutorial.train --mode quick --plan iam --item-input text+id --seed 0
"""

import argparse
import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from iam_tutorial.cli import add_config_args, config_from_args, fail, guarded
from iam_tutorial.config import Config, ConfigError
from iam_tutorial.device import heap_reused, resolve_device
from iam_tutorial.family import build_model
from iam_tutorial.metrics import metrics_from_ranks, protocol, rank_targets
from iam_tutorial.model import ItemGPT
from iam_tutorial.paths import results_dir
from iam_tutorial.pipeline import Prepared, prepare
from iam_tutorial.plans import ALL_PLANS
from iam_tutorial.record import results_record, training_facts
from iam_tutorial.repro import seed_everything
from iam_tutorial.serialize import PADDING, Batch

HEADLINE = "NDCG@10"


def lr_factor(step: int, total: int | None, warmup: int) -> float:
    """Linear warmup to 1, then cosine decay to 0.1 at `total` (None: constant 1)."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW; matrices and embeddings decay, biases and LayerNorm gains do not (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel (one pass over each tensor for all of Adam's updates) is the same update;
    # on CPU it is 4x faster than the per-tensor loop: a quarter of a SmolLM2 step otherwise.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=fused)


def make_schedule(optimizer, data: Prepared):
    """Warmup, then cosine decay to 0.1x over `decay_epochs` (or all epochs), then flat: the
    epochs after the decay show whether validation has plateaued. decay_epochs=0: a constant rate
    after a warmup of `warmup_frac` of one epoch, which no later epoch changes (budgets)."""
    cfg = data.cfg
    if cfg.decay_epochs == 0:
        warmup = max(1, int(cfg.warmup_frac * data.steps_per_epoch()))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, None, warmup))
    decay = min(cfg.decay_epochs or cfg.max_epochs, cfg.max_epochs)
    total = min(decay * data.steps_per_epoch(), cfg.max_steps or math.inf)
    warmup = max(1, int(cfg.warmup_frac * total))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))


def model_scorer(model: ItemGPT, data: Prepared, split: str, device):
    """A `score_rows` for metrics: catalog scores of the given users' `split` inputs."""
    batch = getattr(data, split)

    def score_rows(rows):  # no autograd graph: scoring never backpropagates
        bf16 = torch.autocast(device.type, torch.bfloat16, enabled=data.cfg.bf16)
        with torch.inference_mode(), bf16:
            return model.score(batch[rows].to(device))

    return score_rows


def evaluate_model(model: ItemGPT, data: Prepared, split: str, device, ranks: bool = False):
    """Metrics of `split` under both protocols (or, with `ranks`, every user's target rank)."""
    model.eval()
    targets = getattr(data.split, split)[: len(data.seen[split])]  # valid: the trained users
    lengths = (getattr(data, split).item_index != PADDING).sum(1)
    with heap_reused():  # each batch's tensors reuse the last one's memory (device.py)
        result = rank_targets(
            model_scorer(model, data, split, device),
            data.seen[split],
            targets,
            data.cfg.eval_batch_size,
            torch.argsort(lengths, stable=True),
        )
    model.train()
    return result if ranks else {p: metrics_from_ranks(r) for p, r in result.items()}


def headline(metrics: dict, cfg: Config) -> float:
    return metrics["seen_excluded" if cfg.exclude_seen else "seen_included"][HEADLINE]


@dataclass
class BestEpoch:
    """The best validation epoch so far (score, epoch, a copy of its weights, its per-user
    validation ranks, so the results need no second validation pass) and the stop rule: no stop
    before `min_epochs`, then stop once `patience` epochs passed without a better one."""

    patience: int
    min_epochs: int
    score: float = -1.0
    epoch: int = 0
    state: dict | None = None
    ranks: dict | None = None

    def update(self, epoch: int, score: float, model: torch.nn.Module, ranks=None) -> None:
        if score > self.score:
            self.score, self.epoch, self.ranks = score, epoch, ranks
            self.state = copy.deepcopy(model.state_dict())

    def patience_out(self, epoch: int) -> bool:
        return epoch >= self.min_epochs and epoch - self.epoch >= self.patience


class NonFiniteLoss(ConfigError):
    """Training diverged (a NaN or infinite loss); the message says where and what to try."""


@dataclass
class RunState:
    """Everything a training run holds between epochs: what `on_epoch` hooks see, what a
    checkpoint saves (lab/hooks.py), `epoch` the epochs done."""

    data: Prepared
    device: torch.device
    model: torch.nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    log: dict
    best: BestEpoch
    epoch: int = 0


def start_run(data: Prepared) -> RunState:
    """A fresh run of `data.cfg`: seeded, its model built on the device, AdamW and its schedule."""
    cfg, device = data.cfg, resolve_device(data.cfg.device)
    seed_everything(cfg.seed)
    model = build_model(cfg, data.serializer).to(device)
    loss_fn = torch.compile(model.loss) if cfg.compile else model.loss
    optimizer = make_optimizer(model, cfg)
    scheduler = make_schedule(optimizer, data)
    generator = torch.Generator().manual_seed(cfg.seed)
    log = {
        "step": [],
        "loss": [],
        "epoch": [],
        "valid_" + HEADLINE: [],
        "seconds": [],
        "tokens": 0,
        "train_seconds": 0.0,
    }
    best = BestEpoch(cfg.patience, cfg.min_epochs)
    return RunState(data, device, model, loss_fn, optimizer, scheduler, generator, log, best)


def train_step(model, loss_fn, optimizer, scheduler, batch: Batch, cfg: Config) -> float:
    """One AdamW step on `batch` (bf16 autocast if configured, gradient clipping); the loss."""
    with torch.autocast(batch.tokens.device.type, torch.bfloat16, enabled=cfg.bf16):
        loss = loss_fn(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.item()


def run_epoch(
    model, loss_fn, optimizer, scheduler, batches, cfg: Config, log: dict, on_step, deadline: float
) -> str | None:
    """Train on one epoch's batches; returns why it stopped early ("steps" or "time") or None."""
    device = next(model.parameters()).device
    for batch in batches:
        loss = train_step(model, loss_fn, optimizer, scheduler, batch.to(device), cfg)
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"Training loss became {loss} at step {len(log['step'])}: lower lr (now "
                f"{cfg.lr}), keep grad_clip on, or turn bf16 off."
            )
        log["step"].append(len(log["step"]))
        log["loss"].append(round(loss, 5))
        log["tokens"] += int((batch.item_index != PADDING).sum())
        on_step(loss)
        if cfg.max_steps and len(log["step"]) >= cfg.max_steps:
            return "steps"
        if time.perf_counter() >= deadline:
            return "time"
    return None


def validate(state: RunState, epoch: int, bar) -> None:
    """Validation NDCG@10 of the model after `epoch`, logged; the best epoch kept (BestEpoch)."""
    bar.set_postfix_str(f"validating epoch {epoch}")
    ranks = evaluate_model(state.model, state.data, "valid", state.device, ranks=True)
    valid = headline({p: metrics_from_ranks(r) for p, r in ranks.items()}, state.data.cfg)
    state.best.update(epoch, valid, state.model, ranks)
    state.log["epoch"].append(epoch)
    state.log["valid_" + HEADLINE].append(round(valid, 5))
    bar.set_postfix_str(f"epoch {epoch} valid {HEADLINE} {valid:.4f}")


def fit_epoch(state: RunState, epoch: int, bar, deadline: float) -> tuple[str | None, bool]:
    """Epoch `epoch` of a run: train on its batches (run_epoch), validate if due, log its seconds.
    Returns why training stopped early ("steps", "time" or None) and whether it validated."""
    s, cfg, log = state, state.data.cfg, state.log
    start = time.perf_counter()
    batches, on_step = s.data.epoch(s.generator), lambda loss: step_bar(bar, loss)
    stopped = run_epoch(
        s.model, s.loss_fn, s.optimizer, s.scheduler, batches, cfg, log, on_step, deadline
    )
    log["train_seconds"] += time.perf_counter() - start
    evaluated = bool(epoch % cfg.eval_every == 0 or stopped or epoch == cfg.max_epochs)
    if evaluated:
        validate(state, epoch, bar)
    log["seconds"].append(round(sum(log["seconds"][-1:]) + time.perf_counter() - start, 1))
    state.epoch = epoch
    return stopped, evaluated


def train(data: Prepared, progress: bool = True, on_epoch: Callable | None = None):
    """Train one model on `data` (its `cfg` is the run's config): whole epochs, validation every
    `eval_every` epochs, the best epoch's weights kept, stopped by patience, `max_epochs`,
    `max_steps` or `max_train_seconds`. `on_epoch(state)` (minGPT's callback) is called before
    the first epoch (state.epoch 0: a hook may restore a saved run there) and after every epoch;
    the lab's hooks take budget snapshots and checkpoints (lab/hooks.py).
    Returns (model, results)."""
    cfg, hook = data.cfg, on_epoch or (lambda state: None)
    state = start_run(data)
    hook(state)
    bar = progress_bar(cfg, data, progress, done=len(state.log["step"]))
    spent = sum(state.log["seconds"][-1:])  # a resumed run's seconds count towards the cap
    deadline = time.perf_counter() + (cfg.max_train_seconds or math.inf) - spent
    stopped = None
    for epoch in range(state.epoch + 1, cfg.max_epochs + 1):
        stopped, evaluated = fit_epoch(state, epoch, bar, deadline)
        hook(state)  # a snapshot or checkpoint sees the epoch as it ended
        if stopped or (evaluated and state.best.patience_out(epoch)):
            break
        if evaluated and time.perf_counter() >= deadline:  # validation counts towards the cap
            stopped = "time"
            break
    bar.total = bar.n  # the run ended where it ended: the bar closes full
    bar.close()
    best = state.best
    state.model.load_state_dict(best.state)
    why = "time" if stopped == "time" else None
    results = results_of(
        state.model, data, state.device, state.log, best.epoch, state.epoch, why, best.ranks
    )
    return state.model, results


def step_bar(bar, loss: float) -> None:
    bar.update()
    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)


def progress_bar(cfg: Config, data: Prepared, progress: bool, done: int = 0):
    """One bar over the most steps the run can take (every epoch), its description says which
    epoch is validating; closed full when early stopping ends the run sooner."""
    quiet = not progress or os.environ.get("TQDM_DISABLE", "0") not in ("", "0")  # nbval sets it
    total = min(cfg.max_epochs * data.steps_per_epoch(), cfg.max_steps or math.inf)
    name = f"{cfg.plan} {cfg.item_input} seed {cfg.seed}"
    return tqdm(total=total, initial=done, desc=name, disable=quiet, unit="step")


def results_of(
    model,
    data: Prepared,
    device,
    log,
    best_epoch,
    epochs,
    stopped_by: str | None = None,
    valid_ranks: dict | None = None,
) -> dict:
    """The results record of a trained model (record.py): metrics, per-user ranks, training.
    `valid_ranks`: this model's validation ranks if already computed (the best epoch's)."""
    ranks = {
        "valid": valid_ranks or evaluate_model(model, data, "valid", device, ranks=True),
        "test": evaluate_model(model, data, "test", device, ranks=True),
    }
    training = training_facts(model, log, best_epoch, epochs, data.cfg.patience, stopped_by)
    facts = {
        "eval_input_items_dropped_by_token_budget": data.n_dropped,
        "bf16_reason": data.bf16_reason,
    }
    return results_record(data.cfg, data.split, ranks, training, device, facts)


def run(cfg: Config, progress: bool = True, split=None, on_epoch: Callable | None = None) -> dict:
    """One (plan, seed) end to end: popularity or a trained model (`train`, `on_epoch` its hook).
    Returns the results dict."""
    if cfg.plan == "popularity":
        from iam_tutorial.baselines import run_popularity

        return run_popularity(cfg, split)
    if cfg.plan not in ALL_PLANS:
        raise ValueError(f"Unknown plan {cfg.plan!r}: choose one of {', '.join(ALL_PLANS)}.")
    return train(prepare(cfg, split), progress, on_epoch)[1]


def write_results(results: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{results['plan']}_seed{results['seed']}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True))
    return path


@guarded
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.train", description=__doc__.splitlines()[0]
    )
    add_config_args(parser)
    parser.add_argument("--plan", default="iam", choices=ALL_PLANS, help="layer plan or baseline")
    parser.add_argument(
        "--item-input", default=None, choices=("text", "text+id"), help="item input of text plans"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds python, numpy and torch")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/<mode>)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            fail(f"--threads {args.threads}: give 1 or more.")
        torch.set_num_threads(args.threads)
    extra = {"item_input": args.item_input} if args.item_input else {}
    cfg = config_from_args(args, plan=args.plan, seed=args.seed, **extra)
    out_dir = args.out or results_dir() / cfg.mode
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file; give a folder for the results.")
    results = run(cfg)
    path = write_results(results, out_dir)
    test = results["test"]["seen_excluded"]
    print(
        f"{cfg.plan} seed {cfg.seed}: test HR@10 {test['HR@10']:.4f} NDCG@10 {test['NDCG@10']:.4f} "
        f"({protocol('test')}) -> {path}"
    )
    return results


if __name__ == "__main__":
    main()
