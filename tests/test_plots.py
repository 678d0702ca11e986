"""The lab's figures draw every verdict, a one-seed pair (no verdict) included, on Agg."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from iam_tutorial.lab.plots import plot_budgets, plot_forest  # noqa: E402

PAIRS = pd.DataFrame(
    {"plan": ["iam", "hatllm", "iam-heads"], "vs": ["token"] * 3, "change": [0.2, -0.1, 0.05],
     "ci_low": [0.1, -0.3, 0.01], "ci_high": [0.3, 0.1, 0.09], "t_low": [0.05, -0.2, float("nan")],
     "t_high": [0.35, 0.0, float("nan")],
     "verdict": ["better", "not separated", "no verdict (1 seed)"]}
)  # fmt: skip


def test_forest_names_each_verdict_it_draws():
    fig = plot_forest(PAIRS, "title")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"better", "not separated", "no verdict (1 seed)"} <= set(labels)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0] == "iam vs token"


def test_budgets_draw_one_line_per_cell():
    table = pd.concat([PAIRS.assign(epochs=e, cell=PAIRS.plan) for e in (1, 2)])
    fig = plot_budgets(table, "title")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:3] == ["iam vs token", "hatllm vs token", "iam-heads vs token"]
