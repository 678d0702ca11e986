"""Training and evaluation of one (plan, seed): data -> serialization -> model -> AdamW -> metrics.

AdamW with warmup + cosine decay, gradient clipping, early stopping on validation NDCG@10 with the best
weights kept, bf16 autocast and torch.compile as GPU options. The CLI writes one results JSON:
  python -m iam_tutorial.train --mode quick --plan iam --item-input text+id --seed 0
"""

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from iam_tutorial.cli import add_config_args, config_from_args, fail, guarded
from iam_tutorial.config import Config
from iam_tutorial.device import peak_memory_mib, resolve_device
from iam_tutorial.metrics import metrics_and_ranks, metrics_from_ranks, protocol, rank_targets
from iam_tutorial.model import ItemGPT
from iam_tutorial.paths import results_dir
from iam_tutorial.pipeline import Prepared, prepare
from iam_tutorial.plans import ALL_PLANS
from iam_tutorial.pretrained import build_model
from iam_tutorial.repro import seed_everything
from iam_tutorial.serialize import PADDING, Batch

HEADLINE = "NDCG@10"


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1, then cosine decay to 0.1 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.AdamW:
    """AdamW; matrices and embeddings decay, biases and LayerNorm gains do not (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def model_scorer(model: ItemGPT, data: Prepared, split: str, device):
    """A `score_rows` for metrics: catalog scores of the given users' `split` inputs."""
    batch = getattr(data, split)

    def score_rows(rows):
        with torch.autocast(device.type, torch.bfloat16, enabled=data.cfg.bf16):
            return model.score(batch[rows].to(device))

    return score_rows


def evaluate_model(model: ItemGPT, data: Prepared, split: str, device, ranks: bool = False):
    """Metrics of `split` under both protocols (or, with `ranks`, every user's target rank)."""
    model.eval()
    targets = getattr(data.split, split)
    result = rank_targets(model_scorer(model, data, split, device), data.seen[split], targets,
                          data.cfg.eval_batch_size)  # fmt: skip
    model.train()
    return result if ranks else {p: metrics_from_ranks(r) for p, r in result.items()}


def headline(metrics: dict, cfg: Config) -> float:
    return metrics["seen_excluded" if cfg.exclude_seen else "seen_included"][HEADLINE]


def train(cfg: Config, data: Prepared | None = None, progress: bool = True) -> tuple[ItemGPT, dict]:
    """Train one model: whole epochs on one shared schedule, evaluated on validation after each,
    stopped after `patience` epochs without a better NDCG@10; the best epoch's weights are kept.
    With `max_train_seconds`, training also stops after the step (or the validation) at which that
    much wall-clock time has passed: that epoch is validated, and the best epoch is kept."""
    seed_everything(cfg.seed)
    data = data or prepare(cfg)
    cfg, device = data.cfg, resolve_device(data.cfg.device)
    model = build_model(cfg, data.serializer).to(device)
    loss_fn = torch.compile(model.loss) if cfg.compile else model.loss
    optimizer = make_optimizer(model, cfg)
    # The learning rate decays over `decay_epochs`, then stays at its floor: the epochs after it
    # show whether validation has plateaued (a schedule that decays to the last epoch peaks there).
    decay = min(cfg.decay_epochs or cfg.max_epochs, cfg.max_epochs)
    total = min(decay * data.steps_per_epoch(), cfg.max_steps or math.inf)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, max(1, int(cfg.warmup_frac * total)))
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    log = {"step": [], "loss": [], "epoch": [], "valid_" + HEADLINE: [], "seconds": []}
    best, best_state, best_epoch, step, tokens, seconds = -1.0, None, 0, 0, 0, 0.0
    quiet = not progress or os.environ.get("TQDM_DISABLE", "0") not in ("", "0")  # nbval sets it
    bar = tqdm(total=total, desc=f"{cfg.plan} {cfg.item_input} seed {cfg.seed}", disable=quiet)
    began, cap = time.perf_counter(), cfg.max_train_seconds or math.inf
    stopped = None  # "time" once the wall-clock cap cut training short
    for epoch in range(1, cfg.max_epochs + 1):
        start = time.perf_counter()
        for batch in data.epoch(generator):
            loss = train_step(model, loss_fn, optimizer, scheduler, batch.to(device), cfg)
            log["step"].append(step)
            log["loss"].append(round(loss, 5))
            tokens, step = tokens + int((batch.item_index != PADDING).sum()), step + 1
            bar.update()
            if cfg.max_steps and step >= cfg.max_steps:
                break
            if time.perf_counter() - began >= cap:
                stopped = "time"
                break
        seconds += time.perf_counter() - start
        valid = headline(evaluate_model(model, data, "valid", device), cfg)
        log["epoch"].append(epoch)
        log["valid_" + HEADLINE].append(round(valid, 5))
        log["seconds"].append(round(seconds, 1))
        bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}", valid_ndcg10=f"{valid:.4f}")
        if valid > best:
            best, best_epoch, best_state = valid, epoch, copy.deepcopy(model.state_dict())
        if (
            stopped
            or (cfg.max_steps and step >= cfg.max_steps)
            or (epoch >= cfg.min_epochs and epoch - best_epoch >= cfg.patience)
        ):
            break
        if epoch < cfg.max_epochs and time.perf_counter() - began >= cap:  # validation counts too
            stopped = "time"
            break
    bar.close()
    model.load_state_dict(best_state)
    return model, results_of(model, data, device, log, best_epoch, seconds, tokens, stopped)


def results_of(model, data: Prepared, device, log, best_epoch, seconds, tokens,
               stopped_by: str | None = None) -> dict:  # fmt: skip
    """The results dict of a trained model: metrics, per-user ranks, convergence and run facts."""
    ranks = {s: evaluate_model(model, data, s, device, ranks=True) for s in ("valid", "test")}
    epochs = log["epoch"][-1]
    return {
        "epochs": epochs,
        "best_epoch": best_epoch,
        # Converged: the best epoch was not the last. Stopped by the plateau rule (patience
        # epochs without a better one), the epoch or step cap, or the wall-clock cap ("time").
        "converged": best_epoch < epochs,
        "stopped_by": stopped_by
        or ("plateau" if epochs - best_epoch >= data.cfg.patience else "cap"),
        "steps": log["step"][-1] + 1,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / max(seconds, 1e-9)),
        "params": sum(p.numel() for p in model.parameters()),
        "history": log,
        **metrics_and_ranks(ranks),
        **run_facts(data.cfg, data, device),
    }


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


def run_facts(cfg: Config, data: Prepared, device) -> dict:
    """Config, protocol, data and machine facts recorded beside every metric."""
    import transformers

    return {
        "plan": cfg.plan,
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "protocol": protocol(seen="seen_excluded" if cfg.exclude_seen else "seen_included")
        + " (headline; both protocols reported)",
        "data": {
            "source": data.split.source,
            "users": len(data.split.users),
            "items": data.split.n_items,
            "eval_input_items_dropped_by_token_budget": data.n_dropped,
            "files": data.split.files,  # each data file read -> sha256
        },
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "peak_memory_mib": peak_memory_mib(device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def run(cfg: Config, progress: bool = True, split=None) -> dict:
    """One (plan, seed) end to end: popularity or a trained model. Returns the results dict."""
    if cfg.plan == "popularity":
        from iam_tutorial.baselines import run_popularity

        return run_popularity(cfg, split)
    if cfg.plan not in ALL_PLANS:
        raise ValueError(f"Unknown plan {cfg.plan!r}: choose one of {', '.join(ALL_PLANS)}.")
    return train(cfg, prepare(cfg, split), progress)[1]


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
    args = parser.parse_args(argv)
    extra = {"item_input": args.item_input} if args.item_input else {}
    cfg = config_from_args(args, plan=args.plan, seed=args.seed, **extra)
    out_dir = args.out or results_dir() / cfg.mode
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file; give a folder for the results.")
    results = run(cfg)
    path = write_results(results, out_dir)
    test = results["test"]["seen_excluded"]
    print(f"{cfg.plan} seed {cfg.seed}: test HR@10 {test['HR@10']:.4f} NDCG@10 {test['NDCG@10']:.4f} "
          f"({protocol('test')}) -> {path}")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
