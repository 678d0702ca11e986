"""Baselines in the same harness: most-popular items, and SASRec with item-ID embeddings.

SASRec (Kang & McAuley, 2018) is the token plan over a one-token-per-item serialization with its
item table tied to the input embedding (`pipeline.sasrec_config`), so it shares every line of model
and trainer code; the popularity baseline is scored and ranked exactly like the trained models.
"""

import dataclasses

import torch

from iam_tutorial.config import Config
from iam_tutorial.metrics import rank_targets
from iam_tutorial.pipeline import load_split
from iam_tutorial.record import results_record


def popularity_counts(train: list[list[int]], n_items: int) -> torch.Tensor:
    """How often each catalog item occurs in the training parts of all histories: (item)."""
    counts = torch.zeros(n_items + 1)
    for history in train:
        counts += torch.bincount(torch.tensor(history, dtype=torch.long), minlength=n_items + 1)
    return counts


def popularity_scorer(counts: torch.Tensor):
    """A `score_rows` for metrics.evaluate: every user gets the same popularity scores."""
    return lambda rows: counts.expand(len(rows), -1)


def run_popularity(cfg: Config, split=None) -> dict:
    """Most-popular unseen items: metrics and per-user ranks, like a trained model's results."""
    split, users = split or load_split(cfg), {"valid": cfg.train_users, "test": None}
    scorer = popularity_scorer(popularity_counts(split.train[: cfg.train_users], split.n_items))
    ranks = {  # counted on the training users, validated on them, tested on every user
        s: rank_targets(scorer, split.histories(s)[0][: users[s]], getattr(split, s)[: users[s]])
        for s in users
    }
    cfg = dataclasses.replace(cfg, plan="popularity")
    return results_record(cfg, split, ranks, note=" · popularity counted on the training parts")
