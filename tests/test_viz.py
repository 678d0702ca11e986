"""Plots on the Agg backend: a golden mask-code grid, legends, colour bars and scales stated in
titles, tick labels that follow item spans or tokens, grids, plans and epoch windows."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from iam_tutorial.masks import allow_mask  # noqa: E402
from iam_tutorial.plans import layer_plan  # noqa: E402
from iam_tutorial.serialize import GLOBAL, PADDING  # noqa: E402
from iam_tutorial.viz import (  # noqa: E402
    LOG_FLOOR,
    MASK_LEGEND,
    attention_values,
    item_spans,
    mask_codes,
    mask_legend_handles,
    plot_attention,
    plot_attention_grid,
    plot_mask,
    plot_mask_and_attention,
    plot_masks,
    plot_plan,
    plot_plans,
    plot_windows,
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


def test_mask_codes_golden_grid():
    # BOS, item 0 (2 tokens), item 1, PAD; intra: own item or BOS, causal; PAD row/column code 3.
    index = torch.tensor([GLOBAL, 0, 0, 1, PADDING])
    codes = mask_codes(allow_mask("intra", index[None])[0], index)
    assert codes.tolist() == [
        [2, 0, 0, 0, 3],
        [2, 1, 0, 0, 3],
        [2, 1, 1, 0, 3],
        [2, 0, 0, 1, 3],
        [3, 3, 3, 3, 3],
    ]
    # A head split: half the heads intra, half inter; only BOS is allowed by both (code 4: some).
    split = mask_codes(allow_mask("intra|inter", index[None])[0], index)  # (group query key)
    assert split.tolist() == [
        [2, 0, 0, 0, 3],
        [2, 4, 0, 0, 3],
        [2, 4, 4, 0, 3],
        [2, 4, 4, 4, 3],
        [3, 3, 3, 3, 3],
    ]
    with pytest.raises(ValueError, match="one row of a batch"):
        mask_codes(allow_mask("intra", index[None]), index[:3])


def test_mask_figures_have_a_legend_naming_what_is_drawn():
    ax = plot_mask(allow_mask("causal", INDEX[None])[0], INDEX)
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names == ["blocked", "may attend", "may attend: BOS key", "PAD (query or key)",
                     "item boundary"]  # fmt: skip
    assert plot_mask(allow_mask("inter", INDEX[None])[0], INDEX, legend=False).get_legend() is None
    fig = plot_masks({"reach": allow_mask("causal", INDEX[None])[0]}, INDEX, labels={1: "reaches"})
    assert "reaches" in [t.get_text() for t in fig.legends[0].get_texts()]
    handles = mask_legend_handles()
    assert len(handles) == len(MASK_LEGEND) + 1


def test_attention_scales_colour_bar_and_title():
    attn = torch.softmax(torch.randn(10, 10), -1)
    allow = allow_mask("causal", INDEX[None])[0]
    ax = plot_attention(attn, INDEX, allow=allow, title="t")
    assert ax.get_title() == "t\ncolour: log scale"
    assert ax.figure.axes[1].get_ylabel() == "attention weight (log scale)"
    row = attention_values(attn, INDEX, "row")
    assert np.allclose(row.max(1), 1.0)
    assert attention_values(torch.zeros(10, 10), INDEX, "log").min() == LOG_FLOOR
    with pytest.raises(ValueError, match="Unknown scale"):
        plot_attention(attn, INDEX, scale="sqrt")
    mesh = ax.collections[0]
    assert mesh.get_array().mask.sum() == int((mask_codes(allow, INDEX) % 3 == 0).sum())


def test_attention_grid_one_colour_bar_scale_in_title():
    panels = {
        f"p{i}": (torch.rand(2, 10, 10), allow_mask("inter", INDEX[None])[0]) for i in range(4)
    }
    fig = plot_attention_grid(panels, INDEX, ncols=3, scale="row")
    assert [ax.get_title() for ax in fig.axes[:4]] == list(panels)
    assert fig.axes[-1].get_ylabel() == "weight / its row's largest"  # the one colour bar
    assert len(fig.axes) == 6 + 1 and "colour: weight / row max" in fig._suptitle.get_text()
    assert fig.axes[1].get_ylabel() == "" and fig.axes[3].get_ylabel() != ""  # outer labels only


def test_plot_plan_head_split_and_windows():
    ax = plot_plan(layer_plan("iam-heads", 2))
    assert [t.get_text() for t in ax.texts] == ["intra|inter"] * 2
    with pytest.raises(ValueError, match="Unknown mask kinds"):
        plot_plan([("sideways",)])
    windows = {"epoch 0": [[0, 1, 2], [2, 3, 4, 5], [5, 6]], "epoch 1": [[0, 1, 2, 3, 4, 5, 6]]}
    ax = plot_windows(windows, 7)
    assert len(ax.collections) == 4  # one bar per window
    assert [t.get_text() for t in ax.texts] == ["2", "3", "1", "6"]  # transitions per window


def test_figures_default_to_an_untracked_folder(monkeypatch):
    from iam_tutorial.paths import FIGURES_DIR, figures_dir

    monkeypatch.delenv("IAM_FIGURES_DIR", raising=False)
    assert figures_dir() == (FIGURES_DIR / "yours").resolve()
    ignored = (FIGURES_DIR.parent / ".gitignore").read_text()
    assert "/figures/yours/" in ignored.splitlines()
