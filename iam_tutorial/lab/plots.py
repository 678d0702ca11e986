"""The comparison's figures: metrics per cell, the forest plot of every pair, effects by budget.

Lab figures (report.py writes them beside each report; notebook 04 draws them again): every seed
as a dot, each pair's bootstrap CI (thick) and paired t-interval (thin), verdicts in colour.
"""

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.lines import Line2D


def plot_comparison(
    table, title: str = "", split="test", protocol="seen_excluded", metrics=("HR@10", "NDCG@10")
):
    """HR@10 and NDCG@10 per cell: every seed as a dot, mean +- std as a bar."""
    rows = table[(table.split == split) & (table.protocol == protocol)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8))
    for ax, metric in zip(axes, metrics, strict=True):
        data = rows[rows.metric == metric]
        sns.barplot(data=data, x="cell", y="value", errorbar="sd", color="0.85", ax=ax)
        sns.stripplot(
            data=data,
            x="cell",
            y="value",
            hue="seed",
            palette="deep",
            size=4,
            jitter=False,
            dodge=True,
            ax=ax,
        )
        ax.set(title=metric, xlabel="", ylabel=metric)
        ax.tick_params(axis="x", rotation=40)
        ax.get_legend().remove()
    handles, labels = axes[-1].get_legend_handles_labels()  # one legend, beside the bars
    axes[-1].legend(
        handles,
        labels,
        title="seed",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_forest(tests, title: str = "", level: str = "95% "):
    """The decision figure: per pair (stats.pair_tests rows), the relative NDCG@10 change with its
    bootstrap CI (thick) and paired t-interval (thin), coloured by verdict, and the zero line. A
    `label` column names the rows (else "plan vs ref"); `level` names the intervals' level in the
    legend ("" where rows differ, their labels saying it)."""
    colours = {"better": "C2", "worse": "C3", "not separated": "0.35"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(tests) + 1.2))
    for y, row in enumerate(tests.itertuples()):
        c = colours.get(row.verdict, "0.7")  # no verdict (1 seed): light grey
        ax.plot([100 * row.t_low, 100 * row.t_high], [y, y], color=c, lw=1)
        ax.plot([100 * row.ci_low, 100 * row.ci_high], [y, y], color=c, lw=4, alpha=0.6)
        ax.plot(100 * row.change, y, "o", color=c)
    ax.axvline(0, color="k", lw=0.8)
    labels = (
        tests["label"] if "label" in tests else [f"{r.plan} vs {r.vs}" for r in tests.itertuples()]
    )
    ax.set_yticks(range(len(tests)), list(labels))
    ax.invert_yaxis()
    ax.set(xlabel="relative change of test NDCG@10 (%)", title=title)
    shown = colours | {v: "0.7" for v in tests.verdict if v not in colours}
    handles = [Line2D([], [], color=c, marker="o", label=v) for v, c in shown.items()]
    handles += [
        Line2D([], [], color="0.35", lw=4, alpha=0.6, label=f"bootstrap {level}CI"),
        Line2D([], [], color="0.35", lw=1, label=f"paired t {level}CI"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def plot_budgets(tests, title: str = ""):
    """How each plan's effect moves with fine-tuning (compare.budget_table rows): its relative
    NDCG@10 change vs token per budget, with the bootstrap CI (thick) and paired t-interval (thin),
    filled where a verdict was reached, and the zero line."""
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    cells = list(dict.fromkeys(tests.cell))
    for i, cell in enumerate(cells):
        rows = tests[tests.cell == cell]
        x = [
            list(sorted(set(tests.epochs))).index(e) + 0.08 * (i - (len(cells) - 1) / 2)
            for e in rows.epochs
        ]
        c = f"C{i}"
        ax.vlines(x, 100 * rows.t_low, 100 * rows.t_high, color=c, lw=1)
        ax.vlines(x, 100 * rows.ci_low, 100 * rows.ci_high, color=c, lw=4, alpha=0.5)
        ax.plot(x, 100 * rows.change, "-", color=c, lw=1, alpha=0.6)
        for xi, (_, r) in zip(x, rows.iterrows(), strict=True):
            decided = r.verdict in ("better", "worse")
            ax.plot(xi, 100 * r.change, "o", color=c, mfc=c if decided else "white")
        ax.plot([], [], "o-", color=c, label=f"{cell} vs token")
    budgets = sorted(set(tests.epochs))
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
    ax.set(
        xlabel="fine-tuning budget (epochs)",
        ylabel="relative change of test NDCG@10 (%)",
        title=title,
    )
    handles = ax.get_legend_handles_labels()[0] + [
        Line2D([], [], color="0.4", lw=4, alpha=0.5, label="bootstrap 95% CI (seeds and users)"),
        Line2D([], [], color="0.4", lw=1, label="paired t 95% CI (seed means)"),
        Line2D([], [], color="0.4", marker="o", mfc="white", ls="", label="open dot: no verdict"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig
