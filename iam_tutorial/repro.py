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
