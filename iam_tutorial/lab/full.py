"""FULL on one GPU in one call: every (plan, item input, seed) cell at once, sized to a budget.

  python -m iam_tutorial.lab.full --budget-seconds 330 --parallel 12

The data are prepared and pre-tokenized once (fastdata.py) and shared through one memory-mapped
file. Worker processes on the one GPU first time a few seconds of steps of every kind of cell, all
at once; sizing.py turns those times into one epoch count for every cell that ends inside the
budget, dropping optional groups (the other item input, more seeds) while too few epochs fit. Each
cell also gets a wall-clock cap (`max_train_seconds`) and is written atomically when it ends
(store.write_cell), so a call cut short keeps its finished cells. The workers are workers.py;
scripts/full_gpu.sh is the GPU call. Writes <out>/runs/*.json (per-user ranks), comparison.csv,
report.txt (CIs), summary.txt, sizing.json and comparison.png.
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from iam_tutorial.cli import add_config_args, config_from_args, fail, guarded
from iam_tutorial.config import Config
from iam_tutorial.lab import runner, sizing, store, workers
from iam_tutorial.lab.report import protocol_line, report
from iam_tutorial.paths import results_dir
from iam_tutorial.plans import PLANS

PLANS_FULL = ("popularity", "sasrec", "token", "control", "hatllm", "iam")


def cell_groups(base: Config, plans, inputs, seeds, extra_seeds=()) -> list[list[Config]]:
    """Cells in priority groups: first every plan with the first item input (and the baselines)
    over `seeds`, then each other item input, then the same again over `extra_seeds`."""
    groups, seen = [], set()
    for seed_set in (seeds, extra_seeds):
        for item_input in inputs if seed_set else ():
            group = runner.cells(base, plans, (item_input,), seed_set)  # baselines: once
            group = [c for c in group if (store.cell_name(c), c.seed) not in seen]
            seen |= {(store.cell_name(c), c.seed) for c in group}
            groups.append(group)
    return [g for g in groups if g]


def share_data(cells: list[Config], path: Path):
    """Prepare and pre-tokenize the data once per item form, into the one file every worker
    maps; returns the split."""
    import torch

    from iam_tutorial.lab.fastdata import FastPrepared
    from iam_tutorial.pipeline import load_split, prepare

    split, shared = load_split(cells[0]), {}
    for cfg in cells:
        form = "text" if PLANS[cfg.plan].text else "id"
        if form not in shared:
            data = FastPrepared.from_prepared(prepare(cfg, split))
            shared[form] = dataclasses.replace(data, tokenizer=None)  # training never reads it
    torch.save(shared, path)
    return split


def run_full(
    base: Config,
    groups: list[list[Config]],
    out_dir: Path,
    budget: float,
    parallel: int = 12,
    least: int = 5,
    seconds: float = 8.0,
    epochs: int | None = None,
    log=print,
) -> dict:
    """Every cell of `groups` that fits, trained concurrently inside `budget` wall seconds from
    now; writes <out_dir>/runs/ and returns the sizing facts (also in <out_dir>/sizing.json)."""
    began = time.time()
    deadline, out_dir = began + budget, Path(out_dir)
    models = [c for g in groups for c in g if c.plan != "popularity"]
    lanes = max(1, min(parallel, len(models)))
    threads = max(1, (os.cpu_count() or 1) // (lanes + 1))
    facts = {"budget_seconds": budget, "parallel": parallel, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="iam_full_") as folder:
        path = Path(folder) / "shared.pt"
        pool = workers.Pool(lanes, path, out_dir, threads)  # they start while the data are made
        try:
            split = share_data(models, path)
            facts["prepare_seconds"] = round(time.time() - began, 1)
            log(f"data prepared and pre-tokenized in {facts['prepare_seconds']} s; {lanes} workers")
            plan = size_cells(
                pool, groups, models, deadline, least, seconds, epochs, base.max_epochs, log
            )
            facts |= plan
            facts |= train_cells(
                pool, groups[: plan["kept_groups"]], plan, split, out_dir, deadline, log
            )
        finally:
            pool.close()
    done = facts.pop("done")
    facts |= {
        "timings": {k: t.as_dict() for k, t in sorted(facts["timings"].items())},
        "chosen": [_name(c) for c in facts["chosen"]],
        "done": [_name(c) for c in done],
        "wall_seconds": round(time.time() - began, 1),
    }
    (out_dir / "sizing.json").write_text(json.dumps(facts, indent=1, sort_keys=True))
    return {**facts, "cells": done}


def _name(cfg: Config) -> str:
    return f"{store.cell_name(cfg)}_seed{cfg.seed}"


def size_cells(pool, groups, models, deadline, least, seconds, epochs, most, log) -> dict:
    """Time every kind, then choose the groups kept and the epochs; the cells longest first."""
    start = time.time()
    if epochs is None:
        log("timing every kind of cell at once:")
        timings, failed = workers.calibrate(pool, models, seconds, deadline, log)
        room = deadline - time.time() - max(5.0, 0.03 * (deadline - start))
        kinds = [[store.cell_name(c) for c in g if c.plan != "popularity"] for g in groups]
        kinds = [[k for k in g if k in timings] for g in kinds]
        kept, epochs = sizing.choose(kinds, timings, pool.lanes, room, most, least)
    else:  # a fixed count: no timing, and each cell ends on its cap if the count is too many
        timings, failed, kept, room = {}, {}, len(groups), None
    chosen = [
        c
        for g in groups[:kept]
        for c in g
        if c.plan != "popularity" and (not timings or store.cell_name(c) in timings)
    ]
    if timings:  # longest first, as sizing assumed
        chosen = [
            chosen[i] for i in sizing.longest_first(list(map(store.cell_name, chosen)), timings)
        ]
    return {
        "epochs": epochs,
        "kept_groups": kept,
        "room_seconds": room,
        "timings": timings,
        "failed": failed,
        "chosen": chosen,
        "timing_seconds": round(time.time() - start, 1),
        "dropped": [_name(c) for g in groups[kept:] for c in g],
    }


def train_cells(pool, groups, plan: dict, split, out_dir, deadline, log) -> dict:
    """Queue the chosen cells with their epochs and reserve, train popularity here meanwhile,
    and collect the cells as they end."""
    from iam_tutorial.train import run

    chosen, timings, epochs = plan["chosen"], plan["timings"], plan["epochs"]
    if len(chosen) < pool.lanes:
        pool.retire(pool.lanes - len(chosen))  # idle workers would only hold memory
    start, fallback = time.time(), min(10.0, 0.1 * (deadline - time.time()))
    for cfg in chosen:
        reserve = timings[store.cell_name(cfg)].final_seconds() + 2 if timings else fallback
        pool.tasks.put(("train", dataclasses.replace(cfg, max_epochs=epochs), (deadline, reserve)))
    cells = [timings[store.cell_name(c)].cell_seconds(epochs) for c in chosen]
    predicted = sizing.makespan(cells, pool.lanes) if timings else None
    log(
        f"{len(chosen)} cells x {epochs} epochs on {pool.lanes} lanes"
        + (
            f", predicted to end in {predicted:.0f} s of {deadline - start:.0f} s"
            if timings
            else ""
        )
    )
    popular = [c for g in groups for c in g if c.plan == "popularity"]
    for cfg in popular:  # seconds of CPU, here, while the workers train
        store.write_cell(cfg, run(cfg, split=split), out_dir)
    reports = pool.collect(len(chosen), deadline + 20, log)
    ended = {(k, s): v for verb, k, s, v in reports if verb == "train"}
    failed = {f"{k}_seed{s}": v for verb, k, s, v in reports if verb == "failed"}
    return {
        "lanes": pool.lanes,
        "predicted_train_seconds": predicted and round(predicted, 1),
        "train_seconds": round(time.time() - start, 1),
        "failed": plan["failed"] | failed,
        "cells_report": {f"{k}_seed{s}": v for (k, s), v in ended.items()},
        "done": popular + [c for c in chosen if (store.cell_name(c), c.seed) in ended],
    }


# --- outputs and the command line ---------------------------------------------------------------


def write_outputs(base: Config, facts: dict, out_dir: Path) -> str:
    """comparison.csv, report.txt (CIs), comparison.png and summary.txt of this call's cells;
    returns the short table."""
    from iam_tutorial.lab.plots import plot_comparison
    from iam_tutorial.viz import save_fig

    paths = [store.cell_path(c, out_dir) for c in facts["cells"]]
    results = [json.loads(p.read_text()) for p in paths if p.exists()]
    table = store.tidy(results)
    table.to_csv(out_dir / "comparison.csv", index=False, float_format="%.6f")
    base = dataclasses.replace(base, max_epochs=facts.get("epochs") or base.max_epochs)
    try:  # a one-shot GPU call must still return its cells if a table cannot be made
        text = report(base, results, table)
        fig = plot_comparison(table, protocol_line(base, table))
        save_fig(fig, "comparison", folder=out_dir)
    except Exception as error:
        text = f"report failed: {error!r}"
    (out_dir / "report.txt").write_text(text + "\n")
    short = short_table(results, facts)
    (out_dir / "summary.txt").write_text(short + "\n")
    return short


def short_table(results: list[dict], facts: dict) -> str:
    """Per cell: test NDCG@10 and HR@10 mean ± std over seeds, epochs, how training stopped."""
    import pandas as pd

    rows = [
        {
            "cell": r["cell"],
            "seed": r["seed"],
            "ndcg": r["test"]["seen_excluded"]["NDCG@10"],
            "hr": r["test"]["seen_excluded"]["HR@10"],
            "epochs": r.get("epochs", 0),
            "stopped": r.get("stopped_by") or "-",
            "train_s": r.get("train_seconds", 0.0),
        }
        for r in results
    ]
    if not rows:
        return "no cells finished"
    table = (
        pd.DataFrame(rows)
        .groupby("cell", sort=False)
        .agg(
            seeds=("seed", "count"),
            ndcg10=("ndcg", lambda x: f"{x.mean():.4f} ± {x.std(ddof=1) if len(x) > 1 else 0:.4f}"),
            hr10=("hr", lambda x: f"{x.mean():.4f}"),
            epochs=("epochs", lambda x: "/".join(map(str, x))),
            stopped=("stopped", lambda x: "/".join(sorted(set(x)))),
            train_s=("train_s", lambda x: round(x.mean())),
        )
    )
    head = (
        f"FULL · test, seen items excluded · {facts.get('epochs')} epochs per cell, "
        f"{facts.get('lanes')} lanes, wall {facts.get('wall_seconds')} s"
        f" · failed {len(facts['failed'])}, dropped {len(facts.get('dropped', []))}"
    )
    return head + "\n" + table.to_string()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.lab.full", description=__doc__.splitlines()[0]
    )
    add_config_args(parser)
    parser.set_defaults(mode="full")
    arg = parser.add_argument
    arg("--plans", nargs="*", default=list(PLANS_FULL), help="plans (baselines included)")
    arg(
        "--inputs",
        nargs="*",
        default=["text+id", "text"],
        help="item inputs, the first always trained, the others while they fit",
    )
    arg("--seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds always trained")
    arg("--extra-seeds", nargs="*", type=int, default=[3, 4], help="seeds trained if they fit")
    arg(
        "--budget-seconds", type=float, default=330, help="wall seconds until every cell is written"
    )
    arg("--parallel", type=int, default=12, help="worker processes (lanes) on the one device")
    arg("--min-epochs", type=int, default=5, help="drop optional cells while fewer epochs fit")
    arg("--calibrate-seconds", type=float, default=8, help="timed steps per kind of cell")
    arg("--epochs", type=int, default=None, help="a fixed epoch count instead of sizing")
    arg("--out", type=Path, default=None, help="results folder (default results/full)")
    return parser.parse_args(argv)


@guarded
def main(argv=None):
    args = parse_args(argv)
    for name in ("budget_seconds", "parallel", "min_epochs", "calibrate_seconds", "epochs"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            fail(f"--{name.replace('_', '-')} must be > 0, got {value}.")
    base = config_from_args(args)
    out_dir = args.out or results_dir() / "full"
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file; give a folder for the results.")
    groups = cell_groups(base, args.plans, args.inputs, args.seeds, args.extra_seeds)
    sizes = (args.parallel, args.min_epochs, args.calibrate_seconds, args.epochs)
    facts = run_full(base, groups, out_dir, args.budget_seconds, *sizes)
    short = write_outputs(base, facts, out_dir)
    print((out_dir / "report.txt").read_text())
    print(short)
    return facts


if __name__ == "__main__":
    main()
