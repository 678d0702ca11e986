"""Training and evaluation of one (plan, seed): data -> serialization -> model -> AdamW -> metrics.

AdamW with warmup + cosine decay, gradient clipping, early stopping on validation NDCG@10 with the best
weights kept, bf16 autocast and torch.compile as GPU options. The CLI writes one results JSON:
  python -m iam_tutorial.train --mode quick --plan iam --seed 0
"""

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from iam_tutorial.baselines import popularity_counts, popularity_scorer, sasrec_config
from iam_tutorial.config import Config, get_config
from iam_tutorial.data.movielens import LeaveOneOut, leave_one_out, load_movies, load_sequences
from iam_tutorial.metrics import PROTOCOL, evaluate, rank_targets
from iam_tutorial.model import PLANS, ItemGPT
from iam_tutorial.paths import results_dir
from iam_tutorial.repro import seed_everything
from iam_tutorial.serialize import PADDING, Batch, Serializer
from iam_tutorial.tokenizer import item_texts, train_tokenizer

ALL_PLANS = ("popularity", *PLANS)
HEADLINE = "NDCG@10"


@dataclass
class Prepared:
    """Everything a run needs: the split, the serializer, and the evaluation inputs collated once."""

    cfg: Config  # the model's config (SASRec's differs from the text plans')
    split: LeaveOneOut
    serializer: Serializer
    valid: Batch  # the last max_items items before the validation item
    test: Batch  # the last max_items items before the test item (validation item included)
    seen: dict[str, list[list[int]]]  # full input history per split, excluded from the ranking
    n_dropped: int  # evaluation-input items left out by the token budget

    def train_batch(self, generator: torch.Generator) -> Batch:
        """One training row per user: a random window of max_items + 1 consecutive training
        items (a fresh one every epoch), every item predicting the next."""
        k, windows = self.cfg.max_items, []
        for history in self.split.train:
            if len(history) < 2:  # nothing to predict from
                continue
            start = int(torch.randint(max(1, len(history) - k), (1,), generator=generator))
            windows.append(history[start : start + k + 1])
        return self.serializer.collate([w[:-1] for w in windows], [w[1:] for w in windows])


def prepare(cfg: Config, split: LeaveOneOut | None = None, movies=None) -> Prepared:
    """Load and split the data (unless given), build the serializer, collate the eval inputs."""
    split = split or leave_one_out(load_sequences(cfg.n_users))
    if cfg.plan == "sasrec":
        cfg = sasrec_config(cfg)
        serializer = Serializer.for_item_ids(split.n_items, cfg.max_tokens)
    else:
        texts = item_texts(load_movies() if movies is None else movies)
        tokenizer = train_tokenizer([texts[m] for m in sorted(texts)], cfg.vocab_size)
        catalog = [""] + [texts[int(m)] for m in split.movie_ids[1:]]
        serializer = Serializer.from_tokenizer(tokenizer, catalog, cfg.max_tokens)
    inputs = {s: split.histories(s)[0] for s in ("valid", "test")}
    windows = {s: [h[-cfg.max_items :] for h in hs] for s, hs in inputs.items()}
    batches = {s: serializer.collate(ws) for s, ws in windows.items()}
    kept = sum(int(b.item_index.max(1).values.sum()) + len(b) for b in batches.values())
    dropped = sum(len(w) for ws in windows.values() for w in ws) - kept
    return Prepared(cfg, split, serializer, batches["valid"], batches["test"], inputs, dropped)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    measure = rank_targets if ranks else evaluate
    targets = getattr(data.split, split)
    result = measure(model_scorer(model, data, split, device), data.seen[split], targets,
                     data.cfg.eval_batch_size)  # fmt: skip
    model.train()
    return result


def headline(metrics: dict, cfg: Config) -> float:
    return metrics["seen_excluded" if cfg.exclude_seen else "seen_included"][HEADLINE]


def train(cfg: Config, data: Prepared | None = None, progress: bool = True) -> tuple[ItemGPT, dict]:
    """Train one model with early stopping; returns (best model, results dict)."""
    seed_everything(cfg.seed)
    data = data or prepare(cfg)
    cfg = data.cfg
    device = resolve_device(cfg.device)
    model = ItemGPT(cfg, data.serializer, data.split.n_items).to(device)
    loss_fn = torch.compile(model.loss) if cfg.compile else model.loss
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(sum(len(h) >= 2 for h in data.split.train) / cfg.batch_size)
    total = min(cfg.max_epochs * steps_per_epoch, cfg.max_steps or math.inf)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, max(1, int(cfg.warmup_frac * total)))
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    history = {"step": [], "loss": [], "epoch": [], "valid_" + HEADLINE: []}
    best, best_state, best_epoch, step, tokens, train_seconds = -1.0, None, 0, 0, 0, 0.0
    quiet = not progress or os.environ.get("TQDM_DISABLE", "0") not in ("", "0")  # nbval sets it
    epochs = tqdm(range(cfg.max_epochs), desc=f"{cfg.plan} seed {cfg.seed}", disable=quiet)
    for epoch in epochs:
        start = time.perf_counter()
        epoch_batch = data.train_batch(generator)
        for rows in torch.randperm(len(epoch_batch), generator=generator).split(cfg.batch_size):
            batch = epoch_batch[rows].to(device)
            loss = train_step(model, loss_fn, optimizer, scheduler, batch, cfg)
            history["step"].append(step)
            history["loss"].append(round(loss, 5))
            tokens += int((batch.item_index != PADDING).sum())
            step += 1
            if step >= total:
                break
        train_seconds += time.perf_counter() - start
        valid = headline(evaluate_model(model, data, "valid", device), cfg)
        history["epoch"].append(epoch + 1)
        history["valid_" + HEADLINE].append(round(valid, 5))
        epochs.set_postfix(loss=f"{loss:.3f}", valid_ndcg10=f"{valid:.4f}")
        if valid > best:
            best, best_epoch = valid, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        if step >= total or epoch + 1 - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    results = {
        "epochs": epoch + 1,
        "best_epoch": best_epoch,
        "steps": step,
        "train_seconds": round(train_seconds, 2),
        "tokens_per_second": round(tokens / max(train_seconds, 1e-9)),
        "params": sum(p.numel() for p in model.parameters()),
        "history": history,
        "valid": evaluate_model(model, data, "valid", device),
        "test": evaluate_model(model, data, "test", device),
        **_run_facts(cfg, data, device),
    }
    return model, results


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


def _run_facts(cfg: Config, data: Prepared, device) -> dict:
    """Config, protocol, data and machine facts recorded beside every metric."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # ru_maxrss is KiB on Linux: the process's peak resident memory
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    import transformers

    return {
        "plan": cfg.plan,
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "protocol": f"{PROTOCOL}; headline metrics with seen items "
        f"{'excluded' if cfg.exclude_seen else 'included'} (both reported)",
        "data": {
            "users": len(data.split.users),
            "items": data.split.n_items,
            "eval_input_items_dropped_by_token_budget": data.n_dropped,
        },
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "peak_memory_mib": round(peak, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def run_popularity(cfg: Config, split: LeaveOneOut | None = None) -> dict:
    """Most-popular unseen items, evaluated exactly like the trained models."""
    split = split or leave_one_out(load_sequences(cfg.n_users))
    scorer = popularity_scorer(popularity_counts(split.train, split.n_items))
    results = {
        s: evaluate(scorer, split.histories(s)[0], getattr(split, s)) for s in ("valid", "test")
    }
    cfg = dataclasses.replace(cfg, plan="popularity")
    return {
        "plan": "popularity",
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "protocol": f"{PROTOCOL}; popularity counted on the training parts",
        "params": 0,
        "train_seconds": 0.0,
        **results,
    }


def run(cfg: Config, progress: bool = True, split: LeaveOneOut | None = None) -> dict:
    """One (plan, seed) end to end: popularity or a trained model. Returns the results dict."""
    if cfg.plan == "popularity":
        return run_popularity(cfg, split)
    if cfg.plan not in PLANS:
        raise ValueError(f"Unknown plan {cfg.plan!r}: choose one of {', '.join(ALL_PLANS)}.")
    return train(cfg, prepare(cfg, split), progress)[1]


def write_results(results: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{results['plan']}_seed{results['seed']}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True))
    return path


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings -> typed Config overrides (value parsed as JSON when it can be)."""
    fields = {f.name for f in dataclasses.fields(Config)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set expects key=value with a Config field as key, got {pair!r}.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", default=None, help="quick (CPU) or full (one GPU); default $IAM_MODE"
    )
    parser.add_argument("--plan", default="iam", choices=ALL_PLANS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/<mode>)"
    )
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    cfg = get_config(
        args.mode, plan=args.plan, seed=args.seed, max_steps=args.max_steps, **overrides
    )
    results = run(cfg)
    path = write_results(results, args.out or results_dir() / cfg.mode)
    test = results["test"]["seen_excluded"]
    print(f"{cfg.plan} seed {cfg.seed}: test HR@10 {test['HR@10']:.4f} NDCG@10 {test['NDCG@10']:.4f} "
          f"({PROTOCOL}, seen items excluded) -> {path}")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
