"""Plots for the notebooks: masks, attention maps, curves; `save_fig` writes PNGs to figures/."""

import matplotlib

from iam_tutorial.paths import FIGURES_DIR


def save_fig(fig: "matplotlib.figure.Figure", name: str, dpi: int = 120):
    """Save `fig` as figures/<name>.png (metadata stripped, so reruns give identical files)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path
