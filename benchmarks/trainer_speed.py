"""The trainer's speed on this machine, fp32 against bf16 autocast, measured in one run.

  python benchmarks/trainer_speed.py [--models sasrec-full reference-token reference-iam
                                      smollm2-full smollm2-lora] [--steps 6] [--json out.json]

Each model trains on real batches of its own preset (`prepare`: the data in $IAM_DATA_DIR), with
the project's own optimizer and schedule. Per step the time splits into data (the next batch of
the epoch), forward + backward, and the optimizer step; evaluation is one scoring pass over
`--eval-users` validation inputs. Precisions are timed interleaved, round-robin, after warm-up
steps, and the median is reported, so drift on a shared machine hits both alike. The table gives
steps/s, tokens/s, the split, and the bf16/fp32 ratio per model; device.bf16_decision rests on it.
"""

import argparse
import dataclasses
import json
import statistics
import time

import torch

from iam_tutorial.config import get_config
from iam_tutorial.device import cpu_bf16_instructions, cpu_name
from iam_tutorial.family import build_model
from iam_tutorial.pipeline import prepare
from iam_tutorial.serialize import PADDING
from iam_tutorial.train import evaluate_model, make_optimizer

MODELS = {  # name: (preset, overrides)
    "sasrec-full": ("sasrec-full", {"plan": "sasrec"}),
    "reference-token": ("reference", {"plan": "token"}),
    "reference-iam": ("reference", {"plan": "iam"}),
    "smollm2-full": ("quick", {"plan": "token", "backbone": "smollm2-135m", "batch_size": 8,
                               "n_users": 300, "lr": 1e-4}),
    "smollm2-lora": ("quick", {"plan": "token", "backbone": "smollm2-135m", "batch_size": 8,
                               "n_users": 300, "lr": 1e-3, "finetune": "lora"}),
}  # fmt: skip


class Timed:
    """One model in one precision: its next step, timed in parts."""

    def __init__(self, data, bf16: bool):
        self.cfg = dataclasses.replace(data.cfg, bf16=bf16)
        self.data = dataclasses.replace(data, cfg=self.cfg)
        torch.manual_seed(0)
        self.model = build_model(self.cfg, data.serializer)
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.batches = self.data.epoch(torch.Generator().manual_seed(0))
        self.parts = {"data": [], "forward_backward": [], "optimizer": []}
        self.tokens = []

    def step(self, record: bool) -> None:
        t0 = time.perf_counter()
        batch = next(self.batches)
        t1 = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=self.cfg.bf16):
            loss = self.model.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        t3 = time.perf_counter()
        if record:
            for name, t in zip(self.parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                self.parts[name].append(t)
            self.tokens.append(int((batch.item_index != PADDING).sum()))

    def evaluate(self, users: int) -> float:
        data = dataclasses.replace(self.data, valid=self.data.valid[list(range(users))])
        data.split = dataclasses.replace(data.split, valid=data.split.valid[:users])
        data.seen = {**data.seen, "valid": data.seen["valid"][:users]}
        start = time.perf_counter()
        evaluate_model(self.model, data, "valid", torch.device("cpu"))
        return time.perf_counter() - start

    def summary(self) -> dict:
        med = {k: statistics.median(v) for k, v in self.parts.items()}
        step = sum(med.values())
        return {"steps_per_s": 1 / step, "tokens_per_s": statistics.median(self.tokens) / step,
                **{f"{k}_ms": 1e3 * v for k, v in med.items()}}  # fmt: skip


def bench(name: str, steps: int, warmup: int, eval_users: int) -> dict:
    preset, overrides = MODELS[name]
    data = prepare(get_config(preset, **overrides))
    runs = {"fp32": Timed(data, False), "bf16": Timed(data, True)}
    for i in range(warmup + steps):  # round-robin: drift hits both precisions alike
        for run in runs.values():
            run.step(record=i >= warmup)
    out = {p: r.summary() | {"eval_s": r.evaluate(eval_users)} for p, r in runs.items()}
    out["bf16_speedup"] = out["bf16"]["tokens_per_s"] / out["fp32"]["tokens_per_s"]
    out["params"] = sum(p.numel() for p in runs["fp32"].model.parameters())
    out["trainable"] = sum(p.numel() for p in runs["fp32"].model.parameters() if p.requires_grad)
    return out


def table(results: dict) -> str:
    head = (f"{'model':<17}{'prec':>5}{'steps/s':>9}{'tokens/s':>10}{'data ms':>9}{'fwd+bwd ms':>11}"
            f"{'optim ms':>10}{'eval s':>8}{'bf16/fp32':>10}")  # fmt: skip
    lines = [head]
    for name, r in results.items():
        for p in ("fp32", "bf16"):
            s = r[p]
            ratio = f"{r['bf16_speedup']:>9.2f}×" if p == "bf16" else ""
            lines.append(f"{name:<17}{p:>5}{s['steps_per_s']:>9.2f}{s['tokens_per_s']:>10,.0f}"
                         f"{s['data_ms']:>9.1f}{s['forward_backward_ms']:>11.1f}"
                         f"{s['optimizer_ms']:>10.1f}{s['eval_s']:>8.1f}{ratio}")  # fmt: skip
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=6, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--eval-users", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    facts = {"cpu": cpu_name(), "bf16_instructions": cpu_bf16_instructions(),
             "threads": torch.get_num_threads(), "torch": torch.__version__}  # fmt: skip
    print(facts)
    results = {}
    for name in args.models:
        results[name] = bench(name, args.steps, args.warmup, args.eval_users)
        print(table({name: results[name]}).splitlines()[-2:], flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"facts": facts, "results": results}, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
