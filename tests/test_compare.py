import pytest

import iam_tutorial.compare as compare

TINY = dict(n_users=10, n_layer=2, n_head=2, n_embd=16, max_items=5, max_tokens=80, vocab_size=300,
            batch_size=5, max_epochs=1)  # fmt: skip


@pytest.fixture
def env(monkeypatch, synthetic_root, tmp_path):
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    return tmp_path


def test_comparison_table_and_resume(env, monkeypatch):
    plans, seeds = ("popularity", "token", "iam"), (0, 1)
    table = compare.run_comparison("quick", plans, seeds, env, progress=False, **TINY)
    assert set(table.plan) == set(plans) and set(table.seed) == set(seeds)
    assert (env / "comparison.csv").exists() and len(list((env / "runs").glob("*.json"))) == 6
    summary = compare.summarize(table)
    assert list(summary.index) == list(plans) and (summary["seeds"] == 2).all()
    assert len(compare.relative_change(table, "iam", "token")) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("finished cells must not be retrained")

    monkeypatch.setattr(compare, "run", no_training)
    again = compare.run_comparison("quick", plans, seeds, env, progress=False, **TINY)
    assert again.equals(table)
    with pytest.raises(AssertionError, match="retrained"):  # a changed config is not reused
        compare.run_comparison(
            "quick", ("token",), (0,), env, progress=False, **{**TINY, "lr": 0.1}
        )


def test_plot_comparison(env):
    table = compare.run_comparison(
        "quick", ("popularity", "token"), (0, 1), env, progress=False, **TINY
    )
    fig = compare.plot_comparison(table, "title")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["HR@10", "NDCG@10"]


def test_plans_with_identical_layers_are_trained_once():
    from iam_tutorial.config import get_config

    notes = []
    two = compare.distinct_plans(
        compare.COMPARE_PLANS, get_config("quick", n_layer=2), notes.append
    )
    assert "iam-alt" not in two and "hatllm" in two and "iam-alt" in notes[0]
    assert compare.distinct_plans(compare.COMPARE_PLANS, get_config("quick", n_layer=4)) == list(
        compare.COMPARE_PLANS
    )
