"""Item-aware vs token-level attention: every plan x item input x seed, on identical data and budget.

  python -m iam_tutorial.lab.compare --mode quick [--parallel 2]

Each cell (plan, item input, seed) is written to <out>/runs/ as soon as it finishes and is reused
on a re-run only while both its config and the package's code are unchanged (`--redo` retrains), so
an interrupted run loses nothing. The verdicts come from `stats.py`: a 95% CI of the relative
NDCG@10 change from a bootstrap over seeds and shared users and the paired t-interval on seed
means, "better"/"worse" only when both exclude zero.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import re
import textwrap
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from iam_tutorial.cli import add_config_args, config_from_args, fail, guarded
from iam_tutorial.config import PRESETS, Config, ConfigError, get_config
from iam_tutorial.lab.stats import PAIRS, compare_cells, convergence, pair_tests, sizing, verdicts
from iam_tutorial.metrics import protocol
from iam_tutorial.paths import REPO_ROOT, results_dir
from iam_tutorial.pipeline import load_split
from iam_tutorial.plans import COMPARE_PLANS, PLANS, describe, layer_plan
from iam_tutorial.repro import git_commit
from iam_tutorial.train import budget_config, run

REPORTED = ("HR@10", "NDCG@10")
CODE_DIR = REPO_ROOT / "iam_tutorial"


def text_plan(plan: str) -> bool:
    """Whether `plan` reads item text (so it has item inputs and a mask plan to compare); the
    baselines (popularity, SASRec's ID tokens) do not."""
    return plan in PLANS and PLANS[plan].text


def cell_name(cfg: Config) -> str:
    """'iam' (text items), 'iam+id' (text + ID), 'sasrec', 'popularity'."""
    return cfg.plan + ("+id" if text_plan(cfg.plan) and cfg.item_input == "text+id" else "")


def code_hash() -> str:
    """A hash of the code that decides a cell's numbers: the core package, by folder (the lab only
    schedules, stores and reports cells, so a change there keeps every stored cell)."""
    h = hashlib.sha1()
    for path in sorted(CODE_DIR.rglob("*.py")):
        relative = path.relative_to(CODE_DIR)
        if relative.parts[0] != "lab":
            h.update(relative.as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:12]


# The grid of a comparison, not of a cell: adding a seed, plan or budget keeps the stored cells.
GRID = ("seeds", "compare_plans", "item_inputs", "budgets")


def fingerprint(cfg: Config) -> str:
    """A short hash of the cell's config (less the grid) and the code: a stored cell is reused
    only if it matches."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in GRID}
    text = json.dumps({"config": config, "code": code_hash()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cell_path(cfg: Config, out_dir: Path) -> Path:
    return Path(out_dir) / "runs" / f"{cell_name(cfg)}_seed{cfg.seed}.json"


def stored_cell(cfg: Config, out_dir: Path) -> dict | None:
    """The stored results of a cell if its config and code match, else None."""
    path = cell_path(cfg, out_dir)
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("fingerprint") == fingerprint(cfg):
            return stored
    return None


def write_cell(cfg: Config, results: dict, out_dir: Path) -> dict:
    """Write one cell atomically (a killed run never leaves a half-written file); returns it as a
    later run reads it back."""
    results = {**results, "cell": cell_name(cfg), "fingerprint": fingerprint(cfg), "code": code_hash(),
               "commit": git_commit()}  # fmt: skip
    path = cell_path(cfg, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, sort_keys=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return json.loads(text)


def train_cell(cfg: Config, out_dir: Path, split=None, threads: int | None = None,
               snapshot_dirs: dict[int, Path] | None = None) -> dict:  # fmt: skip
    """Train one cell and store it (a worker process's job: it pins its own thread count). Its
    state is checkpointed after every epoch (<out>/checkpoints/, never committed), so a cell cut
    off by a restart resumes from its last epoch. `snapshot_dirs` {epochs: folder}: the shorter
    budgets this run also gives (train.snapshot), each stored there as soon as it is reached."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    checkpoint = Path(out_dir) / "checkpoints" / f"{cell_name(cfg)}_seed{cfg.seed}.pt"
    dirs, written = snapshot_dirs or {}, set()

    def store(results: dict) -> None:
        epochs = results["config"]["max_epochs"]
        write_cell(budget_config(cfg, epochs), results, dirs[epochs])
        written.add(epochs)

    results = run(cfg, progress=False, split=split, checkpoint=checkpoint, snapshots=tuple(dirs),
                  on_snapshot=store)  # fmt: skip
    for epochs in sorted(set(dirs) - written):  # a baseline trains no epochs to snapshot
        short = budget_config(cfg, epochs)
        write_cell(short, run(short, progress=False, split=split), dirs[epochs])
    return write_cell(cfg, results, out_dir)


def budget_dir(out_dir: Path, epochs: int) -> Path:
    return Path(out_dir) / f"epochs-{epochs}"


def budget_jobs(todo: list[Config], out_dir: Path, budgets, redo=False):
    """The training a budgeted comparison still needs: per cell, one run to its largest budget
    not stored, which gives the smaller missing ones as snapshots. Returns ({budget: {id(cell):
    stored results or None}}, [(run config, its folder, {snapshot epochs: folder})])."""
    stored = {b: {id(c): None if redo else stored_cell(budget_config(c, b), budget_dir(out_dir, b))
                  for c in todo} for b in budgets}  # fmt: skip
    jobs = []
    for c in todo:
        missing = [b for b in budgets if stored[b][id(c)] is None]
        if missing:
            top = max(missing)
            snaps = {b: budget_dir(out_dir, b) for b in missing if b < top}
            jobs.append((budget_config(c, top), budget_dir(out_dir, top), snaps))
    return stored, jobs


def cells(base: Config, plans, inputs, seeds) -> list[Config]:
    """Every distinct (plan, item input, seed), seed-major so each finished seed is complete.
    Baselines have one item form; a plan whose layers equal an earlier plan's is trained once."""
    out, seen = [], set()
    for seed in seeds:
        for plan in distinct_plans(plans, base, log=(print if seed == seeds[0] else None)):
            for item_input in inputs if text_plan(plan) else ("text",):
                cfg = dataclasses.replace(base, plan=plan, item_input=item_input, seed=seed)
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
                    f"note: {plan} = {seen[layers]} at n_layer={cfg.n_layer} (same layers): trained once"
                )
            continue
        seen[layers] = plan
        kept.append(plan)
    return kept


def run_comparison(mode=None, plans=None, seeds=None, out_dir=None, redo=False,
                   progress=True, inputs=None, parallel=1, with_results=False, **overrides):  # fmt: skip
    """Train (or reuse) every cell, then write and return the tidy table (<out>/comparison.csv);
    with `with_results`, (table, the cells' results dicts). With `parallel` > 1 the cells run in
    that many processes, the cores shared among them."""
    base = get_config(mode, **overrides)
    out_dir = Path(out_dir or results_dir() / base.mode)
    seeds = list(seeds if seeds is not None else base.seeds)
    todo = cells(base, plans or base.compare_plans, inputs or base.item_inputs, seeds)
    if base.budgets:
        return run_budgets(base, todo, out_dir, redo, progress, parallel, with_results)
    done = {id(c): stored_cell(c, out_dir) if not redo else None for c in todo}
    missing = [c for c in todo if done[id(c)] is None]
    if len(missing) < len(todo):
        print(
            f"reused {len(todo) - len(missing)} stored cells from {out_dir / 'runs'} (same config and code)"
        )
    if missing:
        split = load_split(base)  # loaded once, shared by every cell
        bar = tqdm(total=len(missing), desc="cells", unit="cell", disable=not progress)
        try:
            for cfg, result in _train_all([(c, out_dir, None) for c in missing], split, parallel):
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


def run_budgets(base: Config, todo: list[Config], out_dir: Path, redo, progress, parallel,
                with_results):  # fmt: skip
    """`run_comparison` over fine-tuning budgets: each budget a comparison of its own in
    <out>/epochs-E/ (its cells, table, report), every (plan, seed) trained once (budget_jobs).
    Returns {budget: table} (with `with_results`, {budget: (table, results)})."""
    budgets = sorted(base.budgets)
    stored, jobs = budget_jobs(todo, out_dir, budgets, redo)
    reused = sum(r is not None for by in stored.values() for r in by.values())
    if reused:
        print(f"reused {reused} stored cells from {out_dir}/epochs-*/runs (same config and code)")
    if jobs:
        split = load_split(base)
        bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
        try:
            for _ in _train_all(jobs, split, parallel):
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
        running = {pool.submit(train_cell, c, folder, split, threads, snaps): c
                   for c, folder, snaps in jobs}  # fmt: skip
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()


def tidy(results: list[dict]) -> pd.DataFrame:
    """One row per (cell, seed, split, protocol, metric), with the cell's facts."""
    rows = [
        {"cell": r.get("cell", r["plan"]), "plan": r["plan"],
         "item_input": r["config"].get("item_input", "text"), "seed": r["seed"], "split": split,
         "protocol": proto, "metric": metric, "value": value, "params": r["params"],
         "train_seconds": r["train_seconds"], "epochs": r.get("epochs", 0),
         "best_epoch": r.get("best_epoch", 0), "converged": r.get("converged", True)}
        for r in results
        for split in ("valid", "test")
        for proto, metrics in r[split].items()
        for metric, value in metrics.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


class NoCells(ConfigError):
    """A comparison folder with no stored cells; the message says how to make them."""


def load_cells(out_dir: Path, required: bool = False) -> list[dict]:
    """Every stored cell of a comparison folder, whatever code produced it (for reading only);
    with `required`, none is a one-line NoCells error that says how to train them."""
    cells = [json.loads(p.read_text()) for p in sorted((Path(out_dir) / "runs").glob("*.json"))]
    if required and not cells:
        mode = Path(out_dir).name
        raise NoCells(
            f"No cells are stored in {Path(out_dir) / 'runs'}: train them first with "
            f"`python -m iam_tutorial.lab.compare --mode {mode}` (or `make {mode}`)."
        )
    return cells


def summarize(table: pd.DataFrame, split="test", protocol="seen_excluded", metrics=REPORTED,
              n_layer: int | None = None) -> pd.DataFrame:  # fmt: skip
    """Per cell: mean ± std over seeds of each metric, seeds, epochs-to-best, convergence, params."""
    rows = table[(table.split == split) & (table.protocol == protocol) & table.metric.isin(metrics)]
    stats = rows.groupby(["cell", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    cells_ = stats.apply(  # one seed has no std: the mean alone, never a "± 0.0000"
        lambda r: f"{r['mean']:.4f}" + ("" if pd.isna(r["std"]) else f" ± {r['std']:.4f}"), axis=1
    )
    out = cells_.unstack("metric")[list(metrics)]
    one = rows[rows.metric == metrics[0]].groupby("cell", sort=False)
    out["seeds"] = one["seed"].count()
    trained = one["epochs"].max() > 0  # the popularity baseline has no epochs
    best = one["best_epoch"].agg(lambda e: "/".join(str(int(x)) for x in e))
    out["best epoch"] = best.where(trained, "—")
    out["converged"] = (
        one["converged"].agg(lambda c: f"{int(c.sum())}/{len(c)}").where(trained, "—")
    )
    out["params"] = one["params"].first()
    if n_layer:
        out.insert(0, "layers", [layers_of(c, n_layer) for c in out.index])
    return out


def decision_table(results: list[dict], table: pd.DataFrame, n_layer: int | None = None,
                   refs=("token", "control")) -> pd.DataFrame:  # fmt: skip
    """The results table that decides, one row per cell (plan x item input): test NDCG@10 and
    HR@10 mean ± std over seeds (seen items excluded); against each of `refs` on the same item
    input, and (`+id` cells) against the same plan on text only, the relative NDCG@10 change with
    its 95% CI (bootstrap over seeds and shared users), the verdict of both tests (stats.test_pair)
    and, where not separated, the minimum detectable effect; seeds, best epoch per seed,
    converged cells."""
    summary = summarize(table, n_layer=n_layer)
    summary = summary.loc[sorted(summary.index, key=cell_order)]
    keep = ["layers"] if n_layer else []
    out = summary[[*keep, "NDCG@10", "HR@10"]].copy()

    def versus(cell: str, other: str) -> str:
        text = text_plan(cell.removesuffix("+id"))
        c = compare_cells(results, cell, other) if text and other != cell else None
        return "—" if c is None else change_text(c)

    for ref in refs:
        out[f"vs {ref}"] = [
            versus(c, ref + ("+id" if c.endswith("+id") else "")) for c in out.index
        ]
    out["vs text only"] = [versus(c, c.removesuffix("+id")) if c.endswith("+id") else "—"
                           for c in out.index]  # fmt: skip
    return out.join(summary[["seeds", "best epoch", "converged"]])


def change_text(c) -> str:
    """'+5.5% [-24.6%, +44.9%] not separated (MDE 52%)': a pair's change, bootstrap CI, verdict and,
    where not separated, its minimum detectable effect (a dict or row with those keys)."""
    mde = f" (MDE {c['mde']:.0%})" if c["verdict"] == "not separated" else ""
    return f"{c['change']:+.1%} [{c['ci_low']:+.1%}, {c['ci_high']:+.1%}] {c['verdict']}{mde}"


def cell_order(cell: str) -> tuple[int, bool]:
    """Baselines first, then the plans in the order of plans.PLANS, text before text+id."""
    order = ["popularity", "sasrec", *PLANS]
    plan = cell.removesuffix("+id")
    return (order.index(plan) if plan in order else len(order), cell.endswith("+id"))


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub table of `frame` with its index as the first column (the README's tables)."""
    frame = frame.reset_index()
    rows = [list(map(str, frame.columns)), ["---"] * frame.shape[1]]
    rows += [[str(v) for v in row] for row in frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def layers_of(cell: str, n_layer: int, hatllm_split=None) -> str:
    plan = cell.removesuffix("+id")
    return describe(layer_plan(plan, n_layer, hatllm_split)) if plan in PLANS else "—"


def protocol_line(base: Config, table: pd.DataFrame, split="test", seen="seen_excluded") -> str:
    seeds = sorted(table.seed.unique().tolist())
    return f"{base.mode.upper()} · " + protocol(split, seen, users=_users(base), seeds=seeds,
                                                 epochs=f"≤ {base.max_epochs} (none stopped before "
                                                 f"{min(base.min_epochs, base.max_epochs)}), patience {base.patience}")  # fmt: skip


def _users(cfg: Config) -> str:
    return f"1..{cfg.n_users}" if cfg.n_users else "all 6,040"


def report(base: Config, results: list[dict], table: pd.DataFrame) -> str:
    """The printed report: protocol, the table per cell, then every verdict with its CI."""
    lines = [protocol_line(base, table), "test NDCG@10 and HR@10 mean ± std over seeds; vs X: "
             "relative NDCG@10 change [95% CI, bootstrap over seeds and shared users] verdict "
             "(both that CI and the paired t-interval on seed means must exclude zero; MDE: the "
             "smallest change detectable with 80% power)",
             decision_table(results, table, base.n_layer).to_string(), ""]  # fmt: skip
    lines.append(
        "every pair: relative NDCG@10 change, 95% CI of the bootstrap (ci_) and of the paired "
        "t-test (t_), verdict, minimum detectable effect at 80% power:"
    )
    lines.append(verdicts(results, PAIRS).to_string(index=False))
    sized = sizing(results)
    if len(sized):
        lines += ["", "sizing: variance components of each pair's per-user difference (seed, the part "
                  "of a user's that persists across seeds, residual) and the minimum detectable "
                  "relative change (80% power) of other designs:", sized.round(3).to_string(index=False)]  # fmt: skip
    lines += ["", "convergence per cell (best epoch and epochs run per seed; gain_after_decay: best "
              "validation NDCG@10 after the decay against best up to it):",
              convergence(results).to_string()]  # fmt: skip
    trained = table[table.epochs > 0]  # the popularity baseline trains no epochs
    flagged = trained[~trained.converged.astype(bool)][["cell", "seed"]].drop_duplicates()
    if len(flagged):
        lines.append(f"not converged (best epoch = last epoch): {len(flagged)} cells: "
                     + ", ".join(f"{c} seed {s}" for c, s in flagged.itertuples(index=False)))  # fmt: skip
    return "\n".join(lines)


@guarded
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.lab.compare", description=__doc__.splitlines()[0]
    )
    add_config_args(parser)
    parser.add_argument(
        "--plans",
        nargs="*",
        default=None,
        help=f"plans to compare (default: the preset's; any of {', '.join(COMPARE_PLANS)})",
    )
    parser.add_argument("--inputs", nargs="*", default=None, help="item inputs: text, text+id")
    parser.add_argument(
        "--seeds", nargs="*", type=int, default=None, help="seeds (default: the preset's)"
    )
    parser.add_argument(
        "--parallel", type=int, default=1, help="cells trained at once, in processes"
    )
    parser.add_argument("--redo", action="store_true", help="retrain cells already stored")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the cells stored in --out, whatever code made them")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/<mode>)"
    )
    args = parser.parse_args(argv)
    base = config_from_args(args, parser)
    out_dir = args.out or results_dir() / base.mode
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir} is a file; give a folder for the results.")
    if args.parallel < 1:
        fail(f"--parallel must be >= 1, got {args.parallel}.")
    start = time.perf_counter()
    if base.budgets:
        by_budget = None
        if args.report_only:  # the budgets that have cells (a run cut off has the shorter ones)
            stored = {b: load_cells(budget_dir(out_dir, b)) for b in sorted(base.budgets)}
            by_budget = {b: cells for b, cells in stored.items() if cells}
            if not by_budget:
                load_cells(budget_dir(out_dir, min(base.budgets)), required=True)
        if by_budget is None:
            seeds = args.seeds if args.seeds is not None else list(base.seeds)
            ran = run_comparison(base.mode, args.plans, seeds, out_dir, args.redo, inputs=args.inputs,
                                 parallel=args.parallel, with_results=True,
                                 **{k: v for k, v in dataclasses.asdict(base).items()
                                    if k not in ("mode", "seeds", "compare_plans", "item_inputs")})  # fmt: skip
            by_budget = {b: results for b, (_, results) in ran.items()}
        for b, results in by_budget.items():
            table, folder = tidy(results), budget_dir(out_dir, b)
            print(publish(budget_config(base, b), results, table, folder), "\n")
            write_figures(budget_config(base, b), results, table, folder)
        print(publish_budgets(base, by_budget, out_dir))
        print(f"wall: {time.perf_counter() - start:.0f} s")
        return
    if args.report_only:
        results = load_cells(out_dir, required=True)
        table = tidy(results)
        print(publish(base, results, table, out_dir))
        write_figures(base, results, table, out_dir)
        return
    changed = {
        k: v for k, v in dataclasses.asdict(base).items() if v != getattr(PRESETS[base.mode], k)
    }
    overrides = {
        k: v for k, v in changed.items() if k not in ("seeds", "compare_plans", "item_inputs")
    }
    seeds = args.seeds if args.seeds is not None else changed.get("seeds")
    plans = args.plans or changed.get("compare_plans")
    inputs = args.inputs or changed.get("item_inputs")
    table, results = run_comparison(base.mode, plans, seeds, out_dir, args.redo, inputs=inputs,
                                    parallel=args.parallel, with_results=True, **overrides)  # fmt: skip
    print(publish(base, results, table, out_dir))
    reference = results_dir() / "reference"
    if base.mode == "quick" and (reference / "comparison.csv").exists():
        differs = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none"
        print(f"\nthis run beside the committed reference (config fields changed here: {differs}; "
              "test NDCG@10, seen items excluded):")  # fmt: skip
        print(beside_reference(table, pd.read_csv(reference / "comparison.csv")).to_string())
    write_figures(base, results, table, out_dir)
    print(f"wall: {time.perf_counter() - start:.0f} s")


def publish(base: Config, results: list[dict], table: pd.DataFrame, out_dir: Path) -> str:
    """Write the full report to <out>/report.txt; return what fits a terminal: the protocol and
    one short row per cell (at most 100 columns), and where the full report is."""
    text = report(base, results, table)
    (out_dir / "report.txt").write_text(text + "\n")
    decided = decision_table(results, table)
    rows = [f"{'cell':<11}{'NDCG@10':<17}" + "".join(f"{c:<23}" for c in VERSUS)]
    for cell, row in decided.iterrows():
        rows.append(
            f"{cell:<11}{row['NDCG@10']:<17}" + "".join(f"{short(row[c]):<22} " for c in VERSUS)
        )
    head = textwrap.wrap(protocol_line(base, table), 100)
    where = f"full report (HR@10, t-intervals, MDEs, convergence): {out_dir / 'report.txt'}"
    return "\n".join([*head, *(r.rstrip() for r in rows), LEGEND, where])


VERSUS = ("vs token", "vs control", "vs text only")


def budget_table(by_budget: dict[int, list[dict]], ref: str = "token") -> pd.DataFrame:
    """How each plan's effect moves with fine-tuning: per budget and cell, test NDCG@10 mean ±
    std over seeds and, against `ref`, the relative change, both CIs, verdict and MDE."""
    rows = []
    for budget, results in sorted(by_budget.items()):
        summary = summarize(tidy(results))
        for cell in sorted(summary.index, key=cell_order):
            c = compare_cells(results, cell, ref) if text_plan(cell) and cell != ref else None
            rows.append({"epochs": budget, "cell": cell, "NDCG@10": summary.loc[cell, "NDCG@10"],
                         "HR@10": summary.loc[cell, "HR@10"], "seeds": summary.loc[cell, "seeds"],
                         **({k: c[k] for k in ("change", "ci_low", "ci_high", "t_low", "t_high",
                                               "verdict", "mde")} if c else {})})  # fmt: skip
    return pd.DataFrame(rows)


def budget_markdown(by_budget: dict[int, list[dict]], ref: str = "token") -> str:
    """The README's table over budgets (between its `llm-table` markers): per budget and cell,
    NDCG@10 and HR@10 mean ± std over seeds, the change vs `ref` (change_text) and the seeds."""
    table = budget_table(by_budget, ref).set_index("epochs")
    vs = [change_text(row) if isinstance(row.get("verdict"), str) else "—"
          for _, row in table.iterrows()]  # fmt: skip
    return to_markdown(
        table.assign(**{f"vs {ref}": vs})[["cell", "NDCG@10", "HR@10", f"vs {ref}", "seeds"]]
    )


def publish_budgets(base: Config, by_budget: dict[int, list[dict]], out_dir: Path) -> str:
    """<out>/budgets.txt and budgets.png: every budget's cells and changes vs token in one table
    and one figure; returns the table as printed."""
    from iam_tutorial.viz import plot_budgets, save_fig

    table = budget_table(by_budget)
    shown = table.copy()
    for col in ("change", "ci_low", "ci_high", "t_low", "t_high", "mde"):
        if col in shown:
            shown[col] = shown[col].map(lambda x: "" if pd.isna(x) else f"{x:+.1%}")
    head = (f"{base.mode.upper()} over fine-tuning budgets {', '.join(map(str, sorted(by_budget)))} "
            "epochs (constant rate; each shorter budget is the start of the longest run): test "
            "NDCG@10 and HR@10 mean ± std over seeds, change of NDCG@10 vs token with its 95% CIs "
            "(bootstrap over seeds and shared users; paired t), verdict, minimum detectable effect "
            "(80% power). Per budget: epochs-E/report.txt.")  # fmt: skip
    text = "\n".join([*textwrap.wrap(head, 100), shown.to_string(index=False)])
    (Path(out_dir) / "budgets.txt").write_text(text + "\n")
    tested = table.dropna(subset=["change"]) if "change" in table else table.iloc[:0]
    if len(tested):
        print("figure:", save_fig(plot_budgets(tested, f"{base.mode}: change vs token by budget"),
                                  "budgets", folder=out_dir))  # fmt: skip
    return text


def short(entry: str) -> str:
    """'+5.5% [-24.6%, +44.9%] not separated (MDE 52%)' -> '+5.5% [-25, +45] n.s.';
    '+9.0% [+2.1%, +15.0%] no verdict (1 seed)' -> '+9.0% [+2, +15] 1 seed'."""
    match = re.fullmatch(
        r"([+-][\d.]+%) \[([+-][\d.]+)%, ([+-][\d.]+)%\] (\w[\w ]*?)( \(.*\))?", entry
    )
    if not match:
        return entry
    change, low, high, verdict, why = match.groups()
    verdict = SHORT.get(verdict, SHORT.get(verdict + (why or ""), verdict))
    return f"{change} [{float(low):+.0f}, {float(high):+.0f}] {verdict}"


# Short verdicts of the terminal table, and the legend printed under it.
SHORT = {"not separated": "n.s.", "no verdict (1 seed)": "1 seed"}
LEGEND = "n.s.: not separated; 1 seed: no verdict (a verdict needs the paired t-interval: 2+ seeds)"


def write_figures(base: Config, results: list[dict], table: pd.DataFrame, out_dir: Path) -> None:
    """The comparison's figures: metrics per cell, and the forest plot of every tested pair."""
    from iam_tutorial.viz import plot_comparison, plot_forest, save_fig

    print("figure:", save_fig(plot_comparison(table, protocol_line(base, table)), "comparison",
                              folder=out_dir))  # fmt: skip
    tests = pair_tests(results)
    if len(tests):
        print("figure:", save_fig(plot_forest(tests, f"{base.mode}: each pair's change"),
                                  "forest", folder=out_dir))  # fmt: skip


def beside_reference(
    table: pd.DataFrame, reference: pd.DataFrame, metric="NDCG@10"
) -> pd.DataFrame:
    """Per cell: this run's value, the reference's same seed, and the reference mean ± std."""

    def pick(t):
        return t[(t.split == "test") & (t.protocol == "seen_excluded") & (t.metric == metric)]

    ours, ref = pick(table), pick(reference)
    rows = []
    for (cell, seed), value in ours.groupby(["cell", "seed"], sort=False)["value"].first().items():
        same = ref[(ref.cell == cell) & (ref.seed == seed)].value
        all_ = ref[ref.cell == cell].value
        rows.append({"cell": cell, "seed": seed, f"this run {metric}": round(value, 4),
                     "reference, same seed": round(same.iloc[0], 4) if len(same) else None,
                     "reference mean ± std": f"{all_.mean():.4f} ± {all_.std():.4f} ({len(all_)} seeds)"
                     if len(all_) else "—"})  # fmt: skip
    return pd.DataFrame(rows).set_index("cell")


if __name__ == "__main__":
    main()
