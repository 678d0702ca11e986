"""The comparison runner: every cell of an experiment trained once, or reused from the store.

Cells run seed-major, in this process or in worker processes that share the cores; with
fine-tuning budgets, each (plan, seed) trains once, to its largest missing budget, and the shorter
budgets are snapshots of that run (hooks.py).
"""

import dataclasses
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from iam_tutorial.config import Config
from iam_tutorial.lab.experiments import Experiment, get_experiment
from iam_tutorial.lab.hooks import budget_config, checkpoints, every_epoch, snapshots
from iam_tutorial.lab.store import (
    budget_dir,
    cell_name,
    load_cells,
    stored_cell,
    text_plan,
    tidy,
    write_cell,
)
from iam_tutorial.paths import results_dir
from iam_tutorial.pipeline import load_split
from iam_tutorial.plans import layer_plan
from iam_tutorial.train import run


def train_cell(
    cfg: Config,
    out_dir: Path,
    split=None,
    threads: int | None = None,
    snapshot_dirs: dict[int, Path] | None = None,
) -> dict:
    """Train one cell and store it (a worker process's job: it pins its own thread count). Its
    state is checkpointed after every epoch (<out>/checkpoints/, never committed), so a cell cut
    off by a restart resumes from its last epoch. `snapshot_dirs` {epochs: folder}: the shorter
    budgets this run also gives (hooks.snapshots), each stored there as soon as it is reached."""
    began = time.perf_counter()
    if threads:
        import torch

        torch.set_num_threads(threads)
    checkpoint = Path(out_dir) / "checkpoints" / f"{cell_name(cfg)}_seed{cfg.seed}.pt"
    dirs, written = snapshot_dirs or {}, set()

    def store(results: dict) -> None:
        epochs = results["config"]["max_epochs"]
        write_cell(budget_config(cfg, epochs), results, dirs[epochs])
        written.add(epochs)

    hook = every_epoch(snapshots(tuple(dirs), store), checkpoints(checkpoint))
    results = run(cfg, progress=False, split=split, on_epoch=hook)
    checkpoint.unlink(missing_ok=True)
    for epochs in sorted(set(dirs) - written):  # a baseline trains no epochs to snapshot
        short = budget_config(cfg, epochs)
        write_cell(short, run(short, progress=False, split=split), dirs[epochs])
    # wall_seconds covers training and validation; a cell's whole time adds loading and the test
    return write_cell(
        cfg, results | {"cell_seconds": round(time.perf_counter() - began, 1)}, out_dir
    )


def budget_jobs(todo: list[Config], out_dir: Path, budgets, redo=False):
    """The training a budgeted comparison still needs: per cell, one run to its largest budget
    not stored, which gives the smaller missing ones as snapshots. Returns ({budget: {id(cell):
    stored results or None}}, [(run config, its folder, {snapshot epochs: folder})])."""
    stored = {
        b: {
            id(c): None if redo else stored_cell(budget_config(c, b), budget_dir(out_dir, b))
            for c in todo
        }
        for b in budgets
    }
    jobs = []
    for c in todo:
        missing = [b for b in budgets if stored[b][id(c)] is None]
        if missing:
            top = max(missing)
            snaps = {b: budget_dir(out_dir, b) for b in missing if b < top}
            jobs.append((budget_config(c, top), budget_dir(out_dir, top), snaps))
    return stored, jobs


def cells(base: Config, plans, inputs, seeds, plan_settings=()) -> list[Config]:
    """Every distinct (plan, item input, seed), seed-major so each finished seed is complete.
    Baselines have one item form; a plan whose layers equal an earlier plan's is trained once.
    `plan_settings` (Experiment.plan_settings): fields a plan's cells set apart from `base`."""
    out, seen, settings = [], set(), {plan: dict(fields) for plan, fields in plan_settings}
    for seed in seeds:
        for plan in distinct_plans(plans, base, log=(print if seed == seeds[0] else None)):
            for item_input in inputs if text_plan(plan) else ("text",):
                cfg = dataclasses.replace(base, plan=plan, item_input=item_input, seed=seed,
                                          **settings.get(plan, {}))  # fmt: skip
                if (cell_name(cfg), seed) not in seen:
                    seen.add((cell_name(cfg), seed))
                    out.append(cfg)
    return out


def distinct_plans(plans, cfg: Config, log=print) -> list[str]:
    """`plans` less those whose layers equal an earlier plan's at this depth, which would only
    repeat its numbers (at 2 blocks, hatllm's (1, 0, 1) split and iam-alt are both intra, inter)."""
    kept, seen = [], {}  # seen: layers -> plan
    for plan in plans:
        if not text_plan(plan):  # baselines have no mask plan to compare
            kept.append(plan)
            continue
        layers = tuple(layer_plan(plan, cfg.n_layer, cfg.hatllm_split))
        if layers in seen:
            if log:
                log(
                    f"note: {plan} = {seen[layers]} at n_layer={cfg.n_layer} (same layers): "
                    "trained once"
                )
            continue
        seen[layers] = plan
        kept.append(plan)
    return kept


def run_experiment(
    exp: Experiment, out_dir=None, redo=False, progress=True, parallel=1, with_results=False
):
    """Train (or reuse) every cell of `exp`, then write and return the tidy table
    (<out>/comparison.csv); with `with_results`, (table, the cells' results dicts); with budgets,
    {budget: that} (run_budgets). With `parallel` > 1 the cells run in that many processes, the
    cores shared among them."""
    out_dir = Path(out_dir or results_dir() / exp.run.mode)
    todo = cells(exp.run, exp.plans, exp.inputs, list(exp.seeds), exp.plan_settings)
    if exp.budgets:
        return run_budgets(exp, todo, out_dir, redo, progress, parallel, with_results)
    done = {id(c): stored_cell(c, out_dir) if not redo else None for c in todo}
    missing = [c for c in todo if done[id(c)] is None]
    if len(missing) < len(todo):
        reused = len(todo) - len(missing)
        print(f"reused {reused} stored cells from {out_dir / 'runs'} (fingerprints match)")
    if missing:
        bar = tqdm(total=len(missing), desc="cells", unit="cell", disable=not progress)
        try:  # the data are loaded once, shared by every cell
            jobs = [(c, out_dir, None) for c in missing]
            for cfg, result in _train_all(jobs, load_split(exp.run), parallel):
                done[id(cfg)] = result
                bar.set_postfix_str(f"{cell_name(cfg)} seed {cfg.seed}")
                bar.update()
        finally:  # the bar is closed before any message (Ctrl-C is reported once, by cli.guarded)
            bar.close()
    results = [done[id(c)] for c in todo]
    table = tidy(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "comparison.csv", index=False, float_format="%.6f")
    return (table, results) if with_results else table


def run_comparison(
    mode=None,
    plans=None,
    seeds=None,
    out_dir=None,
    redo=False,
    progress=True,
    inputs=None,
    parallel=1,
    with_results=False,
    budgets=None,
    **overrides,
):
    """`run_experiment` of the preset experiment `mode`, its grid (plans, seeds, inputs, budgets)
    and its run's config fields (`overrides`) changed where given."""
    exp = get_experiment(
        mode, plans=plans, inputs=inputs, seeds=seeds, budgets=budgets, **overrides
    )
    return run_experiment(exp, out_dir, redo, progress, parallel, with_results)


def run_budgets(
    exp: Experiment, todo: list[Config], out_dir: Path, redo, progress, parallel, with_results
):
    """`run_experiment` over fine-tuning budgets: each budget a comparison of its own in
    <out>/epochs-E/ (its cells, table, report), every (plan, seed) trained once (budget_jobs).
    Returns {budget: table} (with `with_results`, {budget: (table, results)})."""
    budgets = sorted(exp.budgets)
    stored, jobs = budget_jobs(todo, out_dir, budgets, redo)
    reused = sum(r is not None for by in stored.values() for r in by.values())
    if reused:
        print(f"reused {reused} stored cells from {out_dir}/epochs-*/runs (fingerprints match)")
    if jobs:
        bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
        try:
            for _ in _train_all(jobs, load_split(exp.run), parallel):
                bar.update()
        finally:
            bar.close()
    out, names = {}, {(cell_name(c), c.seed) for c in todo}
    for b in budgets:
        results = load_cells(budget_dir(out_dir, b))
        results = [r for r in results if (r["cell"], r["seed"]) in names]
        table = tidy(results)
        table.to_csv(budget_dir(out_dir, b) / "comparison.csv", index=False, float_format="%.6f")
        out[b] = (table, results) if with_results else table
    return out


def _train_all(jobs: list[tuple], split, parallel: int):
    """Yield (cfg, results) as cells finish, in this process or in `parallel` workers; a job is
    (cfg, its folder, its snapshot folders or None: budget_jobs)."""
    if parallel <= 1:
        for cfg, folder, snaps in jobs:
            yield cfg, train_cell(cfg, folder, split, None, snaps)
        return
    threads = max(1, int(os.environ.get("IAM_THREADS") or (os.cpu_count() or 1) // parallel))
    with ProcessPoolExecutor(parallel, mp_context=get_context("spawn")) as pool:
        running = {
            pool.submit(train_cell, c, folder, split, threads, snaps): c
            for c, folder, snaps in jobs
        }
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()
