"""The report of a comparison: tables per cell, every pair's verdict, budgets, figures.

Verdicts come from stats.py: a 95% CI of the relative NDCG@10 change from a bootstrap over seeds
and shared users and the paired t-interval on seed means, "better"/"worse" only when both exclude
zero; one seed has no t-interval and so no verdict. `publish` writes <out>/report.txt and returns
what fits a terminal.
"""

import re
import textwrap
from pathlib import Path

import pandas as pd

from iam_tutorial.config import Config
from iam_tutorial.lab.stats import (
    PAIRS,
    TEST_COLUMNS,
    compare_cells,
    convergence,
    pair_tests,
    sizing,
    verdicts,
)
from iam_tutorial.lab.store import text_plan, tidy
from iam_tutorial.metrics import protocol
from iam_tutorial.plans import PLANS, describe, layer_plan

REPORTED = ("HR@10", "NDCG@10")


def summarize(
    table: pd.DataFrame,
    split="test",
    protocol="seen_excluded",
    metrics=REPORTED,
    n_layer: int | None = None,
) -> pd.DataFrame:
    """Per cell: mean ± std over seeds of each metric, seeds, epochs-to-best, convergence,
    params."""
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


def decision_table(
    results: list[dict], table: pd.DataFrame, n_layer: int | None = None, refs=("token", "control")
) -> pd.DataFrame:
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
    out["vs text only"] = [
        versus(c, c.removesuffix("+id")) if c.endswith("+id") else "—" for c in out.index
    ]
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
    return f"{base.mode.upper()} · " + protocol(
        split,
        seen,
        users=_users(base),
        seeds=seeds,
        epochs=f"≤ {base.max_epochs} (none stopped before "
        f"{min(base.min_epochs, base.max_epochs)}), patience {base.patience}",
    )


def _users(cfg: Config) -> str:
    return f"1..{cfg.n_users}" if cfg.n_users else "all 6,040"


def report(base: Config, results: list[dict], table: pd.DataFrame) -> str:
    """The printed report: protocol, the table per cell, then every verdict with its CI."""
    lines = [
        protocol_line(base, table),
        "test NDCG@10 and HR@10 mean ± std over seeds; vs X: "
        "relative NDCG@10 change [95% CI, bootstrap over seeds and shared users] verdict "
        "(both that CI and the paired t-interval on seed means must exclude zero; MDE: the "
        "smallest change detectable with 80% power)",
        decision_table(results, table, base.n_layer).to_string(),
        "",
    ]
    lines.append(
        "every pair: relative NDCG@10 change, 95% CI of the bootstrap (ci_) and of the paired "
        "t-test (t_), verdict, minimum detectable effect at 80% power:"
    )
    lines.append(verdicts(results, PAIRS).to_string(index=False))
    sized = sizing(results)
    if len(sized):
        lines += [
            "",
            "sizing: variance components of each pair's per-user difference (seed, the part "
            "of a user's that persists across seeds, residual) and the minimum detectable "
            "relative change (80% power) of other designs:",
            sized.round(3).to_string(index=False),
        ]
    lines += [
        "",
        "convergence per cell (best epoch and epochs run per seed; gain_after_decay: best "
        "validation NDCG@10 after the decay against best up to it):",
        convergence(results).to_string(),
    ]
    trained = table[table.epochs > 0]  # the popularity baseline trains no epochs
    flagged = trained[~trained.converged.astype(bool)][["cell", "seed"]].drop_duplicates()
    if len(flagged):
        lines.append(
            f"not converged (best epoch = last epoch): {len(flagged)} cells: "
            + ", ".join(f"{c} seed {s}" for c, s in flagged.itertuples(index=False))
        )
    return "\n".join(lines)


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
            rows.append(
                {
                    "epochs": budget,
                    "cell": cell,
                    "NDCG@10": summary.loc[cell, "NDCG@10"],
                    "HR@10": summary.loc[cell, "HR@10"],
                    "seeds": summary.loc[cell, "seeds"],
                    **({k: c[k] for k in TEST_COLUMNS} if c else {}),
                }
            )
    return pd.DataFrame(rows)


def budget_markdown(by_budget: dict[int, list[dict]], ref: str = "token") -> str:
    """The README's table over budgets (between its `llm-table` markers): per budget and cell,
    NDCG@10 and HR@10 mean ± std over seeds, the change vs `ref` (change_text) and the seeds."""
    table = budget_table(by_budget, ref).set_index("epochs")
    vs = [
        change_text(row) if isinstance(row.get("verdict"), str) else "—"
        for _, row in table.iterrows()
    ]
    return to_markdown(
        table.assign(**{f"vs {ref}": vs})[["cell", "NDCG@10", "HR@10", f"vs {ref}", "seeds"]]
    )


def publish_budgets(base: Config, by_budget: dict[int, list[dict]], out_dir: Path) -> str:
    """<out>/budgets.txt and budgets.png: every budget's cells and changes vs token in one table
    and one figure; returns the table as printed."""
    from iam_tutorial.lab.plots import plot_budgets
    from iam_tutorial.viz import save_fig

    table = budget_table(by_budget)
    shown = table.copy()
    for col in ("change", "ci_low", "ci_high", "t_low", "t_high", "mde"):
        if col in shown:
            shown[col] = shown[col].map(lambda x: "" if pd.isna(x) else f"{x:+.1%}")
    head = (
        f"{base.mode.upper()} over fine-tuning budgets {', '.join(map(str, sorted(by_budget)))} "
        "epochs (constant rate; each shorter budget is the start of the longest run): test "
        "NDCG@10 and HR@10 mean ± std over seeds, change of NDCG@10 vs token with its 95% CIs "
        "(bootstrap over seeds and shared users; paired t), verdict, minimum detectable effect "
        "(80% power). Per budget: epochs-E/report.txt."
    )
    text = "\n".join([*textwrap.wrap(head, 100), shown.to_string(index=False)])
    (Path(out_dir) / "budgets.txt").write_text(text + "\n")
    tested = table.dropna(subset=["change"]) if "change" in table else table.iloc[:0]
    if len(tested):
        print(
            "figure:",
            save_fig(
                plot_budgets(tested, f"{base.mode}: change vs token by budget"),
                "budgets",
                folder=out_dir,
            ),
        )
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
    from iam_tutorial.lab.plots import plot_comparison, plot_forest
    from iam_tutorial.viz import save_fig

    print(
        "figure:",
        save_fig(plot_comparison(table, protocol_line(base, table)), "comparison", folder=out_dir),
    )
    tests = pair_tests(results)
    if len(tests):
        print(
            "figure:",
            save_fig(
                plot_forest(tests, f"{base.mode}: each pair's change"), "forest", folder=out_dir
            ),
        )


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
        rows.append(
            {
                "cell": cell,
                "seed": seed,
                f"this run {metric}": round(value, 4),
                "reference, same seed": round(same.iloc[0], 4) if len(same) else None,
                "reference mean ± std": f"{all_.mean():.4f} ± {all_.std():.4f} ({len(all_)} seeds)"
                if len(all_)
                else "—",
            }
        )
    return pd.DataFrame(rows).set_index("cell")
