"""A planned comparison's decision (results/every-user/PLAN.md), from the stored per-user ranks.

The plan names its primary metric (test NDCG@10, seen items excluded), its primary pairs and the
correction over them (Holm, stats.holm: a pair is decided only when both its intervals exclude
zero at the step's level). Beside the verdicts, what the plan promises to report: each pair's
variance components with the seed component's 95% upper bound, the minimum detectable effect
(MDE, 80% power) both ways, HR@10, trained and unseen users apart, and the baselines (`token` vs
SASRec trained on the same users: what the text prior buys). Secondary rows are described, not
decided: their intervals are at 95% with no correction.
"""

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from iam_tutorial.lab.experiments import EXPERIMENTS
from iam_tutorial.lab.stats import (
    design_mde,
    holm,
    percent,
    seed_sd_upper,
    test_pair,
    variance_components,
)
from iam_tutorial.metrics import ndcg_at, protocol

PRIMARY = (("hatllm", "token"), ("iam-heads", "token"))
BASELINES = (("token", "sasrec"), ("token", "popularity"), ("sasrec", "popularity"))
CELLS = ("popularity", "sasrec", "token", "hatllm", "iam-heads")
LLM = ("token", "hatllm", "iam-heads")  # the cells the primary pairs compare
SEEDS = EXPERIMENTS["every-user"].seeds  # of each LLM cell (PLAN.md)


def per_user(ranks, metric: str) -> np.ndarray:
    """Per-user NDCG@10 or HR@10 from 0-based target ranks."""
    if metric == "NDCG@10":
        return ndcg_at(ranks, 10).numpy()
    if metric == "HR@10":
        return (np.asarray(ranks) < 10).astype(float)
    raise ValueError(f"metric {metric!r}: choose NDCG@10 or HR@10.")


def user_groups(results: list[dict]) -> dict[str, slice]:
    """All users, the trained ones (users 1..train_users: the first rows of every stored rank
    list, which follows user ids) and the rest, unseen in training."""
    n_users = len(results[0]["ranks"]["test"]["seen_excluded"])
    trained = results[0]["config"]["train_users"] or n_users
    return {
        f"all {n_users:,}": slice(None),
        f"trained 1..{trained:,}": slice(0, trained),
        f"unseen {trained + 1:,}..{n_users:,}": slice(trained, None),
    }


def scores(results: list[dict], cell: str, metric="NDCG@10", users=slice(None)) -> dict:
    """{seed: per-user metric} of one cell's test ranks (seen items excluded), users `users`."""
    return {
        r["seed"]: per_user(r["ranks"]["test"]["seen_excluded"], metric)[users]
        for r in results
        if r["cell"] == cell
    }


def shared_seeds(results: list[dict], plan: str, ref: str) -> list[int]:
    """The seeds both cells have."""
    seeds = lambda cell: {r["seed"] for r in results if r["cell"] == cell}  # noqa: E731
    return sorted(seeds(plan) & seeds(ref))


def paired(results, plan, ref, metric="NDCG@10", users=slice(None)):
    """The two cells' per-user scores over the seeds both have: arrays (seed user), or None
    with fewer than 2 (no paired test)."""
    if len(seeds := shared_seeds(results, plan, ref)) < 2:
        return None
    a, b = scores(results, plan, metric, users), scores(results, ref, metric, users)
    return np.stack([a[s] for s in seeds]), np.stack([b[s] for s in seeds])


def progress(results: list[dict]) -> tuple[int, int]:
    """(LLM cells in, LLM cells the plan names): the plan decides once every one is in; a
    verdict before that is an interim look (Holm's levels depend on both primary pairs)."""
    done = sum(len({r["seed"] for r in results if r["cell"] == c} & set(SEEDS)) for c in LLM)
    return done, len(SEEDS) * len(LLM)


def interim(results: list[dict]) -> str:
    """' (interim: 13 of 15 LLM cells)' before the plan's cells are all in, else ''."""
    done, planned = progress(results)
    return f" (interim: {done} of {planned} LLM cells)" if done < planned else ""


def primary(results: list[dict]) -> pd.DataFrame:
    """The primary pairs after Holm's correction: change, both intervals at the level of the
    pair's last step, the verdict. A pair with fewer than 2 shared seeds is not tested."""
    pairs = {f"{p} vs {r}": paired(results, p, r) for p, r in PRIMARY}
    ready = {name: pair for name, pair in pairs.items() if pair is not None}
    tested = holm(ready) if len(ready) == len(PRIMARY) else {}
    rows = []
    for (plan, ref), name in zip(PRIMARY, pairs, strict=True):
        seeds = len(shared_seeds(results, plan, ref))
        rows.append({"pair": name, "seeds": seeds, **tested.get(name, {})})
    return pd.DataFrame(rows)


def described(results: list[dict]) -> pd.DataFrame:
    """Every secondary comparison at 95% with no correction: the primary pairs on HR@10 and on
    the trained and unseen users apart, and the baselines (all users, both metrics)."""
    groups = list(user_groups(results).items())
    rows = []
    for metric in ("NDCG@10", "HR@10"):
        for plan, ref in (*PRIMARY, *BASELINES):
            for label, users in groups:
                primary_row = (
                    (plan, ref) in PRIMARY and metric == "NDCG@10" and label == groups[0][0]
                )
                pair = None if primary_row else paired(results, plan, ref, metric, users)
                if pair is not None:
                    t = test_pair(*pair)
                    rows.append({"pair": f"{plan} vs {ref}", "metric": metric, "users": label,
                                 "seeds": len(pair[0]), **t})  # fmt: skip
    return pd.DataFrame(rows)


def noise(results: list[dict]) -> pd.DataFrame:
    """Per primary pair and `token` vs SASRec, test NDCG@10 on all users: the SDs of the variance
    components (stats.variance_components) with the seed SD's one-sided 95% upper bound, and the
    MDE at 80% power two ways: from the components at this design (also with the seed SD at its
    bound) and from the width of the bootstrap/t rule (the one verdicts use)."""
    rows = []
    for plan, ref in (*PRIMARY, BASELINES[0]):
        pair = paired(results, plan, ref)
        if pair is None:
            continue
        c = variance_components(*pair)
        seeds, users = pair[0].shape
        bound = seed_sd_upper(*pair)
        rows.append(
            {
                "pair": f"{plan} vs {ref}",
                "seeds": seeds,
                "users": users,
                "sd seed": math.sqrt(c["seed"]),
                "sd seed, 95% bound": bound,
                "sd user": math.sqrt(c["user"]),
                "sd residual": math.sqrt(c["residual"]),
                "MDE components": design_mde(c, seeds, users),
                "MDE components, seed at bound": design_mde(c | {"seed": bound**2}, seeds, users),
                "MDE bootstrap/t": test_pair(*pair)["mde"],
                "seeds for 10%": seeds_for(c, users),
                "seeds for 10%, seed at bound": seeds_for(c | {"seed": bound**2}, users),
            }
        )
    return pd.DataFrame(rows)


def seeds_for(components: dict, users: int, target: float = 0.10, most: int = 200) -> str:
    """The fewest seeds on these users whose MDE (components) reaches `target`, or why none does:
    the persistent user part alone keeps it above (more seeds cannot help), or more than `most`."""
    cap = design_mde(components | {"seed": 0.0, "residual": 0.0}, 1, users)
    if cap > target:
        return f"none (users alone: {cap:.0%})"
    need = next((s for s in range(2, most + 1) if design_mde(components, s, users) <= target), None)
    return str(need) if need else f"> {most}"


def cells(results: list[dict]) -> pd.DataFrame:
    """Per cell: test NDCG@10 mean ± SD over seeds on all, trained and unseen users, HR@10 on all,
    seeds, epochs run, and minutes (mean over seeds) of training and validation, and of the whole
    cell (loading and the test included)."""
    groups = user_groups(results)
    rows = []
    for cell in (c for c in CELLS if any(r["cell"] == c for r in results)):
        mine = [r for r in results if r["cell"] == cell]
        row = {"cell": cell}
        for label, users in groups.items():
            row[f"NDCG@10 {label.split()[0]}"] = spread(scores(results, cell, users=users))
        row["HR@10"] = spread(scores(results, cell, "HR@10"))
        row["seeds"] = len(mine)
        row["epochs run"] = "/".join(sorted({str(r.get("epochs", 0)) for r in mine}))
        row["train+valid min"] = minutes([r["wall_seconds"] for r in mine])
        row["cell min"] = minutes([r.get("cell_seconds") for r in mine])
        rows.append(row)
    return pd.DataFrame(rows).set_index("cell")


def minutes(seconds: list) -> str:
    """Mean minutes ('—' if any is missing: cells stored before whole cells were timed)."""
    return "—" if None in seconds else f"{np.mean(seconds) / 60:.1f}"


def spread(by_seed: dict) -> str:
    """'0.0676 ± 0.0011' over seeds of the per-seed means ('0.0676' for one seed, or where every
    seed gives the same: popularity)."""
    means = np.array([v.mean() for v in by_seed.values()])
    sd = means.std(ddof=1) if len(means) > 1 else 0.0
    return f"{means.mean():.4f}" + (f" ± {sd:.4f}" if sd > 0 else "")


def change(row) -> str:
    """'+5.5% [boot -2.1%, +13.0%; t -1.0%, +12.0%]': a change with both intervals."""
    p = lambda x: percent(x, "+")  # noqa: E731
    return (f"{p(row['change'])} [boot {p(row['ci_low'])}, {p(row['ci_high'])}; "
            f"t {p(row['t_low'])}, {p(row['t_high'])}]")  # fmt: skip


def hardware(results: list[dict]) -> str:
    """Where and how long: the CPUs and threads the cells ran on, and the hours they took."""
    where = sorted({f"{r['device']} ({r['threads']} threads)" for r in results})
    train = sum(r["wall_seconds"] for r in results) / 3600
    timed = [r["cell_seconds"] for r in results if "cell_seconds" in r]
    whole = f"; {len(timed)} cells timed whole: {sum(timed) / 3600:.1f} h" if timed else ""
    return f"{'; '.join(where)}: {len(results)} cells, {train:.1f} h training and validation{whole}"


def protocol_line(results: list[dict]) -> str:
    """The protocol of every number in the report: split, ranking, users, catalog, seeds, and
    what trained (SASRec's epochs are its own: early stopping on validation)."""
    first = results[0]
    llm = [r["config"]["max_epochs"] for r in results if r["config"]["backbone"] != "scratch"]
    trained = f"users 1..{first['config']['train_users']:,}"
    budget = f"LLM {max(llm)} epoch, SASRec to its best validation epoch" if llm else "—"
    return protocol(
        "test",
        users=f"all {len(first['ranks']['test']['seen_excluded']):,}",
        catalog=f"all {first['data']['items']:,} items",
        trained_on=trained,
        budget=budget,
        seeds=", ".join(map(str, sorted({r["seed"] for r in results}))),
    )


def report(results: list[dict], head=None, rest=None) -> str:
    """The printed decision: protocol, cells, the primary verdicts (`head`: primary(results)),
    the noise, the secondaries (`rest`: described(results)); each computed here if not given."""
    head = primary(results) if head is None else head
    rest = described(results) if rest is None else rest.copy()
    out = textwrap.wrap(protocol_line(results), 100)
    out += ["", "cells (mean ± SD over seeds of each seed's mean over users):"]
    out += [cells(results).to_string(), ""]
    out += textwrap.wrap(
        "PRIMARY: relative change of test NDCG@10 vs token, Holm over the two "
        "pairs; intervals at the level of each pair's last Holm step:",
        100,
    )
    for row in head.to_dict("records"):
        if not isinstance(row.get("verdict"), str):  # not tested yet
            out.append(f"  {row['pair']}: not tested yet ({row['seeds']} shared seeds; Holm tests "
                       "both pairs once each has 2)")  # fmt: skip
            continue
        out.append(f"  {row['pair']} ({row['seeds']} seeds, {row['level']:.1%}): "
                   f"{change(row)} -> {row['verdict']}{interim(results)}")  # fmt: skip
    table = noise(results)
    if len(table):
        shown = table.copy()
        for col in [c for c in shown if c.startswith("sd")]:
            shown[col] = shown[col].map(lambda x: f"{x:.4f}")
        for col in [c for c in shown if c.startswith("MDE")]:
            shown[col] = shown[col].map(percent)
        out += [
            "",
            *textwrap.wrap(
                "noise: SDs of the per-user difference's variance components (NDCG@10), the seed "
                "SD's one-sided 95% upper bound, MDE at 80% power (relative to the reference's "
                "mean); verdicts use the bootstrap/t rule:",
                100,
            ),
            shown.to_string(index=False),
        ]
    if len(rest):
        rest["change [intervals]"] = [change(r) for r in rest.to_dict("records")]
        side = {"better": "above 0", "worse": "below 0"}
        rest["both intervals"] = rest.verdict.map(lambda v: side.get(v, "straddle 0"))
        out += ["", "SECONDARY, described, not decided (95%, no correction):",
                rest[["pair", "metric", "users", "seeds", "change [intervals]",
                      "both intervals"]].to_string(index=False)]  # fmt: skip
    out += ["", "hardware: " + hardware(results)]
    return "\n".join(out)


def publish(results: list[dict], out_dir: Path) -> str:
    """Write <out>/report.txt and <out>/forest.png; return the report."""
    from iam_tutorial.lab.plots import plot_forest
    from iam_tutorial.viz import save_fig

    head, rest = primary(results), described(results)  # the bootstraps, once for both
    text = report(results, head, rest)
    Path(out_dir, "report.txt").write_text(text + "\n")
    tested = forest_rows(results, head, rest)
    if len(tested):
        fig = plot_forest(tested, "every user: change of test NDCG@10", level="")
        print("figure:", save_fig(fig, "forest", folder=out_dir))
    return text


def forest_rows(results: list[dict], head=None, rest=None) -> pd.DataFrame:
    """The forest plot's rows (test NDCG@10): the primary pairs at their Holm level, coloured by
    verdict; then, grey (described, not decided), the primary pairs on trained and unseen users
    and `token` vs SASRec, at 95% (the pairs with popularity, 2-3x apart, would hide the rest).
    `head`, `rest`: primary(results) and described(results), computed here if not given."""
    head = primary(results) if head is None else head
    rest = described(results) if rest is None else rest
    rows = [r | {"label": f"{r['pair']}, all ({r['level']:.1%}, Holm)"}
            for r in head.to_dict("records") if isinstance(r.get("verdict"), str)]  # fmt: skip
    kept = (
        rest[(rest.metric == "NDCG@10") & ~rest.pair.str.endswith("popularity")]
        if len(rest)
        else rest
    )
    for r in kept.to_dict("records"):
        label = f"{r['pair']}, {r['users'].split()[0]} (95%)"
        rows.append(r | {"verdict": "described (95%, uncorrected)", "label": label})
    return pd.DataFrame(rows)


def markdown(results: list[dict], head=None, bounds=None) -> str:
    """The results page's table (scripts/results_page.py): per cell, test NDCG@10 on all, trained
    and unseen users and HR@10 (mean ± SD over seeds); for the item-aware plans the change vs
    `token` with both intervals, its Holm level and verdict, the MDE of the bootstrap/t rule at
    that level and the seed SD's 95% bound; for every LLM cell the change vs SASRec (95%,
    described); '—' where a cell or a pair is not in yet. `head`, `bounds`: primary(results) and
    noise(results), computed here if not given."""
    table = cells(results)
    head = (primary(results) if head is None else head).set_index("pair")
    bounds = noise(results) if bounds is None else bounds
    bounds = bounds.set_index("pair") if len(bounds) else bounds
    rows = ["| cell | NDCG@10, all | trained | unseen | HR@10 | vs token (Holm) | "
            "MDE at its Holm level | seed SD, 95% bound | vs SASRec (95%) | seeds |",
            "|" + " --- |" * 10]  # fmt: skip
    marker = interim(results)
    for cell in CELLS:
        if cell not in table.index:
            rows.append(f"| {cell} | not run yet |" + " |" * 7 + " 0 |")
            continue
        row, pair = table.loc[cell], f"{cell} vs token"
        vs, mde, bound, sasrec = "—", "—", "—", "—"
        if pair in head.index and isinstance(head.loc[pair].get("verdict"), str):
            t = head.loc[pair]
            vs = f"{change(t)} at {t['level']:.1%}: **{t['verdict']}**{marker}"
            mde = percent(t["mde"])  # the MDE of the rule that gave the verdict, at its Holm level
        if pair in bounds.index:
            bound = f"{bounds.loc[pair, 'sd seed, 95% bound']:.4f}"
        if cell not in ("popularity", "sasrec") and (both := paired(results, cell, "sasrec")):
            sasrec = change(test_pair(*both))
        ndcg = [row[c] for c in table.columns if c.startswith("NDCG@10")]
        rows.append(f"| {cell} | {' | '.join(ndcg)} | {row['HR@10']} | {vs} | {mde} | {bound} | "
                    f"{sasrec} | {row['seeds']} |")  # fmt: skip
    return "\n".join(rows)


def answer(results: list[dict], head=None, sizing=None) -> str:
    """The answer in a few sentences of Markdown (the README's and notebook 04's, written by
    scripts/results_page.py): the verdicts after Holm, or why there is none and what the run can
    detect; every cell's mean ± SD; SASRec and popularity beside them; how many cells are in.
    `head`, `sizing`: primary(results) and noise(results), computed here if not given."""
    table = cells(results)
    head = (primary(results) if head is None else head).set_index("pair")
    seeds = {c: sum(r["cell"] == c for r in results) for c in CELLS}
    first = next((r for r in results if r["cell"] in LLM), None)
    if first is None:
        return "**Not decided yet.** No LLM cell of the run is in (`make every-user` starts it)."
    n_users, items = len(first["ranks"]["test"]["seen_excluded"]), first["data"]["items"]
    epochs = first["config"]["max_epochs"]

    def plan(pair):  # "`hatllm`" of "hatllm vs token"
        return f"`{pair.split(' vs ')[0]}`"

    def mean(c):
        few = f" ({seeds[c]} seed{'s' * (seeds[c] > 1)})" if seeds[c] < len(SEEDS) else ""
        return f"`{c}` {table.loc[c, 'NDCG@10 all']}{few}"

    tested = {p: head.loc[p] for p in head.index if isinstance(head.loc[p].get("verdict"), str)}
    decided = {p: t["verdict"] for p, t in tested.items() if t["verdict"] in ("better", "worse")}
    done, planned = progress(results)
    if len(tested) < len(PRIMARY) or done < planned:  # the plan decides once every cell is in
        lead = f"**Not decided yet: {done} of the plan's {planned} LLM cells are in.**"
    elif not decided:
        lead = f"**On all {n_users:,} users, neither item-aware plan is separated from `token`.**"
    else:
        said = [
            f"{plan(p)} is "
            + (f"{decided[p]} than" if p in decided else "not separated from")
            + " `token`"
            for p in tested
        ]
        lead = f"**{'; '.join(said)}.**"
    out = [
        lead,
        f"SmolLM2-135M fine-tuned for {epochs} epoch{'s' * (epochs > 1)} on users "
        f"1..{first['config']['train_users']:,} and tested on all {n_users:,} users against the "
        f"benchmark's {items:,} items (test split, seen items excluded, pessimistic ties). "
        f"Test NDCG@10, mean ± SD over seeds: "
        + ", ".join(mean(c) for c in LLM if c in table.index)
        + "".join(
            f"; {name} {table.loc[c, 'NDCG@10 all']}"
            for c, name in (
                ("sasrec", "SASRec trained on the same users"),
                ("popularity", "popularity"),
            )
            if c in table.index
        )
        + ".",
    ]
    if tested:
        out.append(
            ("An interim look (not the plan's verdict) a" if done < planned else "A")
            + "gainst `token`, after Holm's correction over the two primary pairs: "
            + "; ".join(
                f"{plan(p)} {change(t)} at {t['level']:.1%}: {t['verdict']}"
                for p, t in tested.items()
            )
            + "."
        )
        undecided = [p for p in tested if p not in decided]
        if undecided:
            mdes = " and ".join(f"{percent(tested[p]['mde'])} ({plan(p)})" for p in undecided)
            out.append(
                f"The smallest change this run detects with 80% power (the bootstrap/t "
                f"rule that verdicts use) is {mdes}: a smaller effect can go unseen, so "
                '"not separated" is not evidence of no effect.'
            )
    else:
        out.append(
            "Holm's test of the two primary pairs needs two seeds of every plan, so there is "
            "no verdict yet."
        )
    sizing = noise(results) if sizing is None else sizing
    sizing = sizing[sizing.pair.isin([f"{p} vs {r}" for p, r in PRIMARY])] if len(sizing) else []
    timed = [r for r in results if r["cell"] in LLM and "cell_seconds" in r]
    if len(sizing) and timed:
        need = ", ".join(
            f"{plan(row['pair'])} {row['seeds for 10%']} ({row['seeds for 10%, seed at bound']})"
            for row in sizing.to_dict("records")
        )
        minutes = np.mean([r["cell_seconds"] for r in timed]) / 60
        hours = minutes * planned / 60
        out.append(f"Seeds per plan for a 10% MDE (variance components; in brackets, with the seed "
                   f"SD at its 95% bound): {need}; an LLM cell takes about {minutes:.0f} min on "
                   f"{timed[0]['threads']} threads ({timed[0]['device']}): "
                   f"{hours:.1f} h for the plan's {planned} at that speed.")  # fmt: skip
    if (both := paired(results, "token", "sasrec")) is not None:
        t = test_pair(*both)
        out.append(
            f"`token` vs SASRec on the same users (what the text prior buys, described at "
            f"95%): {change(t)}."
        )
    if done < planned:
        out.append("`make every-user` trains the missing cells, resuming from the committed ones.")
    return " ".join(out)
