"""Baselines in the same harness: most-popular items, and SASRec with item-ID embeddings.

SASRec (Kang & McAuley, 2018) is the token plan over a one-token-per-item serialization with its
item table tied to the input embedding, so it shares every line of model and trainer code.
"""

import dataclasses

import torch

from iam_tutorial.config import Config


def popularity_counts(train: list[list[int]], n_items: int) -> torch.Tensor:
    """How often each catalog item occurs in the training parts of all histories: (item)."""
    counts = torch.zeros(n_items + 1)
    for history in train:
        counts += torch.bincount(torch.tensor(history, dtype=torch.long), minlength=n_items + 1)
    return counts


def popularity_scorer(counts: torch.Tensor):
    """A `score_rows` for metrics.evaluate: every user gets the same popularity scores."""
    return lambda rows: counts.expand(len(rows), -1)


def sasrec_config(cfg: Config) -> Config:
    """SASRec-ID: one token per item (positions = items + BOS), item table tied to embeddings."""
    return dataclasses.replace(cfg, plan="sasrec", item_head="tied", max_tokens=cfg.max_items + 1)
