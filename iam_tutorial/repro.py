"""Reproducibility: one call seeds every generator and makes CPU kernels deterministic."""

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, threads: int | None = None) -> torch.Generator:
    """Seed python, numpy and torch; optionally pin the CPU thread count. Returns a torch Generator.

    Thread count matters for bit-identical CPU results (reductions split differently), so
    notebooks and CI pin it; `IAM_THREADS` sets it when `threads` is not given.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    threads = threads or int(os.environ.get("IAM_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def git_commit() -> str:
    """The repo's commit, with '+changes' when the package differs from it ('' outside git):
    recorded in every result, so a number can be traced to the code that made it."""
    import subprocess

    from iam_tutorial.paths import REPO_ROOT

    def git(*args):
        try:
            return subprocess.run(
                ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True
            ).stdout.strip()
        except OSError:  # no git on this machine (a bare GPU image)
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    return commit + ("+changes" if commit and git("status", "--porcelain", "iam_tutorial") else "")
