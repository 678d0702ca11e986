"""The every-user decision (lab/decide.py) on simulated cells whose truth is known."""

import numpy as np
import pytest

from iam_tutorial.lab import decide

USERS, TRAINED = 600, 150


def cell(name: str, seed: int, ranks: np.ndarray, llm=True) -> dict:
    """A stored cell as the runner writes it, with only the fields the decision reads."""
    return {
        "cell": name,
        "plan": name,
        "seed": seed,
        "ranks": {"test": {"seen_excluded": ranks.tolist()}},
        "config": {
            "train_users": TRAINED,
            "backbone": "smollm2-135m" if llm else "scratch",
            "max_epochs": 1 if llm else 60,
        },  # fmt: skip
        "data": {"items": 3416},
        "device": "a CPU",
        "threads": 2,
        "epochs": 1 if llm else 40,
        "train_seconds": 600.0,
        "wall_seconds": 1800.0,
        "cell_seconds": 2400.0,
    }


def simulated(shift: dict[str, float], seeds=range(5)) -> list[dict]:
    """Cells whose ranks are one user-level draw, moved per cell by `shift` (a multiplier of the
    rank: < 1 ranks targets higher, a better model) plus noise of each seed and cell."""
    rng = np.random.default_rng(0)
    base = rng.geometric(0.03, USERS) - 1.0  # (user) a user's typical rank
    out = []
    for seed in seeds:
        for i, (name, factor) in enumerate(shift.items()):
            noise = np.random.default_rng([seed, i]).normal(0, 0.3, USERS)
            ranks = np.maximum(0, np.round(base * factor * np.exp(noise))).astype(int)
            out.append(cell(name, seed, ranks, llm=name not in ("sasrec", "popularity")))
    return out


def test_before_the_llm_cells_nothing_is_tested_and_the_report_says_so():
    results = simulated({"popularity": 3.0, "sasrec": 1.0})
    head = decide.primary(results)
    assert list(head.pair) == ["hatllm vs token", "iam-heads vs token"]
    assert "verdict" not in head
    text = decide.report(results)
    assert "hatllm vs token: not tested yet (0 shared seeds; Holm tests both pairs" in text
    assert "sasrec vs popularity" in text  # the baselines are described already


def test_a_clear_gain_is_decided_under_holm_and_a_null_is_not():
    results = simulated({"token": 1.0, "hatllm": 0.5, "iam-heads": 1.0, "sasrec": 1.2})
    head = decide.primary(results).set_index("pair")
    assert head.loc["hatllm vs token", "verdict"] == "better"
    assert head.loc["hatllm vs token", "level"] == pytest.approx(0.975)  # Holm's first step
    assert head.loc["iam-heads vs token", "verdict"] == "not separated"
    assert head.loc["iam-heads vs token", "level"] == pytest.approx(0.95)  # its second step
    assert head.loc["hatllm vs token", "ci_low"] > 0 and head.loc["hatllm vs token", "t_low"] > 0


def test_user_groups_split_trained_from_unseen_users():
    groups = decide.user_groups(simulated({"token": 1.0}, seeds=[0]))
    assert list(groups) == ["all 600", "trained 1..150", "unseen 151..600"]
    users = np.arange(USERS)
    assert len(users[groups["trained 1..150"]]) == TRAINED
    assert users[groups["unseen 151..600"]][0] == TRAINED


def test_noise_bounds_the_seed_sd_and_gives_the_mde_both_ways():
    results = simulated({"token": 1.0, "hatllm": 0.9, "iam-heads": 1.0, "sasrec": 1.0})
    table = decide.noise(results).set_index("pair")
    assert list(table.index) == ["hatllm vs token", "iam-heads vs token", "token vs sasrec"]
    assert (table["sd seed, 95% bound"] >= table["sd seed"]).all()
    assert (table["MDE components, seed at bound"] >= table["MDE components"]).all()
    assert (table[["MDE components", "MDE bootstrap/t"]] > 0).all().all()
    c = {"seed": 0.0, "user": 0.0, "residual": 1.0, "base": 1.0}
    assert decide.seeds_for(c, 100) == str(round(2.8**2 / 100 / 0.1**2 + 0.5))  # (z+z)^2 r/(n d^2)
    assert decide.seeds_for(c | {"user": 1.0}, 100).startswith("none (users alone: 28%)")


def test_the_report_states_the_protocol_the_secondaries_and_the_hours():
    results = simulated({"popularity": 3.0, "sasrec": 1.0, "token": 1.0, "hatllm": 0.5,
                         "iam-heads": 1.0})  # fmt: skip
    text = " ".join(decide.report(results).split())
    for fact in ("test", "seen items excluded", "pessimistic ties", "all 600", "all 3,416 items",
                 "users 1..150", "seeds 0, 1, 2, 3, 4", "Holm", "HR@10", "unseen 151..600",
                 "described, not decided", "a CPU (2 threads): 25 cells, 12.5 h training and validation; 25 cells timed whole: 16.7 h"):  # fmt: skip
        assert fact in text, fact
    cells = decide.cells(results)
    assert list(cells.index) == ["popularity", "sasrec", "token", "hatllm", "iam-heads"]
    assert (cells["seeds"] == 5).all()
    rows = decide.forest_rows(results)
    assert rows.label.iloc[0] == "hatllm vs token, all (97.5%, Holm)"
    assert set(rows.verdict.iloc[2:]) == {"described (95%, uncorrected)"}
    assert not rows.label.str.contains("popularity").any()


def test_the_results_page_table_has_a_row_per_cell_and_says_what_is_missing():
    results = simulated({"popularity": 3.0, "sasrec": 1.0, "token": 1.0, "hatllm": 0.5})
    rows = decide.markdown(results).splitlines()
    assert len(rows) == 2 + len(decide.CELLS)
    assert rows[-1].startswith("| iam-heads | not run yet |") and rows[-1].count("|") == 11
    token, hatllm = rows[4], rows[5]
    assert "vs token" not in token and "boot" in token  # token: only its change vs SASRec
    assert "**better**" not in hatllm  # Holm waits for both primary pairs: no verdict yet
    both = simulated({"token": 1.0, "hatllm": 0.5, "iam-heads": 1.0}, seeds=range(3))
    assert "**better** (interim: 9 of 15 LLM cells)" in decide.markdown(both).splitlines()[5]


def test_the_answer_follows_the_verdicts_and_counts_the_cells():
    """decide.answer, the README's and notebook 04's first paragraph, says what Holm decided,
    the MDE of a pair it did not, the baselines, and how many LLM cells are still to come."""
    gain = decide.answer(simulated({"token": 1.0, "hatllm": 0.5, "iam-heads": 1.0, "sasrec": 1.2,
                                    "popularity": 3.0}))  # fmt: skip
    assert gain.startswith(
        "**`hatllm` is better than `token`; `iam-heads` is not separated from `token`.**"
    )
    assert "`hatllm` +" in gain and "at 97.5%: better" in gain
    assert "at 95.0%: not separated" in gain and "(`iam-heads`)" in gain  # its MDE
    assert "SASRec trained on the same users" in gain and "popularity" in gain
    assert "`token` vs SASRec" in gain and "missing cells" not in gain  # 5 seeds of each: complete
    assert "Seeds per plan for a 10% MDE" in gain
    assert "about 40 min on 2 threads (a CPU): 10.0 h for the plan's 15 at that speed" in gain
    null = decide.answer(simulated({"token": 1.0, "hatllm": 1.0, "iam-heads": 1.0}))
    assert null.startswith(
        "**On all 600 users, neither item-aware plan is separated from `token`.**"
    )
    two = decide.answer(simulated({"token": 1.0, "hatllm": 1.0, "iam-heads": 1.0}, seeds=[0, 1]))
    assert two.startswith("**Not decided yet: 6 of the plan's 15 LLM cells are in.**")
    assert "An interim look (not the plan's verdict) against `token`" in two
    assert "(`hatllm`) and" in null and "SASRec" not in null
    early = decide.answer(simulated({"token": 1.0, "hatllm": 1.0, "iam-heads": 1.0}, seeds=[0]))
    assert early.startswith("**Not decided yet: 3 of") and "(1 seed)" in early
    assert "no verdict yet" in early and "`make every-user` trains the missing cells" in early
    assert "No LLM cell" in decide.answer(simulated({"sasrec": 1.0}))


def test_a_verdict_is_interim_until_every_llm_cell_of_the_plan_is_in():
    """Holm's levels depend on both primary pairs, so with `iam-heads` one seed short even the
    complete `hatllm` pair is an interim look: one rule (decide.progress) for report, table and
    answer."""
    results = simulated({"token": 1.0, "hatllm": 0.5, "iam-heads": 1.0})
    short = [r for r in results if not (r["cell"] == "iam-heads" and r["seed"] == 4)]
    assert decide.progress(short) == (14, 15) and decide.progress(results) == (15, 15)
    assert "**better** (interim: 14 of 15 LLM cells)" in decide.markdown(short).splitlines()[5]
    assert "-> better (interim: 14 of 15 LLM cells)" in decide.report(short)
    assert "interim" not in decide.report(results) and "interim" not in decide.markdown(results)
    assert decide.answer(short).startswith("**Not decided yet: 14 of the plan's 15 LLM cells")
