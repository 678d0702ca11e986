"""Whole REFERENCE cells with this round's trainer against the one before it, in one run.

  python benchmarks/reference_cell.py [--plans iam token] [--threads 1] [--json out.json]

"before" is today's trainer with the three changes of this round undone: AdamW's per-tensor loop
instead of the fused kernel, validation users scored in id order (each batch padded to the longest
of its 128 users) instead of by input length, and a second validation pass for the results instead
of the best epoch's stored ranks. Each cell trains to its own stop (the preset's schedule and early
stopping, seed 0), both trainers alternating, so drift on a shared machine hits both alike. Prints
wall seconds per cell, the ratio before / now, and whether both gave the same per-user ranks: the
length order and the stored ranks change no number, but the fused kernel rounds the same update
differently, so over 18 epochs the two trainings drift apart like runs on another CPU.
"""

import argparse
import contextlib
import json
import time

import torch

import iam_tutorial.train as train_module
from iam_tutorial.config import get_config
from iam_tutorial.device import cpu_name
from iam_tutorial.pipeline import prepare


@contextlib.contextmanager
def trainer_before():
    """The trainer as it was before this round (see the module docstring)."""
    make_optimizer, rank_targets, results_of = (
        train_module.make_optimizer, train_module.rank_targets, train_module.results_of
    )  # fmt: skip

    def loop_adamw(model, cfg):
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]}
                  for g in make_optimizer(model, cfg).param_groups]  # fmt: skip
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=False)

    def id_order(score_rows, seen, targets, batch_size=256, order=None):
        return rank_targets(score_rows, seen, targets, batch_size)

    def second_pass(*args, valid_ranks=None):
        return results_of(*args[:7], None)

    train_module.make_optimizer, train_module.rank_targets = loop_adamw, id_order
    train_module.results_of = second_pass
    try:
        yield
    finally:
        train_module.make_optimizer, train_module.rank_targets = make_optimizer, rank_targets
        train_module.results_of = results_of


def cell_seconds(data, before: bool) -> tuple[float, dict]:
    start = time.perf_counter()
    with trainer_before() if before else contextlib.nullcontext():
        _, results = train_module.train(data, progress=False)
    return time.perf_counter() - start, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", nargs="+", default=["iam", "token"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    for plan in args.plans:
        data = prepare(get_config("reference", plan=plan, seed=0))
        timed = {}
        for name in ("before", "now", "before", "now"):  # alternating: drift hits both
            seconds, results = cell_seconds(data, before=name == "before")
            timed.setdefault(name, []).append(seconds)
            timed.setdefault(name + "_ranks", results["ranks"])
        same = timed["before_ranks"] == timed["now_ranks"]
        rows[plan] = {"before_s": min(timed["before"]), "now_s": min(timed["now"]),
                      "epochs": results["epochs"], "same_ranks": same}  # fmt: skip
    print(f"# benchmarks/reference_cell.py --threads {args.threads}, {cpu_name()}; "
          "best of 2 alternating runs per trainer")  # fmt: skip
    print(f"{'cell':<8}{'epochs':>7}{'before s':>10}{'now s':>8}{'before/now':>12}  same ranks")
    for plan, r in rows.items():
        print(f"{plan:<8}{r['epochs']:>7}{r['before_s']:>10.1f}{r['now_s']:>8.1f}"
              f"{r['before_s'] / r['now_s']:>11.2f}×  {r['same_ranks']}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
