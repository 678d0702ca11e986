import math

import pytest
import torch

from iam_tutorial.metrics import (
    evaluate,
    mask_seen,
    metrics_from_ranks,
    ndcg_at,
    ndcg_of_rank,
    target_ranks,
)


def test_ranks_by_hand():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.3], [0.0, 0.2, 0.2, 0.2, 0.9]])
    # Row 0: target 3 (0.5) is beaten by item 1 only -> rank 1.
    # Row 1: target 3 ties items 1 and 2 (pessimistic: both rank ahead) and is beaten by item 4 -> 3.
    assert target_ranks(scores, torch.tensor([3, 3])).tolist() == [1, 3]
    # A tie never favours a target by its index: item 1 ties items 2 and 3 exactly like item 3 does.
    assert target_ranks(scores, torch.tensor([1, 1])).tolist() == [0, 3]


def test_metrics_by_hand():
    m = metrics_from_ranks(torch.tensor([0, 1, 4, 12]), ks=(5, 10))
    assert m["HR@5"] == pytest.approx(3 / 4) and m["HR@10"] == pytest.approx(3 / 4)
    expected = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(6)) / 4
    assert m["NDCG@5"] == pytest.approx(expected) and m["NDCG@10"] == pytest.approx(expected)
    assert ndcg_of_rank(0) == 1.0


def test_seen_items_excluded_but_never_the_target():
    scores = torch.tensor([[9.0, 0.9, 0.8, 0.5, 0.1]])
    masked = mask_seen(scores, [[1, 2, 4]], torch.tensor([4]))
    assert masked[0, 0] == -torch.inf and masked[0, 1] == -torch.inf and masked[0, 2] == -torch.inf
    assert masked[0, 4] == pytest.approx(0.1)  # the target stays rankable
    assert target_ranks(masked, torch.tensor([4])).item() == 1  # only item 3 is ahead


def test_evaluate_reports_both_protocols_and_batches_agree():
    g = torch.Generator().manual_seed(0)
    all_scores = torch.randn(10, 30, generator=g)
    seen = [list(range(1, 1 + i)) for i in range(10)]
    targets = [20 + i for i in range(10)]
    score_rows = lambda rows: all_scores[rows]
    one = evaluate(score_rows, seen, targets, batch_size=3)
    other = evaluate(score_rows, seen, targets, batch_size=10)
    assert one == other
    assert set(one) == {"seen_excluded", "seen_included"}
    assert one["seen_excluded"]["HR@20"] >= one["seen_included"]["HR@20"]


def test_scoring_order_does_not_change_ranks():
    """rank_targets may score users in any order (by input length): ranks come back per user."""
    from iam_tutorial.metrics import rank_targets

    torch.manual_seed(0)
    scores = torch.randn(7, 30)
    seen, targets = [[1, 2], [3], [], [4, 5, 6], [7], [8], [9]], [10, 11, 12, 13, 14, 15, 16]
    in_order = rank_targets(lambda rows: scores[rows], seen, targets, batch_size=3)
    shuffled = rank_targets(lambda rows: scores[rows], seen, targets, batch_size=3,
                            order=torch.tensor([6, 2, 4, 0, 1, 5, 3]))  # fmt: skip
    assert all(torch.equal(in_order[p], shuffled[p]) for p in in_order)


def test_per_user_ndcg_golden_and_its_mean_is_the_metric():
    ranks = torch.tensor([0, 9, 10, 3])
    expected = [1, 1 / math.log2(11), 0, 1 / math.log2(5)]
    assert ndcg_at(ranks).tolist() == pytest.approx(expected)
    assert ndcg_at([0, 9, 10, 3], k=5).tolist() == pytest.approx([1, 0, 0, 1 / math.log2(5)])
    assert metrics_from_ranks(ranks)["NDCG@10"] == ndcg_at(ranks).mean().item()
