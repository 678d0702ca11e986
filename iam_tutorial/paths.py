"""Where things live: absolute paths derived from the package, never from the current directory.

`IAM_DATA_DIR` overrides the data folder (CI points it at a read-only copy beside the repo);
`IAM_RESULTS_DIR` overrides where training runs write their JSON; `IAM_FIGURES_DIR` where figures go
(tests and nbval point it at a temporary folder, so they never rewrite the README's figures).
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = REPO_ROOT / "figures"


def data_dir() -> Path:
    """The MovieLens folder: `$IAM_DATA_DIR` if set, else `<repo>/data`."""
    return Path(os.environ.get("IAM_DATA_DIR", REPO_ROOT / "data")).expanduser().resolve()


def results_dir() -> Path:
    """Where run results (JSON, CSV) go: `$IAM_RESULTS_DIR` if set, else `<repo>/results`."""
    return Path(os.environ.get("IAM_RESULTS_DIR", REPO_ROOT / "results")).expanduser().resolve()


def figures_dir() -> Path:
    """Where `save_fig` writes: `$IAM_FIGURES_DIR` if set, else `<repo>/figures/yours` (git-ignored,
    so running a notebook never rewrites the README's figures; `make notebooks` sets
    IAM_FIGURES_DIR=figures, the one command that does)."""
    default = FIGURES_DIR / "yours"
    return Path(os.environ.get("IAM_FIGURES_DIR", default)).expanduser().resolve()


def backbones_dir() -> Path:
    """Where named backbones' weights are unpacked (`python -m iam_tutorial.backbones fetch`):
    `$IAM_BACKBONES_DIR` if set, else `<repo>/backbones` (git-ignored: weights are never
    committed)."""
    return Path(os.environ.get("IAM_BACKBONES_DIR", REPO_ROOT / "backbones")).expanduser().resolve()
