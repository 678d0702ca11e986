"""Item-aware vs token-level attention: every plan x item input x seed, same data and budget.

  python -m iam_tutorial.lab.compare --mode quick [--parallel 2]

Runs the experiment of a preset (experiments.py), its grid changed by --plans, --inputs, --seeds
(or --set seeds=[0,1] budgets=[1,2]), through the runner (runner.py), which stores each cell as
it finishes and reuses it while its config and the code are unchanged (store.py; `--redo`
retrains), then prints and writes the report (report.py). `--report-only` trains nothing.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd

from iam_tutorial.cli import add_config_args, config_from_args, fail, guarded, parse_value
from iam_tutorial.config import PRESETS, config_diff
from iam_tutorial.lab import decide
from iam_tutorial.lab.experiments import EXPERIMENTS, Experiment
from iam_tutorial.lab.hooks import budget_config
from iam_tutorial.lab.report import (
    beside_reference,
    budget_markdown,
    budget_table,
    decision_table,
    protocol_line,
    publish,
    publish_budgets,
    summarize,
    write_figures,
)
from iam_tutorial.lab.runner import run_comparison, run_experiment
from iam_tutorial.lab.store import budget_dir, cell_name, load_cells, stored_cell, tidy, write_cell
from iam_tutorial.paths import results_dir
from iam_tutorial.plans import ALL_PLANS

# What notebooks, scripts and the lab's other rooms import from here (the three rooms above).
__all__ = [
    "budget_dir",
    "budget_markdown",
    "budget_table",
    "cell_name",
    "decision_table",
    "load_cells",
    "main",
    "protocol_line",
    "run_comparison",
    "stored_cell",
    "summarize",
    "tidy",
    "write_cell",
]

# Grid fields --set may name, as the scripts pass them (older names too): field of Experiment.
GRID_KEYS = {
    "plans": "plans",
    "compare_plans": "plans",
    "inputs": "inputs",
    "item_inputs": "inputs",
    "seeds": "seeds",
    "budgets": "budgets",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.lab.compare", description=__doc__.splitlines()[0]
    )
    add_config_args(parser)
    arg = parser.add_argument
    arg(
        "--plans",
        nargs="*",
        default=None,
        help=f"plans to compare (default: the preset's; any of {', '.join(ALL_PLANS)})",
    )
    arg("--inputs", nargs="*", default=None, help="item inputs: text, text+id")
    arg("--seeds", nargs="*", type=int, default=None, help="seeds (default: the preset's)")
    arg("--parallel", type=int, default=1, help="cells trained at once, in processes")
    arg("--redo", action="store_true", help="retrain cells already stored")
    arg(
        "--report-only",
        action="store_true",
        help="train nothing: report the cells stored in --out, whatever code made them",
    )
    arg("--out", type=Path, default=None, help="results folder (default results/<mode>)")
    return parser.parse_args(argv)


def experiment_from_args(args) -> Experiment:
    """The preset experiment of --mode, its run config from --set and --max-steps, its grid from
    --plans, --inputs, --seeds and the grid fields --set names; a bad value exits 2."""
    grid, rest = {}, []
    for pair in args.set:
        key, _, value = pair.partition("=")
        if key in GRID_KEYS:
            grid[GRID_KEYS[key]] = parse_value(value)
        else:
            rest.append(pair)
    args.set = rest
    run = config_from_args(args)
    flags = {"plans": args.plans or None, "inputs": args.inputs or None, "seeds": args.seeds}
    grid |= {k: v for k, v in flags.items() if v is not None}
    grid = {k: tuple(v) if isinstance(v, list | tuple) else (v,) for k, v in grid.items()}
    return dataclasses.replace(EXPERIMENTS[run.mode], run=run, **grid)


@guarded
def main(argv=None):
    args = parse_args(argv)
    exp = experiment_from_args(args)
    out_dir = args.out or results_dir() / exp.run.mode
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file; give a folder for the results.")
    if args.parallel < 1:
        fail(f"--parallel must be >= 1, got {args.parallel}.")
    start = time.perf_counter()
    if exp.budgets:
        by_budget = stored_budgets(exp, out_dir) if args.report_only else None
        if by_budget is None:
            ran = run_experiment(exp, out_dir, args.redo, parallel=args.parallel, with_results=True)
            by_budget = {b: results for b, (_, results) in ran.items()}
        for b, results in by_budget.items():
            table, folder = tidy(results), budget_dir(out_dir, b)
            print(publish(budget_config(exp.run, b), results, table, folder), "\n")
            write_figures(budget_config(exp.run, b), results, table, folder)
        print(publish_budgets(exp.run, by_budget, out_dir))
    else:
        if args.report_only:
            results = load_cells(out_dir, required=exp.run.mode)
        else:
            _, results = run_experiment(
                exp, out_dir, args.redo, parallel=args.parallel, with_results=True
            )
        if exp.run.mode == "every-user":  # a planned comparison: its plan's decision (decide.py)
            print(decide.publish(results, out_dir))
        else:
            table = tidy(results)
            print(publish(exp.run, results, table, out_dir))
            if not args.report_only:  # a fresh QUICK run beside the committed reference
                show_beside_reference(exp, table)
            write_figures(exp.run, results, table, out_dir)
    print(f"wall: {time.perf_counter() - start:.0f} s")


def stored_budgets(exp: Experiment, out_dir: Path) -> dict[int, list[dict]]:
    """{budget: its stored cells} for the budgets that have cells (a run cut off has the shorter
    ones); none at all is a NoCells error that says how to train them."""
    stored = {b: load_cells(budget_dir(out_dir, b)) for b in sorted(exp.budgets)}
    by_budget = {b: cells for b, cells in stored.items() if cells}
    if not by_budget:
        load_cells(budget_dir(out_dir, min(exp.budgets)), required=exp.run.mode)
    return by_budget


def show_beside_reference(exp: Experiment, table: pd.DataFrame) -> None:
    """QUICK: this run's cells beside the committed reference's same seeds."""
    reference = results_dir() / "reference"
    if exp.run.mode != "quick" or not (reference / "comparison.csv").exists():
        return
    changed = config_diff(PRESETS[exp.run.mode], exp.run)
    differs = ", ".join(f"{k}={v}" for k, (_, v) in changed.items()) or "none"
    print(
        f"\nthis run beside the committed reference (config fields changed here: {differs}; "
        "test NDCG@10, seen items excluded):"
    )
    print(beside_reference(table, pd.read_csv(reference / "comparison.csv")).to_string())


if __name__ == "__main__":
    main()
