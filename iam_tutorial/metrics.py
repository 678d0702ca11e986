"""Full-catalog ranking metrics for leave-one-out evaluation: HR@k and NDCG@k.

Every catalog item is ranked (no sampled negatives). By default the items of the user's input
history are excluded from the ranking; `evaluate` reports both protocols in one pass. Ties are
pessimistic: an item scored equal to the target ranks ahead of it, so a tie never helps a target by
its index.
"""

# Axes: batch, item

import math
from collections.abc import Callable

import torch

from iam_tutorial.config import ConfigError

KS = (5, 10, 20)
PROTOCOL = "leave-one-out, full-catalog ranking"
TIE_RULE = "pessimistic ties (an item scored equal to the target ranks ahead of it)"
SEEN = {"seen_excluded": "seen items excluded", "seen_included": "seen items included"}


class NonFiniteScores(ConfigError):
    """A model scored some item NaN or infinite: ranking would be meaningless, so it refuses."""


def protocol(split: str | None = None, seen: str = "seen_excluded", **facts) -> str:
    """The one sentence every reported metric carries: split, protocol, seen items, ties, and any
    facts given (users=1000, seeds=[0, 1], ...), e.g. 'test · leave-one-out, ... · users 1000'."""
    parts = [split] if split else []
    parts += [PROTOCOL, SEEN[seen], TIE_RULE]
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in facts.items()]
    return " · ".join(parts)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items: the number of other items scored at least as
    high (pessimistic ties). Shapes: scores (batch item), targets (batch) -> (batch)."""
    target_scores = scores.gather(1, targets[:, None])
    items = torch.arange(scores.shape[1], device=scores.device)
    ahead = (scores > target_scores) | ((scores == target_scores) & (items != targets[:, None]))
    return ahead.sum(1)


def mask_seen(scores: torch.Tensor, seen: list[list[int]], targets: torch.Tensor) -> torch.Tensor:
    """Scores with each row's seen items (and padding item 0) set to -inf; the target is never
    masked, so a repeated item stays rankable."""
    scores = scores.clone()
    scores[:, 0] = -torch.inf
    rows = torch.tensor([b for b, items in enumerate(seen) for _ in items], dtype=torch.long)
    cols = torch.tensor([i for items in seen for i in items], dtype=torch.long)
    target_scores = scores.gather(1, targets[:, None])
    scores[rows, cols] = -torch.inf
    scores.scatter_(1, targets[:, None], target_scores)
    return scores


def ndcg_at(ranks, k: int = 10) -> torch.Tensor:
    """Per-user NDCG@k from 0-based target ranks: 1 / log2(rank + 2) in the top k, else 0 (one
    relevant item, so the ideal DCG is 1). The one per-user NDCG: metrics, the lab's statistics
    and the notebooks all call it. Shapes: ranks (user) -> (user), float64."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    return (ranks < k) / torch.log2(ranks + 2)


def metrics_from_ranks(ranks: torch.Tensor, ks=KS) -> dict[str, float]:
    """HR@k = share of targets ranked in the top k; NDCG@k = the mean of `ndcg_at`."""
    out = {}
    for k in ks:
        out[f"HR@{k}"] = (ranks < k).double().mean().item()
        out[f"NDCG@{k}"] = ndcg_at(ranks, k).mean().item()
    return out


@torch.no_grad()
def rank_targets(
    score_rows: Callable[[torch.Tensor], torch.Tensor],
    seen: list[list[int]],
    targets: list[int],
    batch_size: int = 256,
    order: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """0-based rank of every user's target among all items, a batch of users at a time (one
    batch x catalog of scores in memory). `score_rows(rows)` returns scores (len(rows) item).

    `order`: the users in the order they are scored (by input length, each batch is cut to its
    longest input, not the longest of all); ranks come back in user order.
    Returns {"seen_excluded": ranks, "seen_included": ranks}; padding item 0 never ranks.
    """
    targets_t = torch.tensor(targets)
    order = torch.arange(len(targets)) if order is None else torch.as_tensor(order)
    excluded, included = [], []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        scores = score_rows(rows).float().cpu().clone()  # ours to edit in place
        if not torch.isfinite(scores).all():  # a NaN would rank the target first (HR = NDCG = 1)
            raise NonFiniteScores(
                f"{int((~torch.isfinite(scores)).any(1).sum())} of {len(rows)} users got NaN or "
                "infinite scores: the model diverged; lower lr, keep grad_clip on, or turn bf16 "
                "off."
            )
        t = targets_t[rows]
        excluded.append(target_ranks(mask_seen(scores, [seen[r] for r in rows], t), t))
        scores[:, 0] = -torch.inf
        included.append(target_ranks(scores, t))
    by_user = torch.empty_like(order)
    by_user[order] = torch.arange(len(order))  # position of each user in `order`
    return {
        "seen_excluded": torch.cat(excluded)[by_user],
        "seen_included": torch.cat(included)[by_user],
    }


def metrics_and_ranks(ranks: dict[str, dict[str, torch.Tensor]]) -> dict:
    """{split: {protocol: metrics}} plus "ranks": {split: {protocol: [rank per user]}}, the part
    of a results dict that trained models and the popularity baseline share (from `rank_targets`
    per split)."""
    return {
        **{s: {p: metrics_from_ranks(r) for p, r in by.items()} for s, by in ranks.items()},
        "ranks": {s: {p: r.tolist() for p, r in by.items()} for s, by in ranks.items()},
    }


def evaluate(score_rows, seen, targets, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """HR@k and NDCG@k under both protocols: {"seen_excluded": {...}, "seen_included": {...}}."""
    ranks = rank_targets(score_rows, seen, targets, batch_size)
    return {protocol: metrics_from_ranks(r) for protocol, r in ranks.items()}


def ndcg_of_rank(rank: int) -> float:
    """NDCG of one target at 0-based `rank` (for hand-computed checks)."""
    return 1 / math.log2(rank + 2)
