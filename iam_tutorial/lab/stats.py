"""Is one plan better than another? Two tests that must agree, and the effect each could detect.

The same users appear in every seed, so part of each plan-vs-plan difference is a property of the
user that persists across seeds. Each bootstrap replicate therefore draws seeds with replacement
and, once, users with replacement, the same users for every drawn seed and for both plans (the
comparison is paired), and takes the relative change of mean NDCG@10. Beside it, the paired
t-interval on the per-seed means. A verdict is "better" or "worse" only when both 95% intervals
exclude zero; otherwise "not separated", with the minimum detectable effect (MDE) at 80% power of
the wider test: the relative change this design would find four times in five.
"""

# Axes: seed, user, replicate

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from iam_tutorial.metrics import ndcg_at  # notebook 03 imports it from here, for now

# (plan, reference) pairs the comparison reports, within each item input.
PAIRS = tuple(
    (p, r) for p in ("hatllm", "iam", "iam-alt", "iam-heads") for r in ("token", "control")
)


def bootstrap_change(
    plan: np.ndarray,
    ref: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    users: str = "shared",
    level: float = 0.95,
):
    """Relative change mean(plan) / mean(ref) - 1 and its percentile CI (95% by `level`).

    Shapes: plan, ref (seed user), per-user scores paired by seed and user. `users`: "shared"
    (one draw of users per replicate, used in every drawn seed: the default), "nested" (users
    drawn afresh within each seed) or "fixed" (seeds alone resampled, users kept: too narrow at a
    few seeds, for comparison only). Returns (change, low, high)."""
    plan, ref = np.asarray(plan, float), np.asarray(ref, float)
    n_seed, n_user = plan.shape
    rng = np.random.default_rng(seed)
    changes = []
    for chunk in np.array_split(np.arange(n_boot), max(1, n_boot // 250)):  # bounded memory
        seeds = rng.integers(n_seed, size=(len(chunk), n_seed, 1))  # (replicate seed 1)
        if users == "shared":
            drawn = rng.integers(n_user, size=(len(chunk), 1, n_user))  # (replicate 1 user)
        elif users == "nested":
            drawn = rng.integers(n_user, size=(len(chunk), n_seed, n_user))
        elif users == "fixed":
            drawn = np.arange(n_user)[None, None, :]
        else:
            raise ValueError(f"users={users!r}: choose shared, nested or fixed.")
        p = plan[seeds, drawn].mean(axis=(1, 2))
        r = ref[seeds, drawn].mean(axis=(1, 2))
        changes.append(p / r - 1)
    tail = 50 * (1 - level)
    low, high = np.percentile(np.concatenate(changes), [tail, 100 - tail])
    return plan.mean() / ref.mean() - 1, low, high


# Student's t quantiles by degrees of freedom (1-30; larger df take the value at 30, which is
# conservative): two-sided 95% (0.975) and one-sided 80% (0.80), for the interval and the power.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)  # fmt: skip
T80 = (1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870,
       0.868, 0.866, 0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856,
       0.855, 0.855, 0.854, 0.854)  # fmt: skip
Z975, Z80 = 1.960, 0.842


def t_quantile(table: tuple, df: int) -> float:
    return table[min(df, len(table)) - 1]


def t_ppf(p: float, df: int) -> float:
    """Student's t quantile at probability p (0.5 < p < 1) with df degrees of freedom: the CDF by
    Simpson's rule on the density, inverted by bisection (for levels the tables above lack)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 2001)
        f = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
        return 0.5 + (t / 6000) * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    low, high = 0.0, 1e3
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


# chi-square 5% quantiles by degrees of freedom (1-30): a variance's one-sided 95% upper bound is
# df x sample variance / this (more than 30 df take the value at 30: a looser bound).
CHI2_05 = (0.00393, 0.1026, 0.3518, 0.7107, 1.1455, 1.6354, 2.1673, 2.7326, 3.3251, 3.9403,
           4.5748, 5.2260, 5.8919, 6.5706, 7.2609, 7.9616, 8.6718, 9.3905, 10.1170, 10.8508,
           11.5913, 12.3380, 13.0905, 13.8484, 14.6114, 15.3792, 16.1514, 16.9279, 17.7084,
           18.4927)  # fmt: skip


def paired_t(plan: np.ndarray, ref: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """The paired t-interval on per-seed means, as a relative change of the reference mean:
    (low, high, minimum detectable effect at 80% power). NaN with fewer than 2 seeds.
    Shapes: plan, ref (seed user). `level` other than 95% takes its quantile from `t_ppf`."""
    a, b = np.asarray(plan, float).mean(1), np.asarray(ref, float).mean(1)
    n = len(a)
    if n < 2:
        return float("nan"), float("nan"), float("nan")
    d, base = a - b, b.mean()
    se = d.std(ddof=1) / np.sqrt(n) / base
    t = t_quantile(T975, n - 1) if level == 0.95 else t_ppf(0.5 + level / 2, n - 1)
    centre = d.mean() / base
    return centre - t * se, centre + t * se, (t + t_quantile(T80, n - 1)) * se


# What test_pair returns, in the order tables show it.
TEST_COLUMNS = ("change", "ci_low", "ci_high", "t_low", "t_high", "verdict", "mde")


def test_pair(
    plan: np.ndarray, ref: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """Both tests on one pair: change, the shared-user bootstrap CI, the paired t CI, the verdict
    (both must exclude zero on the same side; one seed has no t-interval: "no verdict (1 seed)")
    and the MDE at 80% power of the wider test, at `level` (Holm's steps test above 95%)."""
    change, low, high = bootstrap_change(plan, ref, n_boot, seed, level=level)
    t_low, t_high, t_mde = paired_t(plan, ref, level)
    z = Z975 if level == 0.95 else NormalDist().inv_cdf(0.5 + level / 2)
    boot_mde = (z + Z80) * (high - low) / (2 * z)  # the bootstrap SE from its CI width
    agree = verdict(low, high)
    if len(plan) < 2:  # no t-interval, so no verdict, whatever the bootstrap says
        agree = f"no verdict ({len(plan)} seed)"
    elif agree != "not separated" and verdict(t_low, t_high) != agree:
        agree = "not separated"
    return {
        "change": change,
        "ci_low": low,
        "ci_high": high,
        "t_low": t_low,
        "t_high": t_high,
        "verdict": agree,
        "mde": float(np.nanmax([boot_mde, t_mde])),
    }


def holm(pairs: dict[str, tuple], alpha: float = 0.05, **kw) -> dict[str, dict]:
    """Holm's step-down correction over `pairs` {name: (plan, ref)}: while pairs remain, test
    each at level 1 - alpha / (pairs remaining); every pair both of whose intervals exclude zero
    is decided, the rest go on to the next step; a step that decides none ends it. Returns
    {name: test_pair at the level its last step used, with that `level`}."""
    remaining, out = list(pairs), {}
    while remaining:
        level = 1 - alpha / len(remaining)
        tested = {n: test_pair(*pairs[n], level=level, **kw) | {"level": level} for n in remaining}
        out |= tested
        decided = [n for n in remaining if tested[n]["verdict"] in ("better", "worse")]
        if not decided:
            break
        remaining = [n for n in remaining if n not in decided]
    return out


def seed_sd_upper(plan: np.ndarray, ref: np.ndarray) -> float:
    """One-sided 95% upper bound of the seed component's SD (variance_components): the seed
    means' variance bounded by its chi-square interval, less the residual's share."""
    d = np.asarray(plan, float) - np.asarray(ref, float)
    n_seed, n_user = d.shape
    c = variance_components(plan, ref)
    means = d.mean(1).var(ddof=1) * (n_seed - 1) / t_quantile(CHI2_05, n_seed - 1)
    return float(np.sqrt(max(0.0, means - c["residual"] / n_user)))


def verdict(low: float, high: float) -> str:
    """'better' if the whole CI is above zero, 'worse' if below, else 'not separated' (NaN
    bounds, an undefined interval, are never separated)."""
    return "better" if low > 0 else "worse" if high < 0 else "not separated"


def per_user(results: list[dict], cell: str, split="test", protocol="seen_excluded", k=10):
    """{seed: per-user NDCG@k} of one cell, from the stored ranks."""
    return {
        r["seed"]: ndcg_at(r["ranks"][split][protocol], k).numpy()
        for r in results
        if r.get("cell", r["plan"]) == cell
    }


def compare_cells(results: list[dict], cell: str, reference: str, **kw) -> dict | None:
    """Both tests of two cells over the seeds both have (None if they share none)."""
    a, b = per_user(results, cell, **kw), per_user(results, reference, **kw)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    tested = test_pair([a[s] for s in seeds], [b[s] for s in seeds])
    return {"plan": cell, "vs": reference, "seeds": len(seeds), **tested}


def pair_tests(results: list[dict], pairs=PAIRS, **kw) -> pd.DataFrame:
    """Every (plan, reference) pair present, within each item input ('' text, '+id' text + ID),
    plus each text plan with ID against itself without: `compare_cells`' numbers, one row each."""
    cells = {r.get("cell", r["plan"]) for r in results}
    rows = []
    for suffix in ("", "+id"):
        for plan, ref in pairs:
            if {plan + suffix, ref + suffix} <= cells:
                rows.append(compare_cells(results, plan + suffix, ref + suffix, **kw))
    for cell in sorted(c for c in cells if c.endswith("+id") and c.removesuffix("+id") in cells):
        rows.append(compare_cells(results, cell, cell.removesuffix("+id"), **kw))
    return pd.DataFrame(rows, columns=["plan", "vs", "seeds", *TEST_COLUMNS])


def verdicts(results: list[dict], pairs=PAIRS, **kw) -> pd.DataFrame:
    """`pair_tests` as printed: changes and intervals in percent, '—' where there is none."""
    table = pair_tests(results, pairs, **kw)
    for col in ("change", "ci_low", "ci_high", "t_low", "t_high"):
        table[col] = table[col].map(lambda x: percent(x, "+"))
    table["mde"] = table["mde"].map(percent)
    return table


def percent(x: float, sign: str = "") -> str:
    """0.123 -> '12.3%' ('+12.3%' with sign='+'); NaN (no interval: one seed) -> '—'."""
    return "—" if pd.isna(x) else f"{x:{sign}.1%}"


def late_gain(result: dict) -> float:
    """How much validation NDCG@10 still rose once the learning rate had decayed: the best value
    after `decay_epochs` relative to the best up to it (NaN if training ended by then, or if the
    rate never decayed: `decay_epochs=0` is a constant rate)."""
    valid = result["history"]["valid_NDCG@10"]
    decay = result["config"].get("decay_epochs") or result["config"]["max_epochs"]
    return max(valid[decay:]) / max(valid[:decay]) - 1 if len(valid) > decay else float("nan")


def convergence(results: list[dict]) -> pd.DataFrame:
    """Per cell: seeds, best epoch and epochs run per seed, how many cells converged (best epoch
    before the last) and stopped on the plateau rule rather than a cap, and the mean `late_gain`."""
    rows = [
        {
            "cell": r.get("cell", r["plan"]),
            "seed": r["seed"],
            "best": r["best_epoch"],
            "epochs": r["epochs"],
            "converged": r["converged"],
            "plateau": r.get("stopped_by", "plateau") == "plateau",
            "late_gain": late_gain(r),
        }
        for r in results
        if r.get("epochs")
    ]
    table = pd.DataFrame(rows).sort_values(["cell", "seed"])
    return table.groupby("cell", sort=False).agg(
        seeds=("seed", "count"),
        best_epoch=("best", lambda e: "/".join(map(str, e))),
        epochs=("epochs", lambda e: "/".join(map(str, e))),
        converged=("converged", lambda c: f"{int(c.sum())}/{len(c)}"),
        plateau=("plateau", lambda c: f"{int(c.sum())}/{len(c)}"),
        gain_after_decay=("late_gain", lambda g: "—" if g.isna().all() else f"{g.mean():+.1%}"),
    )


def by_history_length(results: list[dict], lengths, cells, groups: int = 4, split="test"):
    """Mean NDCG@10 per history-length quantile group and cell, over users and seeds.
    `lengths[u]` is user u's number of input items (same user order as the stored ranks)."""
    lengths = pd.Series(lengths)
    codes = pd.qcut(lengths, groups, labels=False, duplicates="drop")
    bounds = lengths.groupby(codes).agg(["min", "max"])
    names = [f"{lo}–{hi} items" for lo, hi in bounds.itertuples(index=False)]
    out = {}
    for cell in cells:
        scores = np.mean(list(per_user(results, cell, split=split).values()), axis=0)
        out[cell] = pd.Series(scores).groupby(codes).mean().to_numpy()
    table = pd.DataFrame(out, index=pd.Index(names, name="history length"))
    table.insert(0, "users", codes.value_counts().sort_index().to_numpy())
    return table


def variance_components(plan: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """How the per-user paired difference d = plan - ref varies, from a pilot of >= 2 seeds over
    the same users. Shapes: plan, ref (seed user). Returns
    - `seed`: variance of a seed's mean difference that is the seed's own (init, data order);
    - `user`: variance of the part of a user's difference that persists across seeds (the
      covariance of d between two seeds, averaged over seed pairs);
    - `residual`: what is left per (seed, user);
    and `base`, the reference mean, so a standard error becomes a relative change."""
    d = np.asarray(plan, float) - np.asarray(ref, float)
    n_seed, n_user = d.shape
    if n_seed < 2:
        raise ValueError("Variance components need at least 2 seeds over the same users.")
    centred = d - d.mean(1, keepdims=True)
    cov = centred @ centred.T / (n_user - 1)  # (seed seed)
    user = max(0.0, float(cov[~np.eye(n_seed, dtype=bool)].mean()))
    residual = max(0.0, float(np.diag(cov).mean()) - user)
    seed = max(0.0, float(d.mean(1).var(ddof=1)) - residual / n_user)
    return {"seed": seed, "user": user, "residual": residual, "base": float(np.mean(ref))}


def design_mde(components: dict, seeds: int, users: int) -> float:
    """The minimum detectable relative change (80% power, two-sided 5%) of a design with `seeds`
    seeds over the same `users` users: (z + z_power) x SE / base, with
    SE^2 = seed / seeds + user / users + residual / (seeds x users)."""
    c = components
    se = np.sqrt(c["seed"] / seeds + c["user"] / users + c["residual"] / (seeds * users))
    return float((Z975 + Z80) * se / c["base"])


def sizing(
    results: list[dict], pairs=PAIRS, target: float = 0.10, all_users: int = 6040, **kw
) -> pd.DataFrame:
    """Per pair with >= 2 shared seeds: its variance components and the MDE of this design, of 3
    seeds on as many users, and of 3 and 10 seeds on `all_users` users; `seeds for target`: the
    fewest seeds that detect a `target` relative change on all users (None: the persistent
    user part alone keeps the MDE above it, `user cap`)."""
    rows = []
    for row in pair_tests(results, pairs, **kw).itertuples():
        a, b = per_user(results, row.plan, **kw), per_user(results, row.vs, **kw)
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            continue
        c = variance_components([a[s] for s in seeds], [b[s] for s in seeds])
        users = len(a[seeds[0]])
        need = next((s for s in range(2, 201) if design_mde(c, s, all_users) <= target), None)
        cap = (Z975 + Z80) * np.sqrt(c["user"] / all_users) / c["base"]
        rows.append(
            {
                "plan": row.plan,
                "vs": row.vs,
                "seeds": len(seeds),
                "users": users,
                "sd seed": np.sqrt(c["seed"]),
                "sd user": np.sqrt(c["user"]),
                "sd residual": np.sqrt(c["residual"]),
                "MDE now": design_mde(c, len(seeds), users),
                "MDE 3 seeds": design_mde(c, 3, users),
                f"MDE 3 seeds, {all_users} users": design_mde(c, 3, all_users),
                f"MDE 10 seeds, {all_users} users": design_mde(c, 10, all_users),
                "user cap": cap,
                f"seeds for {target:.0%}": need,
            }
        )
    return pd.DataFrame(rows)
