"""Plots for the notebooks: masks, attention maps, layer plans; `save_fig` writes PNGs to figures/.

Every heatmap is drawn query by key (a row attends to the columns) with the item spans of the
serialized history marked on both axes, so a mask and the attention it allows line up cell for cell.
Masks carry a legend (may attend / blocked / BOS / PAD), attention maps a labelled colour bar on a
log scale by default (fresh weights of ~1/n wash out near white on a linear one). Notebook 02 draws
each of them; notebook 04 reuses them on trained models.
"""

# Axes: head, group (of heads), query (rows of a mask), key (columns), token, block, sublayer

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from iam_tutorial.masks import HEAD_SPLITS, MASK_KINDS
from iam_tutorial.paths import figures_dir
from iam_tutorial.serialize import GLOBAL, PADDING

PLAN_KINDS = (*MASK_KINDS, *HEAD_SPLITS)  # every kind a sublayer of a plan may have
KIND_COLORS = {
    "causal": "#a6a6a6",
    "intra": "#1b9e77",
    "inter": "#d95f02",
    "intra|inter": "#7570b3",
}
# Mask cells, by code: what each colour means is in the legend of every mask figure.
MASK_LEGEND = {
    0: ("blocked", "#f2f2f2"),
    1: ("may attend", "#31688e"),
    2: ("may attend: BOS key", "#f0a830"),
    3: ("PAD (query or key)", "#bdbdbd"),
    4: ("may attend: some heads (head split)", "#9ecae1"),
}
MASK_CMAP = ListedColormap([color for _, color in MASK_LEGEND.values()])
BOUNDARY = {"color": "black", "linewidth": 0.7}  # item boundaries on every heatmap
BLOCKED_FACE = "#d0d0d0"  # attention cells a mask rules out
SCALES = {  # attention colour scales: colour-bar label and the note a title carries
    "log": ("attention weight (log scale)", "colour: log scale"),
    "row": ("weight / its row's largest", "colour: weight / row max"),
    "linear": ("attention weight", "colour: linear scale"),
}
LOG_FLOOR = 1e-3  # the log scale's lowest colour (smaller weights are drawn at it)


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
    """Tick labels (one per token when `tokens` are given, else one per item span) and lines at
    item boundaries, on both axes of a (query key) heatmap."""
    spans = item_spans(item_index)
    for start, _, _ in spans[1:]:
        ax.axhline(start, **BOUNDARY)
        ax.axvline(start, **BOUNDARY)
    if tokens is not None:
        ticks, labels = np.arange(len(tokens)) + 0.5, [str(t) for t in tokens]
    else:
        ticks, labels = [(a + b) / 2 for a, b, _ in spans], [s for *_, s in spans]
    size = 6 if tokens is not None else None
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, rotation=0, fontsize=size)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")


def _check(matrix, item_index) -> tuple[np.ndarray, int]:
    """A (query key) or (leading query key) matrix as float, checked against the history's
    length."""
    matrix, n = _numpy(matrix).astype(float), len(_numpy(item_index).ravel())
    if matrix.ndim not in (2, 3) or matrix.shape[-2:] != (n, n):
        raise ValueError(
            f"Expected a (query key) matrix of shape ({n}, {n}) for {n} tokens, got "
            f"{matrix.shape}; pass one row of a batch, e.g. allow[0] and item_index[0]."
        )
    return matrix, n


def mask_codes(allow, item_index) -> np.ndarray:
    """Each cell of a mask as a MASK_LEGEND code (query key). `allow` is (query key), or
    (group query key) for a head-split sublayer, whose cells only some groups allow get code 4."""
    allow, n = _check(allow, item_index)
    share = allow.mean(0) if allow.ndim == 3 else allow
    index = _numpy(item_index).ravel()
    codes = np.where(share >= 1, 1, np.where(share > 0, 4, 0))
    codes[(share > 0) & (index == GLOBAL)[None, :]] = 2
    pad = index == PADDING
    codes[pad[:, None] | pad[None, :]] = 3
    return codes


def _draw(ax, values, cmap, norm):
    """A (query key) heatmap whose cell (q, k) spans [k, k+1] x [q, q+1], query 0 at the top
    (masked cells show the axes' face colour); equal aspect. Returns the mesh."""
    n = values.shape[0]
    mesh = ax.pcolormesh(np.arange(n + 1), np.arange(n + 1), values, cmap=cmap, norm=norm)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    ax.set_aspect("equal")
    return mesh


def mask_legend_handles(codes=None, labels: dict | None = None) -> list:
    """Legend entries for the codes present (all when None) and the item-boundary line; `labels`
    renames codes (e.g. {1: "reaches"} for a reachability plot)."""
    present = sorted(set(np.unique(codes).tolist())) if codes is not None else list(MASK_LEGEND)
    names = {c: name for c, (name, _) in MASK_LEGEND.items()} | (labels or {})
    handles = [Patch(facecolor=MASK_LEGEND[c][1], edgecolor="0.5", label=names[c]) for c in present]
    return [*handles, Line2D([], [], label="item boundary", **BOUNDARY)]


def plot_mask(allow, item_index, ax=None, title=None, tokens=None, legend=True, labels=None):
    """A boolean mask (query key), or (group query key) for a head split: dark = may attend, amber
    = may attend BOS, grey = PAD, light = blocked, with a legend (unless `legend=False`; then
    `mask_legend_handles` gives one for a whole figure). Returns the Axes."""
    codes = mask_codes(allow, item_index)
    ax = ax if ax is not None else _axes(len(codes), legend)
    _draw(ax, codes, MASK_CMAP, Normalize(-0.5, len(MASK_LEGEND) - 0.5))
    label_items(ax, item_index, tokens)
    ax.set_title(title or "")
    if legend:
        ax.legend(
            handles=mask_legend_handles(codes, labels),
            loc="upper left",
            bbox_to_anchor=(1.02, 1),
            fontsize=8,
            frameon=False,
        )
    return ax


def _axes(n: int, legend: bool = False):
    width = 3 + 0.1 * n + (1.8 if legend else 0)
    return plt.subplots(figsize=(width, 2.6 + 0.1 * n))[1]


def attention_norm(scale: str):
    """The colour normalisation of an attention `scale`: 'log', 'row' or 'linear'."""
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}: choose one of {', '.join(SCALES)}.")
    return LogNorm(LOG_FLOOR, 1.0) if scale == "log" else Normalize(0.0, 1.0)


def attention_values(attn, item_index, scale: str = "log") -> np.ndarray:
    """What an attention map's colours encode (query key): the weights, averaged over heads when
    given (head query key); with scale 'row' each row divided by its largest weight; with 'log'
    floored at LOG_FLOOR so a weight of 0 still gets a colour."""
    attn, _ = _check(attn, item_index)
    attn = attn.mean(0) if attn.ndim == 3 else attn
    attention_norm(scale)
    if scale == "row":
        return attn / np.maximum(attn.max(1, keepdims=True), 1e-12)
    return np.maximum(attn, LOG_FLOOR) if scale == "log" else attn


def plot_attention(
    attn,
    item_index,
    ax=None,
    title=None,
    tokens=None,
    allow=None,
    scale="log",
    colorbar=True,
    note_scale=True,
):
    """Heatmap of attention weights (query key), or (head query key) averaged over heads, on a
    `scale` ('log' by default, 'row', 'linear') that the title states (unless `note_scale=False`)
    and the colour bar labels. Cells a mask `allow` (query key, or group query key) rules out
    for every head are left grey, so a weight of 0 stays visible. Returns the Axes."""
    values = attention_values(attn, item_index, scale)
    ax = ax if ax is not None else _axes(len(values))
    ax.set_facecolor(BLOCKED_FACE)
    if allow is not None:
        blocked = mask_codes(allow, item_index)
        values = np.ma.masked_where((blocked == 0) | (blocked == 3), values)
    mesh = _draw(ax, values, sns.color_palette("rocket_r", as_cmap=True), attention_norm(scale))
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, shrink=0.7, label=SCALES[scale][0])
    label_items(ax, item_index, tokens)
    note = SCALES[scale][1] if note_scale else ""
    ax.set_title("\n".join(t for t in (title, note) if t))
    return ax


def _grid(n_panels: int, ncols: int, size: float, extra_width: float = 0.0):
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols + extra_width, size * nrows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    return fig, list(axes.flat[:n_panels])


def _outer_labels(axes: list, ncols: int):
    """Axis labels on the outer panels of a grid only (the first column, the bottom row)."""
    ncols = min(ncols, len(axes))
    for i, ax in enumerate(axes):
        if i % ncols:
            ax.set_ylabel("")
        if i + ncols < len(axes):
            ax.set_xlabel("")


def plot_masks(
    masks: dict, item_index, tokens=None, size: float = 3.6, ncols: int = 3, title=None, labels=None
):
    """Several masks, one panel per {title: allow (query key)}, `ncols` to a row, with one legend
    for the figure (`labels` renames its entries, as in `mask_legend_handles`). Returns the
    Figure."""
    fig, axes = _grid(len(masks), ncols, size)
    codes = []
    for ax, (name, allow) in zip(axes, masks.items(), strict=True):
        plot_mask(allow, item_index, ax=ax, title=name, tokens=tokens, legend=False)
        codes.append(mask_codes(allow, item_index))
    _outer_labels(axes, ncols)
    handles = mask_legend_handles(np.concatenate([c.ravel() for c in codes]), labels)
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 5),
        fontsize=9,
        frameon=False,
    )
    if title:
        fig.get_layout_engine().set(h_pad=0.1)  # room for the title above the panels' own
        fig.suptitle(title)
    return fig


def plot_attention_grid(
    panels: dict, item_index, ncols: int = 3, size: float = 3.6, scale: str = "log", title=None
):
    """Attention maps, one panel per {title: (attn, allow)} (allow may be None), `ncols` to a row,
    on one shared colour scale with one labelled colour bar; the title states the scale."""
    fig, axes = _grid(len(panels), ncols, size, extra_width=0.8)
    for ax, (name, (attn, allow)) in zip(axes, panels.items(), strict=True):
        plot_attention(
            attn,
            item_index,
            ax=ax,
            title=name,
            allow=allow,
            scale=scale,
            colorbar=False,
            note_scale=False,
        )
    _outer_labels(axes, ncols)
    mesh = axes[0].collections[0]
    fig.colorbar(mesh, ax=axes, shrink=0.6, label=SCALES[scale][0])
    note = f"{SCALES[scale][1]}; grey = blocked by the mask"
    fig.suptitle("\n".join(t for t in (title, note) if t))
    return fig


def plot_mask_and_attention(allow, attn, item_index, title=None, tokens=None, scale="log"):
    """A sublayer's mask (with its legend) next to the attention it produced (with its colour
    bar); the title states the colour scale. Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 5.4), layout="constrained")
    plot_mask(allow, item_index, ax=left, title="mask", tokens=tokens, legend=False)
    plot_attention(
        attn,
        item_index,
        ax=right,
        title="attention (mean over heads)",
        tokens=tokens,
        allow=allow,
        scale=scale,
        note_scale=False,
    )
    handles = mask_legend_handles(mask_codes(allow, item_index))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 5),
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("\n".join(t for t in (title, SCALES[scale][1]) if t))
    return fig


def plot_plan(plan: list[tuple[str, ...]], ax=None, title=None):
    """A layer plan (`plans.layer_plan`) as a grid: one row per block, the input block at the
    bottom, one column per attention sublayer, coloured and labelled by mask kind."""
    width = max(len(block) for block in plan)
    kinds = [[block[s] if s < len(block) else "" for s in range(width)] for block in plan][::-1]
    unknown = {k for row in kinds for k in row if k and k not in PLAN_KINDS}
    if unknown:
        raise ValueError(f"Unknown mask kinds {sorted(unknown)}: a plan uses {PLAN_KINDS}.")
    codes = np.array([[PLAN_KINDS.index(k) if k else np.nan for k in row] for row in kinds])
    if ax is None:
        ax = plt.subplots(figsize=(1 + 1.3 * width, 0.5 + 0.45 * len(plan)))[1]
    cmap = ListedColormap([KIND_COLORS[k] for k in PLAN_KINDS])
    sns.heatmap(
        codes,
        ax=ax,
        cmap=cmap,
        vmin=-0.5,
        vmax=len(PLAN_KINDS) - 0.5,
        cbar=False,
        annot=np.array(kinds),
        fmt="",
        mask=np.isnan(codes),
        linewidths=2,
        annot_kws={"fontsize": 9},
    )
    blocks = [f"block {b}" for b in reversed(range(len(plan)))]
    ax.set_yticks(np.arange(len(plan)) + 0.5, blocks, rotation=0)
    ax.set_xticks(np.arange(width) + 0.5, [f"attn {s + 1}" for s in range(width)])
    ax.set_title(title or "")
    return ax


def plot_plans(plans: dict, title=None, ncols: int = 4):
    """Several layer plans, one panel per {name: plan}, `ncols` to a row. Returns the Figure."""
    height = 0.6 + 0.45 * max(len(plan) for plan in plans.values())
    ncols = max(1, min(ncols, len(plans)))
    nrows = math.ceil(len(plans) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.6 * ncols, height * nrows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[len(plans) :]:
        ax.axis("off")
    for ax, (name, plan) in zip(axes.flat, plans.items(), strict=False):
        plot_plan(plan, ax=ax, title=name)
    fig.suptitle(title or "")
    return fig


def plot_windows(windows_by_epoch: dict, n_items: int, ax=None, title=None):
    """How epochs cut one history into training windows (`pipeline.epoch_windows` applied to the
    positions `list(range(n_items))`): one row per {label: windows}, each window a bar from its
    first item to its last, labelled with its transitions. Bars tile the history: neighbours
    touch at the item they share (the last target of one is the first input of the next)."""
    rows = len(windows_by_epoch)
    ax = ax if ax is not None else plt.subplots(figsize=(9, 0.9 + 0.5 * rows))[1]
    colors = ("#31688e", "#f0a830")
    for r, windows in enumerate(windows_by_epoch.values()):
        for w, window in enumerate(windows):
            first, last = int(window[0]), int(window[-1])
            ax.broken_barh([(first, last - first)], (r - 0.3, 0.6), facecolors=colors[w % 2])
            ax.text(
                (first + last) / 2,
                r,
                str(last - first),
                ha="center",
                va="center",
                color="white",
                fontsize=8,
            )
        ax.plot(range(n_items), [r + 0.4] * n_items, "k.", markersize=2.5)
    ax.set_yticks(range(rows), list(windows_by_epoch))
    ax.set_ylim(rows - 0.45, -0.55)
    ax.set_xlim(-0.5, n_items - 0.5)
    ax.set_xlabel("item position in the training history (dots: items; numbers: transitions)")
    ax.set_title(title or "")
    return ax


def plot_premise(layers, title: str = "Where a pretrained LLM's attention goes (plan token)"):
    """Per layer: attention share on the own item (self excluded), other items and the first
    token, solid, against the even spread over the visible keys, dashed (premise.by_layer)."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    colours = {"own_item_x": "C0", "other_items_x": "C1", "first_x": "C2"}
    names = {
        "own_item_x": "own item (self excluded)",
        "other_items_x": "other items",
        "first_x": "first token (BOS)",
    }
    for column, colour in colours.items():
        ax.plot(layers.layer, layers[column], marker="o", ms=3, color=colour, label=names[column])
        ax.axhline(layers["even_" + column].iloc[0], color=colour, ls="--", lw=1)
    ax.set(xlabel="layer", ylabel="share of attention", ylim=(0, 1), title=title)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncols=3,
        fontsize=8,
        title="solid: measured · dashed: even spread over the visible keys",
        title_fontsize=8,
    )
    fig.tight_layout()
    return fig
