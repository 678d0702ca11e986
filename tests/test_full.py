"""The FULL GPU command, dry-run on CPU at toy size, and the pieces it is built from."""

import json
import time

import pytest

from iam_tutorial.config import ConfigError, get_config
from iam_tutorial.lab import full, sizing, workers
from iam_tutorial.lab.fastdata import FastPrepared
from iam_tutorial.pipeline import prepare
from iam_tutorial.train import train

TOY = dict(n_users=30, n_layer=2, n_head=2, n_embd=16, max_items=5, max_tokens=80, vocab_size=300,
           batch_size=5, eval_batch_size=16, bf16=False)  # fmt: skip
ENDLESS = dict(max_epochs=100_000, patience=100_000)  # only the budget or the cap can stop these


@pytest.fixture
def env(monkeypatch, synthetic_root, tmp_path):
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    monkeypatch.setenv("IAM_FIGURES_DIR", str(tmp_path / "figures"))
    return tmp_path


def test_cell_groups_put_the_required_cells_first():
    groups = full.cell_groups(get_config("full"), full.PLANS_FULL, ("text+id", "text"), (0, 1, 2),
                              (3, 4))  # fmt: skip
    names = [{f"{full.store.cell_name(c)}_{c.seed}" for c in g} for g in groups]
    assert [len(g) for g in groups] == [18, 12, 12, 8]
    assert {"popularity_0", "sasrec_2", "iam+id_1", "control+id_0"} <= names[0]
    assert "iam_0" in names[1] and "sasrec_3" in names[2] and "hatllm_4" in names[3]


def test_sizing_fits_the_budget_and_drops_optional_groups():
    # Epochs of 2.0, 1.5 and 0.6 s; after the last epoch, 2 evaluations + setup: 5, 5 and 4 s.
    t = {"iam": sizing.Timing(0.1, 1.0, 10), "token": sizing.Timing(0.05, 1.0, 10),
         "sasrec": sizing.Timing(0.01, 0.5, 10)}  # fmt: skip
    kinds = ["sasrec", "token", "iam"] * 2
    assert sizing.makespan([3, 3, 2, 2], 2) == 5 and sizing.makespan([3, 3, 2, 2], 1) == 10
    # Longest first on 3 lanes: iam | iam | token, token -> 2 (1.5 E + 5) = 60 s at E = 16.
    assert sizing.size_epochs(kinds, t, lanes=3, seconds=60, most=100) == 16
    assert sizing.size_epochs(kinds, t, lanes=3, seconds=60, most=10) == 10
    assert sizing.size_epochs(kinds, t, lanes=3, seconds=5, most=100) == 0
    assert sizing.choose([kinds, ["iam"] * 3], t, 3, 60, 100, least=16) == (1, 16)
    kept, epochs = sizing.choose([kinds, ["iam"] * 3], t, 3, 60, 100, least=1)
    assert kept == 2 and 1 <= epochs < 16
    assert sizing.choose([kinds], t, 3, 1, 100, least=5) == (1, 1)  # the cap ends it
    gpu = {"iam": sizing.Timing(0.1, 1.0, 10, peak_mib=30_000, device_mib=100_000)}
    assert (
        sizing.lanes_that_fit(["iam"] * 6, gpu, 6) == 2 and sizing.lanes_that_fit(kinds, t, 6) == 6
    )


def test_time_cap_stops_training_and_keeps_the_best_epoch(env):
    cfg = get_config("full", plan="token", **TOY, **ENDLESS, max_train_seconds=0.5)
    results = train(prepare(cfg), progress=False)[1]
    curve = results["history"]["valid_NDCG@10"]
    assert results["stopped_by"] == "time" and 1 <= results["epochs"] == len(curve)
    assert results["best_epoch"] == 1 + curve.index(max(curve))
    assert results["valid"]["seen_excluded"]["NDCG@10"] == pytest.approx(max(curve), abs=1e-5)
    for bad in (0, -1.0):
        with pytest.raises(ConfigError, match="max_train_seconds"):
            get_config("full", max_train_seconds=bad)


def test_timing_outlasts_an_epoch_and_scales_to_one(env):
    cfg = get_config("full", plan="sasrec", **{**TOY, "batch_size": 64})  # 1 step per epoch
    data = FastPrepared.from_prepared(prepare(cfg))
    timing = workers.measure(cfg, data, seconds=0.3)
    assert data.steps_per_epoch() == timing["steps_per_epoch"] < timing["steps_timed"]
    assert 0 < timing["step_seconds"] < 0.3 and timing["eval_seconds"] > 0


def test_a_cell_ends_before_its_deadline_and_is_written_whole(env):
    cfg = get_config("full", plan="iam", item_input="text+id", **TOY, **ENDLESS)
    data = FastPrepared.from_prepared(prepare(cfg))
    deadline = time.time() + 3
    summary = workers.train_cell(cfg, data, (deadline, 1.0), env)
    assert summary["stopped_by"] == "time" and summary["ended"] < deadline + 2
    stored = json.loads((env / "runs" / "iam+id_seed0.json").read_text())
    assert (
        0 < stored["config"]["max_train_seconds"] <= 2
        and len(stored["ranks"]["test"]["seen_excluded"]) == 30
    )
    assert not list((env / "runs").glob("*.tmp"))
    with pytest.raises(TimeoutError, match="not started"):
        workers.train_cell(cfg, data, (time.time(), 1.0), env)


def test_dry_run_of_the_gpu_command(env, capsys):
    """The GPU call at toy size: workers in parallel, sizing, caps, atomic cells, every output."""
    out, budget = env / "full", 300
    overrides = {**TOY, **ENDLESS, "max_train_seconds": 1}
    argv = ["--plans", "popularity", "sasrec", "token", "iam", "--inputs", "text+id",
            "--seeds", "0", "1", "--extra-seeds", "2", "--budget-seconds", str(budget),
            "--parallel", "2", "--min-epochs", "100000", "--calibrate-seconds", "0.3",
            "--out", str(out), "--set", *[f"{k}={json.dumps(v)}" for k, v in overrides.items()]]  # fmt: skip
    began = time.time()
    facts = full.main(argv)
    # Sizing: the most epochs that fit the room left, the optional group (seed 2) dropped.
    timings = {k: sizing.Timing(**{f: v for f, v in t.items() if f != "epoch_seconds"})
               for k, t in facts["timings"].items()}  # fmt: skip
    kinds = ["sasrec", "token+id", "iam+id"] * 2
    assert set(timings) == {"sasrec", "token+id", "iam+id"} and facts["kept_groups"] == 1
    most = ENDLESS["max_epochs"]
    assert facts["epochs"] == sizing.size_epochs(kinds, timings, 2, facts["room_seconds"], most)
    assert facts["predicted_train_seconds"] <= facts["room_seconds"] < budget
    assert {"sasrec_seed2", "iam+id_seed2"} <= set(facts["dropped"]) and not facts["failed"]
    # Every cell written whole, with the sized epochs and a cap; caps ended them, in time.
    cells = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    trained = [c for c in cells if c["plan"] != "popularity"]
    assert len(cells) == 8 and len(trained) == 6 and not list((out / "runs").glob("*.tmp"))
    for c in trained:
        assert c["config"]["max_epochs"] == facts["epochs"] and c["stopped_by"] == "time"
        assert 0 < c["config"]["max_train_seconds"] <= 1 and c["worker"]["ended"] < began + budget
    # Two workers, and cells of both ran at the same time.
    spans = [(c["worker"]["pid"], c["worker"]["started"], c["worker"]["ended"]) for c in trained]
    assert len({pid for pid, _, _ in spans}) == 2
    assert any(p != q and a < d and c < b for p, a, b in spans for q, c, d in spans)
    # The bundle: table, CIs, figure, sizing, and the short table printed last.
    for name in ("comparison.csv", "report.txt", "summary.txt", "sizing.json", "comparison.png"):
        assert (out / name).exists(), name
    assert "95% CI" in (out / "report.txt").read_text()
    printed = capsys.readouterr().out.rstrip().splitlines()
    heads = [i for i, line in enumerate(printed) if line.startswith("FULL · test, seen")]
    assert heads and len(printed) - heads[-1] == 3 + 4  # head, 2 header lines, 4 cells


def test_cli_rejects_bad_flags(env, capsys):
    for argv in (["--budget-seconds", "0"], ["--parallel", "0"], ["--set", "max_train_seconds=-1"]):
        with pytest.raises(SystemExit) as exit_:
            full.main(argv)
        assert exit_.value.code == 2 and capsys.readouterr().err.startswith("error: ")
