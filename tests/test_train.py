import dataclasses
import json
import math
import re

import pytest
import torch

from iam_tutorial.config import get_config
from iam_tutorial.data.movielens import leave_one_out, load_sequences
from iam_tutorial.pipeline import prepare
from iam_tutorial.plans import ALL_PLANS
from iam_tutorial.train import lr_factor, main, run

TINY = dict(n_users=12, n_layer=2, n_head=2, n_embd=16, max_items=6, max_tokens=96, vocab_size=300,
            batch_size=4, max_epochs=2, eval_batch_size=5)  # fmt: skip


@pytest.mark.parametrize("plan", ALL_PLANS)
def test_every_plan_trains_and_reports(synthetic_env, plan):
    results = run(get_config("quick", plan=plan, **TINY), progress=False)
    for split in ("valid", "test"):
        for protocol in ("seen_excluded", "seen_included"):
            assert (
                0 <= results[split][protocol]["NDCG@10"] <= results[split][protocol]["HR@10"] <= 1
            )
    assert results["plan"] == plan and "leave-one-out" in results["protocol"]
    if plan != "popularity":
        assert results["steps"] > 0 and results["params"] > 0 and results["tokens_per_second"] > 0
        assert len(results["history"]["loss"]) == results["steps"]


def test_training_is_deterministic(synthetic_env):
    cfg = get_config("quick", plan="iam", **TINY)
    a, b = run(cfg, progress=False), run(cfg, progress=False)
    drop = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert (
        drop(a["history"]) == drop(b["history"])
        and a["test"] == b["test"]
        and a["ranks"] == b["ranks"]
    )


def test_early_stopping_keeps_best_epoch(synthetic_env):
    results = run(
        get_config(
            "quick", plan="token", **{**TINY, "max_epochs": 6, "patience": 1, "min_epochs": 1}
        ),
        progress=False,
    )
    curve = results["history"]["valid_NDCG@10"]
    assert results["best_epoch"] == 1 + curve.index(max(curve))
    assert results["epochs"] - results["best_epoch"] <= 1
    assert results["valid"]["seen_excluded"]["NDCG@10"] == pytest.approx(max(curve), abs=1e-5)


def test_an_epoch_trains_every_transition_once(synthetic_env):
    data = prepare(get_config("quick", plan="token", **{**TINY, "train_horizon": None}))
    split = data.split
    for seed in (0, 1):
        batches = list(data.epoch(torch.Generator().manual_seed(seed)))
        assert abs(len(batches) - data.steps_per_epoch()) <= 2
        n_targets = sum(int((b.targets != -100).sum()) for b in batches)
        assert n_targets == data.transitions() == sum(len(t) - 1 for t in split.train)
    a, b = (next(data.epoch(torch.Generator().manual_seed(s))) for s in (0, 1))
    assert not torch.equal(a.tokens, b.tokens)  # fresh cuts and order every epoch
    assert torch.equal(data.valid.readout, (data.valid.item_index != -2).sum(1) - 1)
    assert data.seen["test"][0] == split.train[0] + [split.valid[0]]  # all of it is excluded


def test_epoch_windows_cover_each_transition_exactly_once():
    from iam_tutorial.pipeline import epoch_windows

    history = list(range(1, 30))
    counts = torch.zeros(len(history))
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        windows = epoch_windows(history, 5, g)
        assert all(2 <= len(w) <= 6 for w in windows)
        once = torch.zeros(len(history))
        for w in windows:  # targets of a window: all its items but the first
            start = history.index(w[0])
            assert w == history[start : start + len(w)]
            once[start + 1 : start + len(w)] += 1
        assert once[0] == 0 and (once[1:] == 1).all()  # every transition once, none twice
        counts += once
    # No edge bias: the most recent transition is trained as often as any other.
    assert counts[-1] == counts[1] == counts[15] == 200
    assert epoch_windows([7], 5, g) == []


def test_train_horizon_keeps_the_most_recent_transitions(synthetic_env):
    data = prepare(get_config("quick", plan="token", **{**TINY, "train_horizon": 4}))
    assert data.training_histories()[0] == data.split.train[0][-5:]
    assert data.transitions() == sum(min(len(t) - 1, 4) for t in data.split.train)


def test_lr_schedule():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == 1.0
    assert lr_factor(100, 100, 10) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_cli_writes_results_json(synthetic_env):
    args = [
        "--mode",
        "quick",
        "--plan",
        "hatllm",
        "--seed",
        "3",
        "--max-steps",
        "2",
        "--out",
        str(synthetic_env),
    ]
    args += ["--set"] + [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    main(args)
    saved = json.loads((synthetic_env / "hatllm_seed3.json").read_text())
    assert (
        saved["steps"] == 2 and saved["config"]["seed"] == 3 and saved["config"]["plan"] == "hatllm"
    )
    assert {"train_seconds", "tokens_per_second", "peak_memory_mib", "versions"} <= set(saved)


def test_unknown_plan_is_a_clear_error(synthetic_env):
    with pytest.raises(ValueError, match="plan='bogus': choose one of popularity, token"):
        run(get_config("quick", plan="bogus", **TINY))


def test_full_preset_runs_end_to_end_on_cpu(ml1m_root, monkeypatch):
    """FULL on all 6,040 users: the data path in full, then the FULL model (bf16 autocast, its size,
    its token budget) for one step on 8 users, so a GPU run cannot fail on a typo."""
    monkeypatch.setenv("IAM_DATA_DIR", str(ml1m_root))
    cfg = get_config("full", plan="iam", max_steps=1, batch_size=8, eval_batch_size=16)
    split = leave_one_out(load_sequences(cfg.n_users))
    assert len(split.users) == 6040 and split.n_items == 3416
    data = prepare(cfg, split)
    assert next(data.epoch(torch.Generator().manual_seed(0))).tokens.shape[1] <= cfg.max_tokens
    small = dataclasses.replace(split, users=split.users[:8], train=split.train[:8],
                                valid=split.valid[:8], test=split.test[:8])  # fmt: skip
    for plan in ("iam", "sasrec"):
        results = run(dataclasses.replace(cfg, plan=plan), progress=False, split=small)
        assert results["steps"] == 1 and results["config"]["bf16"] is True


def test_ranks_agree_with_metrics(synthetic_env):
    from iam_tutorial.metrics import metrics_from_ranks
    from iam_tutorial.train import evaluate_model, resolve_device, train

    cfg = get_config("quick", plan="iam", **{**TINY, "max_epochs": 1})
    data = prepare(cfg)
    model, results = train(data, progress=False)
    ranks = evaluate_model(model, data, "test", resolve_device("cpu"), ranks=True)
    assert len(ranks["seen_excluded"]) == len(data.split.users)
    assert metrics_from_ranks(ranks["seen_excluded"]) == results["test"]["seen_excluded"]


def test_no_stop_before_min_epochs(synthetic_env):
    cfg = get_config(
        "quick", plan="token", **{**TINY, "max_epochs": 5, "patience": 1, "min_epochs": 4}
    )
    results = run(cfg, progress=False)
    assert results["epochs"] >= 4


def test_validation_every_n_epochs(synthetic_env):
    cfg = get_config("quick", plan="token", **{**TINY, "max_epochs": 5, "eval_every": 2})
    results = run(cfg, progress=False)
    assert results["history"]["epoch"] == [2, 4, 5] and results["best_epoch"] in (2, 4, 5)


def test_a_diverging_run_stops_with_one_line(synthetic_env):
    from iam_tutorial.train import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match="lower lr"):
        run(
            get_config("quick", plan="token", **{**TINY, "lr": 1e30, "grad_clip": 1e30}),
            progress=False,
        )


@pytest.mark.parametrize(
    ("flags", "says"),
    [(["hatllm_split=[1,1,5]"], "hatllm_split=.*add up to n_layer=2"),
     (["n_embd=30", "n_head=4"], "n_embd=30: must be divisible by n_head=4"),
     (["max_tokens=8"], "does not fit max_tokens=8; raise max_tokens"),
     (["lr=-1"], "lr=-1")],
)  # fmt: skip
def test_bad_flags_are_one_line_and_exit_2(synthetic_env, capsys, flags, says):
    small = {k: v for k, v in TINY.items() if k not in ("n_embd", "n_head", "max_tokens")}
    args = ["--plan", "hatllm", "--max-steps", "1", "--out", str(synthetic_env), "--set"]
    args += [f"{k}={json.dumps(v)}" for k, v in small.items()] + flags
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and err.startswith("error:")
    assert re.search(says, err), err


def test_nan_scores_are_refused_not_ranked_first():
    from iam_tutorial.metrics import NonFiniteScores, rank_targets

    def score_rows(rows):
        scores = torch.rand(len(rows), 6)
        scores[0] = float("nan")  # a diverged model: without the check the target ranks first
        return scores

    with pytest.raises(NonFiniteScores, match="1 of 2 users got NaN or infinite scores"):
        rank_targets(score_rows, [[1], [2]], [3, 4])


def test_a_constant_rate_after_one_epochs_warmup(synthetic_env):
    import iam_tutorial.train as train_module

    cfg = get_config("quick", plan="token", **{**TINY, "decay_epochs": 0, "warmup_frac": 0.5})
    data = prepare(cfg)
    model = train_module.build_model(cfg, data.serializer)
    optimizer = train_module.make_optimizer(model, cfg)
    scheduler = train_module.make_schedule(optimizer, data)
    warmup = int(0.5 * data.steps_per_epoch())
    rates = []
    for _ in range(3 * data.steps_per_epoch()):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[warmup - 1] == cfg.lr and set(rates[warmup:]) == {cfg.lr} and rates[0] < cfg.lr
    assert lr_factor(10**6, None, 3) == 1.0
    assert all(g["fused"] for g in optimizer.param_groups)  # the fused AdamW kernel on CPU


def test_results_reuse_the_best_epochs_validation_ranks(synthetic_env, monkeypatch):
    """One validation pass per validated epoch: the results take the best epoch's ranks, and they
    are the ranks a fresh pass over its weights gives."""
    import iam_tutorial.train as train_module

    cfg = get_config("quick", plan="token", **TINY)
    real, passes = train_module.evaluate_model, []

    def counted(model, data, split, *args, **kwargs):
        passes.append(split)
        return real(model, data, split, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_model", counted)
    model, results = train_module.train(prepare(cfg), progress=False)
    assert passes == ["valid"] * cfg.max_epochs + ["test"]
    fresh = real(model, prepare(cfg), "valid", torch.device("cpu"), ranks=True)
    assert results["ranks"]["valid"] == {p: r.tolist() for p, r in fresh.items()}


@pytest.mark.parametrize("plan", ["token", "sasrec", "popularity"])
def test_train_users_train_and_validate_while_every_user_is_tested(synthetic_env, plan):
    """train_users=k: users 1..k give every training transition and the validation that picks the
    epoch (popularity counts their items only); the test ranks every loaded user."""
    cfg = get_config("quick", plan=plan, **{**TINY, "max_epochs": 1}, train_users=5)
    if plan != "popularity":
        data = prepare(cfg)
        assert len(data.training_histories()) == 5 and len(data.valid) == 5
        assert len(data.test) == 12 == len(data.split.users)
        assert data.training_histories() == [t[-13:] for t in data.split.train[:5]]
    results = run(cfg, progress=False)
    assert len(results["ranks"]["valid"]["seen_excluded"]) == 5
    assert len(results["ranks"]["test"]["seen_excluded"]) == 12


def test_train_users_beyond_the_loaded_users_is_a_config_error():
    with pytest.raises(ValueError, match="train_users=13: must be <= n_users=12"):
        get_config("quick", n_users=12, train_users=13)
