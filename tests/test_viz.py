"""Plots: smoke tests on the Agg backend; tick labels follow item spans or tokens."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from iam_tutorial.masks import allow_mask  # noqa: E402
from iam_tutorial.plans import layer_plan  # noqa: E402
from iam_tutorial.serialize import GLOBAL, PADDING  # noqa: E402
from iam_tutorial.viz import (  # noqa: E402
    item_spans,
    plot_attention,
    plot_mask,
    plot_mask_and_attention,
    plot_masks,
    plot_plan,
    plot_plans,
    save_fig,
)

INDEX = torch.tensor([GLOBAL, 0, 0, 1, 1, 1, 2, 2, PADDING, PADDING])
SPANS = ["BOS", "i0", "i1", "i2", "PAD"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def labels(ax, axis="x"):
    return [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]


def test_item_spans():
    assert item_spans(INDEX) == [
        (0, 1, "BOS"),
        (1, 3, "i0"),
        (3, 6, "i1"),
        (6, 8, "i2"),
        (8, 10, "PAD"),
    ]


def test_plot_mask_labels_item_spans_or_tokens():
    allow = allow_mask("intra", INDEX[None])[0]
    ax = plot_mask(allow, INDEX, title="intra")
    assert labels(ax) == SPANS and labels(ax, "y") == SPANS
    assert ax.get_title() == "intra"
    assert len(ax.lines) == 2 * (len(SPANS) - 1)  # a horizontal and a vertical line per boundary
    tokens = [f"t{i}" for i in range(len(INDEX))]
    assert labels(plot_mask(allow, INDEX, tokens=tokens)) == tokens


def test_plot_attention_averages_heads_and_checks_shape():
    attn = torch.softmax(torch.randn(2, 10, 10), -1)
    fig, ax = plt.subplots()
    assert plot_attention(attn, INDEX, ax=ax) is ax
    assert labels(ax, "y") == SPANS
    assert len(fig.axes) == 2  # the heatmap and its colour bar
    with pytest.raises(ValueError, match="one row of a batch"):
        plot_attention(attn[None], INDEX)


def test_multi_panel_figures():
    masks = {kind: allow_mask(kind, INDEX[None])[0] for kind in ("causal", "intra", "inter")}
    fig = plot_masks(masks, INDEX)
    assert [ax.get_title() for ax in fig.axes] == list(masks)
    fig = plot_mask_and_attention(masks["inter"], torch.rand(10, 10), INDEX, title="layer 1")
    assert len(fig.axes) == 3 and labels(fig.axes[0]) == SPANS


def test_plot_plan_one_row_per_block_input_at_the_bottom():
    ax = plot_plan(layer_plan("hatllm", 4))
    assert labels(ax, "y") == ["block 3", "block 2", "block 1", "block 0"]
    assert [t.get_text() for t in ax.texts] == ["inter", "causal", "causal", "intra"]
    ax = plot_plan(layer_plan("iam", 2))
    assert labels(ax) == ["attn 1", "attn 2"] and len(ax.texts) == 4
    fig = plot_plans({p: layer_plan(p, 4) for p in ("token", "iam", "iam-alt")})
    assert [ax.get_title() for ax in fig.axes] == ["token", "iam", "iam-alt"]


def test_save_fig_writes_png(tmp_path, monkeypatch):
    monkeypatch.setenv("IAM_FIGURES_DIR", str(tmp_path))
    path = save_fig(plot_plan(layer_plan("iam", 2)).figure, "plan")
    assert path == tmp_path / "plan.png" and path.read_bytes()[:4] == b"\x89PNG"
