import math

import numpy as np
import pytest

from iam_tutorial.lab.literature import PUBLISHED, mean_ci, report, user_metrics


def test_user_metrics_golden():
    m = user_metrics([0, 9, 10, 3])
    assert m["HR@10"].tolist() == [1, 1, 0, 1]
    assert m["NDCG@10"].tolist() == pytest.approx([1, 1 / math.log2(11), 0, 1 / math.log2(5)])


def test_mean_ci_brackets_the_mean_and_narrows_with_users():
    rng = np.random.default_rng(1)
    few, many = rng.random(100), rng.random(10_000)
    m, lo, hi = mean_ci(few)
    assert lo < m < hi
    _, lo2, hi2 = mean_ci(many)
    assert hi2 - lo2 < (hi - lo) / 5


def test_report_sets_ours_beside_the_published_numbers():
    ranks = [0] * 20 + [50] * 80
    results = {"ranks": {"test": {"seen_excluded": ranks}}, "best_epoch": 8, "epochs": 20,
               "converged": True, "stopped_by": "plateau", "wall_seconds": 600, "train_seconds": 500,
               "device": "cpu", "threads": 1, "precision": {"bf16": False}, "commit": "abc",
               "history": {"epoch": [4, 8], "valid_NDCG@10": [0.1, 0.2]}}  # fmt: skip
    text = report(results)
    assert "**0.2000**" in text and "100 users" not in text and "users 100" in text
    assert all(name in text for name, _, _ in PUBLISHED) and "8: 0.2000" in text
