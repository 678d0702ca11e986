"""Item-aware vs token-level attention: every plan x seed on identical data, budget and seeds.

  python -m iam_tutorial.compare --mode quick

Each (plan, seed) cell is written to results/<mode>/runs/ as soon as it finishes and is skipped on
a re-run while its config is unchanged (`--redo` retrains), so an interrupted run loses nothing.
The tidy table (plan, seed, split, protocol, metric, value, params, train_seconds) goes to
results/<mode>/comparison.csv, and the mean +- std per plan is printed with its protocol.
"""

import argparse
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from iam_tutorial.config import Config, get_config
from iam_tutorial.data.movielens import leave_one_out, load_sequences
from iam_tutorial.metrics import PROTOCOL
from iam_tutorial.model import layer_plan
from iam_tutorial.paths import results_dir
from iam_tutorial.train import run
from iam_tutorial.viz import save_fig

COMPARE_PLANS = ("popularity", "sasrec", "token", "control", "hatllm", "iam", "iam-alt")
REPORTED = ("HR@10", "NDCG@10")


def fingerprint(cfg: Config) -> str:
    """A short hash of the whole config: a stored cell is reused only if it matches."""
    text = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def run_cell(cfg: Config, out_dir: Path, redo: bool = False, split=None, progress=True) -> dict:
    """Results of one (plan, seed): read back if stored with the same config, else trained."""
    path = out_dir / "runs" / f"{cfg.plan}_seed{cfg.seed}.json"
    if path.exists() and not redo:
        stored = json.loads(path.read_text())
        if stored.get("fingerprint") == fingerprint(cfg):
            return stored
    text = json.dumps({**run(cfg, progress=progress, split=split), "fingerprint": fingerprint(cfg)},
                      indent=1, sort_keys=True)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cell
    return json.loads(text)  # exactly what a later run reads back


def tidy(results: list[dict]) -> pd.DataFrame:
    """One row per (plan, seed, split, protocol, metric)."""
    rows = [
        {"plan": r["plan"], "seed": r["seed"], "split": split, "protocol": protocol,
         "metric": metric, "value": value, "params": r["params"], "train_seconds": r["train_seconds"]}
        for r in results
        for split in ("valid", "test")
        for protocol, metrics in r[split].items()
        for metric, value in metrics.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def distinct_plans(plans, cfg: Config, log=print) -> list[str]:
    """`plans` less those whose layers equal an earlier plan's at this depth, which would only
    repeat its numbers (at 2 blocks, hatllm's (1, 0, 1) split and iam-alt are both intra, inter)."""
    kept, seen = [], {}  # seen: layers -> plan
    for plan in plans:
        if plan in ("popularity", "sasrec"):  # baselines have no mask plan to compare
            kept.append(plan)
            continue
        layers = tuple(layer_plan(plan, cfg.n_layer, cfg.hatllm_split))
        if layers in seen:
            log(
                f"note: {plan} = {seen[layers]} at n_layer={cfg.n_layer} (same layers): trained once"
            )
            continue
        seen[layers] = plan
        kept.append(plan)
    return kept


def run_comparison(
    mode: str | None = None,
    plans=COMPARE_PLANS,
    seeds=None,
    out_dir: Path | None = None,
    redo: bool = False,
    progress: bool = True,
    **overrides,
) -> pd.DataFrame:
    """Train and evaluate every plan for every seed (seed-major, so each finished seed is
    complete); returns the tidy table and writes it to <out_dir>/comparison.csv."""
    base = get_config(mode, **overrides)
    out_dir = Path(out_dir or results_dir() / base.mode)
    plans = distinct_plans(plans, base)
    split = leave_one_out(load_sequences(base.n_users))  # loaded once, shared by every cell
    results = [
        run_cell(dataclasses.replace(base, plan=plan, seed=seed), out_dir, redo, split, progress)
        for seed in (seeds if seeds is not None else base.seeds)
        for plan in plans
    ]
    table = tidy(results)
    table.to_csv(out_dir / "comparison.csv", index=False, float_format="%.6f")
    return table


def summarize(table: pd.DataFrame, split="test", protocol="seen_excluded", metrics=REPORTED):
    """Mean and std over seeds per plan, as 'mean +- std' strings, plans in table order."""
    rows = table[(table.split == split) & (table.protocol == protocol) & table.metric.isin(metrics)]
    stats = rows.groupby(["plan", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    cells = stats.apply(
        lambda r: f"{r['mean']:.4f} ± {0 if pd.isna(r['std']) else r['std']:.4f}", axis=1
    )
    out = cells.unstack("metric")[list(metrics)]
    out["seeds"] = stats["count"].unstack("metric").iloc[:, 0]
    out["params"] = rows.groupby("plan", sort=False)["params"].first()
    out["train s/run"] = (
        rows.groupby("plan", sort=False)["train_seconds"].mean().round(0).astype(int)
    )
    return out


def relative_change(table: pd.DataFrame, plan: str, reference: str, metric="NDCG@10",
                    split="test", protocol="seen_excluded") -> pd.Series:  # fmt: skip
    """Per-seed relative change (plan / reference - 1) of `metric`, paired by seed."""
    rows = table[(table.split == split) & (table.protocol == protocol) & (table.metric == metric)]
    values = rows.pivot(index="seed", columns="plan", values="value")
    return values[plan] / values[reference] - 1


def protocol_line(mode: str, table: pd.DataFrame, split="test") -> str:
    seeds = sorted(table.seed.unique().tolist())
    return (f"{mode.upper()} · {split} · {PROTOCOL}, seen items excluded · "
            f"mean ± std over seeds {seeds}")  # fmt: skip


def plot_comparison(table: pd.DataFrame, title: str = "", split="test", protocol="seen_excluded"):
    """HR@10 and NDCG@10 per plan: every seed as a dot, mean +- std as a bar."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = table[(table.split == split) & (table.protocol == protocol)]
    fig, axes = plt.subplots(1, len(REPORTED), figsize=(5 * len(REPORTED), 3.6), sharey=False)
    for ax, metric in zip(axes, REPORTED, strict=True):
        data = rows[rows.metric == metric]
        sns.barplot(data=data, x="plan", y="value", errorbar="sd", color="0.85", ax=ax)
        sns.stripplot(data=data, x="plan", y="value", hue="seed", palette="deep", size=5, ax=ax)
        ax.set(title=metric, xlabel="", ylabel=metric)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default=None, help="quick (CPU) or full (one GPU)")
    parser.add_argument("--plans", nargs="*", default=list(COMPARE_PLANS))
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--redo", action="store_true", help="retrain cells already stored")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    table = run_comparison(args.mode, args.plans, args.seeds, args.out, args.redo)
    mode = get_config(args.mode).mode
    print(protocol_line(mode, table))
    print(summarize(table).to_string())
    for plan in ("iam", "hatllm"):
        for reference in ("token", "control"):
            if {plan, reference} <= set(table.plan):
                change = relative_change(table, plan, reference)
                print(
                    f"{plan} vs {reference}: NDCG@10 {change.mean():+.1%} ± {change.std():.1%} (per-seed)"
                )
    print(
        "figure:",
        save_fig(plot_comparison(table, protocol_line(mode, table)), f"04_comparison_{mode}"),
    )


if __name__ == "__main__":
    main()
