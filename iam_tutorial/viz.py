"""Plots for the notebooks: masks, attention maps, layer plans; `save_fig` writes PNGs to figures/.

Every heatmap is drawn query by key (a row attends to the columns) with the item spans of the
serialized history marked on both axes, so a mask and the attention it allows line up cell for cell.
Notebook 02 draws each of them; notebook 04 reuses them on trained models.
"""

# Axes: head, query (rows of a mask), key (columns), token, block, sublayer

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import ListedColormap

from iam_tutorial.masks import MASK_KINDS
from iam_tutorial.paths import figures_dir
from iam_tutorial.serialize import GLOBAL, PADDING

KIND_COLORS = {"causal": "#a6a6a6", "intra": "#1b9e77", "inter": "#d95f02"}
MASK_CMAP = ListedColormap(["#f2f2f2", "#31688e"])  # 0 = blocked, 1 = may attend


def save_fig(fig: "matplotlib.figure.Figure", name: str, dpi: int = 120, folder=None):
    """Save `fig` as <folder>/<name>.png, by default figures/ ($IAM_FIGURES_DIR overrides it:
    tests and nbval write there, so they never touch the README's figures). Metadata is
    stripped, so reruns give identical files."""
    folder = Path(folder or figures_dir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def _numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def item_spans(item_index) -> list[tuple[int, int, str]]:
    """(start, stop, label) of each run of equal item index: 'BOS', 'i0', 'i1', ..., 'PAD'."""
    index = [int(i) for i in _numpy(item_index).ravel()]
    spans, start = [], 0
    for t in range(1, len(index) + 1):
        if t == len(index) or index[t] != index[start]:
            label = {GLOBAL: "BOS", PADDING: "PAD"}.get(index[start], f"i{index[start]}")
            spans.append((start, t, label))
            start = t
    return spans


def label_items(ax, item_index, tokens=None):
    """Tick labels (one per token when `tokens` are given, else one per item span) and thin lines
    at item boundaries, on both axes of a (query key) heatmap."""
    spans = item_spans(item_index)
    for start, _, _ in spans[1:]:
        ax.axhline(start, color="black", linewidth=0.6)
        ax.axvline(start, color="black", linewidth=0.6)
    if tokens is not None:
        ticks, labels = np.arange(len(tokens)) + 0.5, [str(t) for t in tokens]
    else:
        ticks, labels = [(a + b) / 2 for a, b, _ in spans], [s for *_, s in spans]
    size = 6 if tokens is not None else None
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, rotation=0, fontsize=size)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")


def _square(matrix, item_index) -> np.ndarray:
    """Check a (query key) matrix against the history's length; (head query key) is averaged."""
    matrix, n = _numpy(matrix).astype(float), len(_numpy(item_index).ravel())
    if matrix.ndim == 3:
        matrix = matrix.mean(0)
    if matrix.shape != (n, n):
        raise ValueError(
            f"Expected a (query key) matrix of shape ({n}, {n}) for {n} tokens, got "
            f"{matrix.shape}; pass one row of a batch, e.g. allow[0] and item_index[0]."
        )
    return matrix


def _axes(ax, n: int):
    return ax if ax is not None else plt.subplots(figsize=(3 + 0.1 * n, 2.6 + 0.1 * n))[1]


def plot_mask(allow, item_index, ax=None, title=None, tokens=None):
    """Heatmap of a boolean mask (query key): dark = may attend. Returns the Axes."""
    allow = _square(allow, item_index)
    ax = _axes(ax, len(allow))
    sns.heatmap(allow, ax=ax, cmap=MASK_CMAP, vmin=0, vmax=1, cbar=False, square=True)
    label_items(ax, item_index, tokens)
    ax.set_title(title or "")
    return ax


def plot_attention(attn, item_index, ax=None, title=None, tokens=None, allow=None):
    """Heatmap of attention weights (query key), or (head query key) averaged over heads.
    Cells a mask `allow` (query key) rules out are left grey, so a weight of 0 stays visible."""
    attn = _square(attn, item_index)
    ax = _axes(ax, len(attn))
    blocked = None if allow is None else _square(allow, item_index) == 0
    ax.set_facecolor("#d0d0d0")
    sns.heatmap(
        attn, ax=ax, cmap="rocket_r", vmin=0, square=True, mask=blocked, cbar_kws={"shrink": 0.7}
    )
    label_items(ax, item_index, tokens)
    ax.set_title(title or "")
    return ax


def plot_masks(masks: dict, item_index, tokens=None, size: float = 4.0):
    """Several masks side by side, one panel per {title: allow (query key)}. Returns the Figure."""
    fig, axes = plt.subplots(1, len(masks), figsize=(size * len(masks), size), squeeze=False)
    for ax, (title, allow) in zip(axes[0], masks.items(), strict=True):
        plot_mask(allow, item_index, ax=ax, title=title, tokens=tokens)
    fig.tight_layout()
    return fig


def plot_mask_and_attention(allow, attn, item_index, title=None, tokens=None):
    """A sublayer's mask next to the attention it produced. Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
    plot_mask(allow, item_index, ax=left, title="mask", tokens=tokens)
    plot_attention(
        attn, item_index, ax=right, title="attention (mean over heads)", tokens=tokens, allow=allow
    )
    fig.suptitle(title or "")
    fig.tight_layout()
    return fig


def plot_plan(plan: list[tuple[str, ...]], ax=None, title=None):
    """A layer plan (`model.layer_plan`) as a grid: one row per block, the input block at the
    bottom, one column per attention sublayer, coloured and labelled by mask kind."""
    width = max(len(block) for block in plan)
    kinds = [[block[s] if s < len(block) else "" for s in range(width)] for block in plan][::-1]
    codes = np.array([[MASK_KINDS.index(k) if k else np.nan for k in row] for row in kinds])
    ax = (
        ax if ax is not None else plt.subplots(figsize=(1 + 1.3 * width, 0.5 + 0.45 * len(plan)))[1]
    )
    cmap = ListedColormap([KIND_COLORS[k] for k in MASK_KINDS])
    sns.heatmap(
        codes,
        ax=ax,
        cmap=cmap,
        vmin=-0.5,
        vmax=len(MASK_KINDS) - 0.5,
        cbar=False,
        annot=np.array(kinds),
        fmt="",
        mask=np.isnan(codes),
        linewidths=2,
    )
    blocks = [f"block {b}" for b in reversed(range(len(plan)))]
    ax.set_yticks(np.arange(len(plan)) + 0.5, blocks, rotation=0)
    ax.set_xticks(np.arange(width) + 0.5, [f"attn {s + 1}" for s in range(width)])
    ax.set_title(title or "")
    return ax


def plot_plans(plans: dict, title=None):
    """Several layer plans side by side, one panel per {name: plan}. Returns the Figure."""
    height = 0.8 + 0.45 * max(len(plan) for plan in plans.values())
    fig, axes = plt.subplots(1, len(plans), figsize=(2.4 * len(plans), height), squeeze=False)
    for ax, (name, plan) in zip(axes[0], plans.items(), strict=True):
        plot_plan(plan, ax=ax, title=name)
    fig.suptitle(title or "")
    fig.tight_layout()
    return fig


def plot_comparison(table, title: str = "", split="test", protocol="seen_excluded",
                    metrics=("HR@10", "NDCG@10")):  # fmt: skip
    """HR@10 and NDCG@10 per cell: every seed as a dot, mean +- std as a bar."""
    rows = table[(table.split == split) & (table.protocol == protocol)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8))
    for ax, metric in zip(axes, metrics, strict=True):
        data = rows[rows.metric == metric]
        sns.barplot(data=data, x="cell", y="value", errorbar="sd", color="0.85", ax=ax)
        sns.stripplot(data=data, x="cell", y="value", hue="seed", palette="deep", size=4,
                      jitter=False, dodge=True, ax=ax)  # fmt: skip
        ax.set(title=metric, xlabel="", ylabel=metric)
        ax.tick_params(axis="x", rotation=40)
        ax.legend(title="seed", fontsize=7, title_fontsize=7, ncols=2)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
