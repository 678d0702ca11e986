import dataclasses
import json

import numpy as np
import pytest

import iam_tutorial.lab.compare as compare
from iam_tutorial.config import get_config
from iam_tutorial.lab import fingerprint, report, runner, store
from iam_tutorial.lab.experiments import EXPERIMENTS
from iam_tutorial.lab.stats import verdicts

COMPARE_PLANS = EXPERIMENTS["full"].plans

TINY = dict(n_users=10, n_layer=2, n_head=2, n_embd=16, max_items=5, max_tokens=80, vocab_size=300,
            batch_size=5, max_epochs=1)  # fmt: skip


@pytest.fixture
def env(monkeypatch, synthetic_root, tmp_path):
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    monkeypatch.setenv("IAM_FIGURES_DIR", str(tmp_path / "figures"))
    return tmp_path


def test_comparison_table_and_resume(env, monkeypatch):
    plans, seeds = ("popularity", "token", "iam"), (0, 1)
    table = runner.run_comparison("quick", plans, seeds, env, progress=False, **TINY)
    cells = {"popularity", "token", "token+id", "iam", "iam+id"}
    assert set(table.cell) == cells and set(table.seed) == set(seeds)
    assert (env / "comparison.csv").exists() and len(list((env / "runs").glob("*.json"))) == 10
    stored = json.loads((env / "runs" / "iam+id_seed1.json").read_text())
    assert (
        len(stored["ranks"]["test"]["seen_excluded"]) == 10
        and stored["config"]["item_input"] == "text+id"
    )
    summary = report.summarize(table, n_layer=2)
    assert set(summary.index) == cells and (summary["seeds"] == 2).all()
    assert summary.loc["iam", "layers"] == "intra+inter · intra+inter"

    def no_training(*args, **kwargs):
        raise AssertionError("finished cells must not be retrained")

    monkeypatch.setattr(runner, "run", no_training)
    again = runner.run_comparison("quick", plans, seeds, env, progress=False, **TINY)
    assert again.equals(table)
    with pytest.raises(AssertionError, match="retrained"):  # a changed config is not reused
        runner.run_comparison("quick", ("token",), (0,), env, progress=False, **{**TINY, "lr": 0.1})
    monkeypatch.setattr(store, "code_hash", lambda: "edited-code")  # other text, same behaviour
    assert runner.run_comparison("quick", plans, seeds, env, progress=False, **TINY).equals(table)
    fingerprint._probe.cache_clear()
    monkeypatch.setattr("iam_tutorial.train.lr_factor", lambda step, total, warmup: 0.5)
    with pytest.raises(AssertionError, match="retrained"):  # but not other numerics
        runner.run_comparison("quick", ("token",), (0,), env, progress=False, **TINY)
    fingerprint._probe.cache_clear()


def test_parallel_workers_write_the_same_cells(env):
    serial = runner.run_comparison(
        "quick", ("token",), (0, 1), env / "a", progress=False, inputs=("text",), **TINY
    )
    parallel = runner.run_comparison("quick", ("token",), (0, 1), env / "b", progress=False, inputs=("text",),
                                      parallel=2, **TINY)  # fmt: skip
    assert serial.drop(columns="train_seconds").equals(parallel.drop(columns="train_seconds"))


def test_report_prints_verdicts(env):
    base = get_config("quick", **TINY)
    table = runner.run_comparison("quick", ("token", "iam"), (0, 1), env, progress=False, **TINY)
    text = report.report(base, store.load_cells(env), table)
    assert "95% CI" in text and "pessimistic ties" in text
    assert any(v in text for v in ("better", "worse", "not separated"))
    assert "iam+id" in text and "token+id" in text


def test_cli_bad_input_is_one_line_exit_2(env, capsys):
    for argv in (["--set", "n_users=0"], ["--parallel", "0"], ["--set", "bogus=1"]):
        with pytest.raises(SystemExit) as exit_:
            compare.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    (env / "file").write_text("")
    with pytest.raises(SystemExit):
        compare.main(
            [
                "--out",
                str(env / "file"),
                "--set",
                *[f"{k}={json.dumps(v)}" for k, v in TINY.items()],
            ]
        )
    assert "is a file" in capsys.readouterr().err


def test_plot_comparison(env):
    from iam_tutorial.lab.plots import plot_comparison

    table = runner.run_comparison(
        "quick", ("popularity", "token"), (0, 1), env, progress=False, **TINY
    )
    fig = plot_comparison(table, "title")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["HR@10", "NDCG@10"]


def test_plans_with_identical_layers_are_trained_once():
    notes = []
    two = runner.distinct_plans(COMPARE_PLANS, get_config("quick", n_layer=2), notes.append)
    assert "iam-alt" not in two and "hatllm" in two and "iam-alt" in notes[0]
    assert runner.distinct_plans(COMPARE_PLANS, get_config("quick", n_layer=3)) == list(
        COMPARE_PLANS
    )


def test_bootstrap_ci_and_verdicts():
    from iam_tutorial.lab.stats import bootstrap_change, verdict

    rng = np.random.default_rng(0)
    ref = rng.random((5, 400))
    same = bootstrap_change(ref, ref)
    assert same[0] == 0 and same[1] <= 0 <= same[2] and verdict(*same[1:]) == "not separated"
    better = bootstrap_change(ref * 1.2, ref)
    assert better[0] == pytest.approx(0.2) and better[1] > 0 and verdict(*better[1:]) == "better"
    assert verdict(*bootstrap_change(ref * 0.8, ref)[1:]) == "worse"
    # Seed noise widens the CI beyond what user resampling alone gives.
    noisy = ref * (1 + 0.3 * rng.standard_normal((5, 1)))
    assert np.ptp(bootstrap_change(noisy, ref)[1:]) > np.ptp(
        bootstrap_change(ref * 1.0001, ref)[1:]
    )


def test_decision_table_agrees_with_verdicts(env):
    table = runner.run_comparison("quick", ("popularity", "token", "iam"), (0, 1), env,
                                   progress=False, **TINY)  # fmt: skip
    results = store.load_cells(env)
    decided = report.decision_table(results, table, n_layer=TINY.get("n_layer", 3))
    assert list(decided.index) == ["popularity", "token", "token+id", "iam", "iam+id"]
    assert {"NDCG@10", "vs token", "vs control", "vs text only", "seeds", "best epoch"} <= set(
        decided
    )
    assert (
        decided.loc["popularity", "best epoch"] == "—" and decided.loc["token", "vs token"] == "—"
    )
    row = verdicts(results).set_index(["plan", "vs"]).loc[("iam+id", "token+id")]
    mde = f" (MDE {float(row.mde.rstrip('%')):.0f}%)" if row.verdict == "not separated" else ""
    assert (
        decided.loc["iam+id", "vs token"]
        == f"{row.change} [{row.ci_low}, {row.ci_high}] {row.verdict}{mde}"
    )
    markdown = report.to_markdown(decided).splitlines()
    assert markdown[0].startswith("| cell | layers | NDCG@10") and len(markdown) == 2 + len(decided)


def test_convergence_counts_and_late_gain():
    from iam_tutorial.lab.stats import convergence, late_gain

    def result(seed, valid, best, stopped):
        return {"cell": "iam", "plan": "iam", "seed": seed, "best_epoch": best, "epochs": len(valid),
                "converged": best < len(valid), "stopped_by": stopped,
                "config": {"decay_epochs": 2, "max_epochs": 6}, "history": {"valid_NDCG@10": valid}}  # fmt: skip

    rising = result(0, [0.1, 0.2, 0.3, 0.4], 4, "cap")  # best after decay: 0.4 / 0.2 - 1
    flat = result(1, [0.1, 0.2, 0.2, 0.15, 0.1], 2, "plateau")
    assert late_gain(rising) == pytest.approx(1.0) and late_gain(flat) == pytest.approx(0.0)
    row = convergence([rising, flat]).loc["iam"]
    assert (row.seeds, row.best_epoch, row.epochs) == (2, "4/2", "4/5")
    assert (row.converged, row.plateau, row.gain_after_decay) == ("1/2", "1/2", "+50.0%")
    constant = {**rising, "config": {"decay_epochs": 0, "max_epochs": 4}}  # no decay, no late gain
    assert convergence([constant]).loc["iam"].gain_after_decay == "—"


def test_shared_users_catch_what_seeds_alone_miss():
    """A crafted case: the plan differs from the reference only through a per-user effect that
    persists across seeds (mean slightly positive). Resampling seeds alone calls it "better";
    the shared-user bootstrap sees the user spread and, with the t-test, says "not separated"."""
    from iam_tutorial.lab.stats import bootstrap_change, paired_t, test_pair, verdict

    rng = np.random.default_rng(1)
    n_seed, n_user = 5, 300
    ref = 0.05 + 0.01 * rng.random((n_seed, n_user))
    user_effect = 0.02 + 0.25 * rng.standard_normal(n_user)  # the same users in every seed
    plan = ref * (1 + user_effect) + 1e-4 * rng.standard_normal((n_seed, n_user))
    seeds_only = bootstrap_change(plan, ref, users="fixed")
    shared = bootstrap_change(plan, ref, users="shared")
    assert verdict(*seeds_only[1:]) == "better"
    assert verdict(*shared[1:]) == "not separated"
    assert paired_t(plan, ref)[0] > 0  # seed means alone look separated too ...
    decided = test_pair(plan, ref)
    assert decided["verdict"] == "not separated"  # ... but a verdict needs both tests
    assert decided["mde"] > abs(decided["change"])


def test_paired_t_and_mde():
    from iam_tutorial.lab.stats import T975, paired_t, test_pair

    rng = np.random.default_rng(0)
    ref = rng.random((4, 200))
    shift = np.array([[0.08], [0.12], [0.10], [0.10]])
    low, high, mde = paired_t(ref * (1 + shift), ref)
    d = (ref * shift).mean(1)
    half = T975[2] * d.std(ddof=1) / 2 / ref.mean()
    assert low == pytest.approx(d.mean() / ref.mean() - half)
    assert high == pytest.approx(d.mean() / ref.mean() + half)
    assert 0 < mde < 0.1
    assert np.isnan(paired_t(ref[:1], ref[:1])[0])  # one seed: no interval ...
    assert test_pair(ref[:1] * 1.5, ref[:1])["verdict"] == "no verdict (1 seed)"  # ... so none
    assert test_pair(ref * (1 + shift), ref)["verdict"] == "better"


def test_no_stored_cells_says_how_to_train(tmp_path):
    with pytest.raises(store.NoCells, match=r"No cells are stored in .*quick/runs.*--mode quick"):
        store.load_cells(tmp_path / "quick", required="quick")
    with pytest.raises(store.NoCells, match=r"epochs-1/runs: train them .*--mode llm`"):
        store.load_cells(tmp_path / "llm" / "epochs-1", required="llm")  # a budget's folder
    assert store.load_cells(tmp_path / "quick") == []
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--mode", "quick", "--report-only", "--out", str(tmp_path / "quick")])
    assert exit_.value.code == 2


def test_printed_report_fits_100_columns_and_the_full_one_is_written(env, capsys):
    runner.run_comparison("quick", ("popularity", "token", "iam"), (0,), env, progress=False,
                           **TINY)  # fmt: skip
    compare.main(["--mode", "quick", "--report-only", "--out", str(env)])
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if str(env) not in line]  # paths vary
    assert max(len(line) for line in lines) <= 100
    assert "vs token" in printed and "full report" in printed
    assert "convergence per cell" in (env / "report.txt").read_text()


def test_short_verdicts():
    assert report.short("+5.5% [-24.6%, +44.9%] not separated (MDE 52%)") == "+5.5% [-25, +45] n.s."
    assert report.short("+87.7% [+34.0%, +175.8%] better") == "+87.7% [+34, +176] better"
    assert report.short("—") == "—"


def test_one_seed_says_why_it_has_no_verdict():
    """One seed: a bootstrap interval that excludes zero is never printed beside "n.s.", and the
    missing t-interval reads "—", never "+nan%"."""
    from iam_tutorial.lab.stats import test_pair, verdicts

    ref = np.random.default_rng(0).random((1, 200))
    one = test_pair(ref * 1.5, ref)
    assert one["ci_low"] > 0 and one["verdict"] == "no verdict (1 seed)"
    text = report.change_text(one)
    assert text == f"+50.0% [{one['ci_low']:+.1%}, {one['ci_high']:+.1%}] no verdict (1 seed)"
    assert report.short(text).endswith("] 1 seed")
    results = [{"cell": c, "plan": c, "seed": 0, "ranks": {"test": {"seen_excluded": r}}}
               for c, r in (("iam", [0, 1, 2, 3]), ("token", [1, 2, 3, 4]))]  # fmt: skip
    row = verdicts(results, (("iam", "token"),)).iloc[0]
    assert (row.t_low, row.t_high, row.verdict) == ("—", "—", "no verdict (1 seed)")


def test_variance_components_recover_a_simulated_design():
    from iam_tutorial.lab.stats import design_mde, variance_components

    rng = np.random.default_rng(0)
    n_seed, n_user = 6, 4000
    user = rng.normal(0, 0.05, n_user)  # persists across seeds
    seed = rng.normal(0, 0.004, (n_seed, 1))
    ref = np.full((n_seed, n_user), 0.1)
    plan = ref + 0.01 + user + seed + rng.normal(0, 0.1, (n_seed, n_user))
    c = variance_components(plan, ref)
    assert c["user"] == pytest.approx(0.05**2, rel=0.15)
    assert c["residual"] == pytest.approx(0.1**2, rel=0.05)
    assert c["base"] == pytest.approx(0.1)
    # More users and seeds detect smaller effects; the persistent user part caps what seeds buy.
    assert design_mde(c, 10, 4000) < design_mde(c, 3, 4000) < design_mde(c, 3, 300)
    cap = (1.960 + 0.842) * np.sqrt(c["user"] / 4000) / c["base"]
    assert design_mde(c, 10_000, 4000) == pytest.approx(cap, rel=0.05)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        variance_components(plan[:1], ref[:1])


def test_budgets_train_each_cell_once_and_resume(env, monkeypatch, capsys):
    """Budgets 1 and 2: one 2-epoch run per (plan, seed), its epoch-1 snapshot stored as the
    1-epoch cell; a second call trains nothing; a new seed trains only that seed (the grid is
    the experiment's, never a cell's config)."""
    budgeted = {**TINY, "max_epochs": 2, "min_epochs": 2, "decay_epochs": 0, "budgets": (1, 2)}
    runs = []
    real_run = runner.run
    monkeypatch.setattr(runner, "run", lambda cfg, **kw: runs.append(cfg) or real_run(cfg, **kw))
    plans = ("popularity", "token")
    out = runner.run_comparison("quick", plans, (0,), env, progress=False, inputs=("text",),
                                 **budgeted)  # fmt: skip
    assert sorted(out) == [1, 2] and [(c.plan, c.max_epochs) for c in runs] == [
        ("popularity", 2), ("popularity", 1), ("token", 2)]  # fmt: skip
    for b in (1, 2):
        cells = {p.name for p in (env / f"epochs-{b}" / "runs").glob("*.json")}
        assert cells == {"popularity_seed0.json", "token_seed0.json"}
        assert json.loads((env / f"epochs-{b}/runs/token_seed0.json").read_text())["epochs"] == b
    runs.clear()
    runner.run_comparison("quick", plans, (0, 1), env, progress=False, inputs=("text",),
                           **budgeted)  # fmt: skip
    assert [(c.plan, c.seed) for c in runs] == [("popularity", 1), ("popularity", 1), ("token", 1)]
    cfg = get_config("quick", **{k: v for k, v in budgeted.items() if k != "budgets"})
    assert store.fingerprint(cfg) != store.fingerprint(dataclasses.replace(cfg, lr=1.0))
    text = report.publish_budgets(cfg, {b: store.load_cells(env / f"epochs-{b}") for b in (1, 2)},
                                   env)  # fmt: skip
    assert "epochs" in text and (env / "budgets.txt").exists() and "token" in text


def test_stored_cells_of_every_results_folder_still_read():
    """Cells stored before lab/experiments.py carry the grid in their config dicts: they still
    give a Config (the retired grid fields dropped) whose fingerprint is the one they stored."""
    from iam_tutorial.config import RETIRED, config_from_dict
    from iam_tutorial.paths import REPO_ROOT

    paths = sorted((REPO_ROOT / "results").glob("**/runs/*.json"))
    assert paths
    old = 0
    for path in paths:
        stored = json.loads(path.read_text())
        cfg = config_from_dict(stored["config"])
        assert store.cell_name(cfg) == stored["cell"]
        old += bool(set(RETIRED) & set(stored["config"]))
    assert old  # the committed cells do include old ones


def test_an_experiment_the_plans_cannot_fill_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--plans", "hatllm", "--set", "n_layer=1", "--report-only"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Experiment plans=") and "n_layer >= 2" in err
    assert len(err.strip().splitlines()) == 1


def test_set_may_name_the_grid_as_the_scripts_do():
    args = compare.parse_args(["--mode", "llm", "--set", "seeds=[0,1]", "n_users=40"])
    exp = compare.experiment_from_args(args)
    assert exp.seeds == (0, 1) and exp.run.n_users == 40 and exp.budgets == (1, 2, 4)


def test_t_quantiles_and_the_chi_square_table():
    from iam_tutorial.lab.stats import CHI2_05, T80, T975, t_ppf

    for df in (1, 2, 4, 9, 30):
        assert round(t_ppf(0.975, df), 3) == T975[df - 1]
        assert round(t_ppf(0.80, df), 3) == T80[df - 1]
    assert round(t_ppf(0.9875, 4), 3) == 3.495  # Holm's first step over two pairs, 5 seeds
    rng = np.random.default_rng(0)
    for df in (2, 4, 9):  # the table's 5% quantiles, against a simulation
        assert abs(np.quantile(rng.chisquare(df, 400_000), 0.05) / CHI2_05[df - 1] - 1) < 0.02


def test_holm_tests_the_pairs_step_down():
    from iam_tutorial.lab.stats import holm, test_pair

    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 0.4, size=(5, 400))
    noise = rng.normal(0, 0.003, size=(5, 1))  # a seed-level difference: the t-interval's width
    strong = ref * 1.3 + rng.normal(0, 0.01, size=ref.shape)
    weak = next(  # the smallest change separated at 95%: not yet at 97.5%
        ref * (1 + s) + noise
        for s in np.linspace(0.001, 0.05, 200)
        if test_pair(ref * (1 + s) + noise, ref)["verdict"] == "better"
    )
    assert test_pair(weak, ref, level=0.975)["verdict"] == "not separated"
    both = holm({"strong": (strong, ref), "weak": (weak, ref)})  # strong first, then weak at 95%
    assert both["strong"]["verdict"] == "better" == both["weak"]["verdict"]
    alone = holm({"weak": (weak, ref), "none": (ref * 1.0, ref)})  # nothing passes step one
    assert alone["weak"]["verdict"] == "not separated" == alone["none"]["verdict"]


def test_the_seed_bound_covers_the_seed_sd():
    from iam_tutorial.lab.stats import seed_sd_upper, variance_components

    rng = np.random.default_rng(0)
    covered, above_point = 0, 0
    for _ in range(200):
        ref = rng.uniform(0.2, 0.4, size=(5, 300))
        plan = ref + rng.normal(0, 0.01, size=(5, 1)) + rng.normal(0, 0.05, size=ref.shape)
        bound = seed_sd_upper(plan, ref)
        covered += bound >= 0.01
        above_point += bound >= np.sqrt(variance_components(plan, ref)["seed"])
    assert above_point == 200 and covered >= 180  # a one-sided 95% bound: ~190 of 200


def test_the_bootstrap_mde_reads_one_standard_error_at_every_level():
    """test_pair's bootstrap MDE at a Holm level (97.5%) comes from that level's quantile: the
    standard error it implies is the one the 95% interval implies (seeds identical here, so the
    t-interval has zero width and the bootstrap alone sets the MDE)."""
    from statistics import NormalDist

    from iam_tutorial.lab.stats import Z80, test_pair

    rng = np.random.default_rng(0)
    ref = rng.gamma(0.5, 0.2, 1000)
    plan = np.clip(ref + rng.normal(0, 0.05, 1000), 0, None)
    plan, ref = np.tile(plan, (3, 1)), np.tile(ref, (3, 1))  # (seed user), 3 identical seeds
    se = {}
    for level in (0.95, 0.975):
        z = NormalDist().inv_cdf(0.5 + level / 2)
        se[level] = test_pair(plan, ref, n_boot=20_000, level=level)["mde"] / (z + Z80)
    assert se[0.975] == pytest.approx(se[0.95], rel=0.015)
