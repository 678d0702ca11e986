"""Is one plan better than another? A two-level bootstrap over seeds and users, and its verdict.

Seed-to-seed noise is larger than user-sampling noise here, so resampling users alone overstates
certainty. Each bootstrap replicate draws seeds with replacement, then, within each drawn seed, users
with replacement (the same users for both plans: the comparison is paired), and takes the relative
change of mean NDCG@10. A verdict is "better" or "worse" only when the 95% CI excludes zero.
"""

# Axes: seed, user, replicate

import numpy as np
import pandas as pd

# (plan, reference) pairs the comparison reports, within each item input.
PAIRS = tuple(
    (p, r) for p in ("hatllm", "iam", "iam-alt", "iam-heads") for r in ("token", "control")
)


def ndcg_at(ranks, k: int = 10) -> np.ndarray:
    """Per-user NDCG@k from 0-based ranks (a hit at rank r scores 1 / log2(r + 2))."""
    ranks = np.asarray(ranks, dtype=float)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0)


def bootstrap_change(plan: np.ndarray, ref: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """Relative change mean(plan) / mean(ref) - 1 and its 95% percentile CI.

    Shapes: plan, ref (seed user), per-user scores paired by seed and user. Returns
    (change, low, high)."""
    plan, ref = np.asarray(plan, float), np.asarray(ref, float)
    n_seed, n_user = plan.shape
    rng = np.random.default_rng(seed)
    changes = []
    for chunk in np.array_split(np.arange(n_boot), max(1, n_boot // 250)):  # bounded memory
        seeds = rng.integers(n_seed, size=(len(chunk), n_seed, 1))  # (replicate seed 1)
        users = rng.integers(n_user, size=(len(chunk), n_seed, n_user))  # (replicate seed user)
        p = plan[seeds, users].mean(axis=(1, 2))
        r = ref[seeds, users].mean(axis=(1, 2))
        changes.append(p / r - 1)
    low, high = np.percentile(np.concatenate(changes), [2.5, 97.5])
    return plan.mean() / ref.mean() - 1, low, high


def verdict(low: float, high: float) -> str:
    """'better' if the whole CI is above zero, 'worse' if below, else 'not separated'."""
    return "better" if low > 0 else "worse" if high < 0 else "not separated"


def per_user(results: list[dict], cell: str, split="test", protocol="seen_excluded", k=10):
    """{seed: per-user NDCG@k} of one cell, from the stored ranks."""
    return {
        r["seed"]: ndcg_at(r["ranks"][split][protocol], k)
        for r in results
        if r.get("cell", r["plan"]) == cell
    }


def compare_cells(results: list[dict], cell: str, reference: str, **kw) -> dict | None:
    """The bootstrap comparison of two cells over the seeds both have (None if they share none)."""
    a, b = per_user(results, cell, **kw), per_user(results, reference, **kw)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    change, low, high = bootstrap_change([a[s] for s in seeds], [b[s] for s in seeds])
    return {"plan": cell, "vs": reference, "seeds": len(seeds), "change": change, "ci_low": low,
            "ci_high": high, "verdict": verdict(low, high)}  # fmt: skip


def verdicts(results: list[dict], pairs=PAIRS, **kw) -> pd.DataFrame:
    """Every (plan, reference) pair present, within each item input ('' text, '+id' text + ID),
    plus each text plan with ID against itself without: relative change, 95% CI, verdict."""
    cells = {r.get("cell", r["plan"]) for r in results}
    rows = []
    for suffix in ("", "+id"):
        for plan, ref in pairs:
            if {plan + suffix, ref + suffix} <= cells:
                rows.append(compare_cells(results, plan + suffix, ref + suffix, **kw))
    for cell in sorted(c for c in cells if c.endswith("+id") and c.removesuffix("+id") in cells):
        rows.append(compare_cells(results, cell, cell.removesuffix("+id"), **kw))
    table = pd.DataFrame(
        rows, columns=["plan", "vs", "seeds", "change", "ci_low", "ci_high", "verdict"]
    )
    for col in ("change", "ci_low", "ci_high"):
        table[col] = table[col].map(lambda x: f"{x:+.1%}")
    return table


def late_gain(result: dict) -> float:
    """How much validation NDCG@10 still rose once the learning rate had decayed: the best value
    after `decay_epochs` relative to the best up to it (NaN if training ended by then)."""
    valid = result["history"]["valid_NDCG@10"]
    decay = result["config"].get("decay_epochs") or result["config"]["max_epochs"]
    return max(valid[decay:]) / max(valid[:decay]) - 1 if len(valid) > decay else float("nan")


def convergence(results: list[dict]) -> pd.DataFrame:
    """Per cell: seeds, best epoch and epochs run per seed, how many cells converged (best epoch
    before the last) and stopped on the plateau rule rather than a cap, and the mean `late_gain`."""
    rows = [{"cell": r.get("cell", r["plan"]), "seed": r["seed"], "best": r["best_epoch"],
             "epochs": r["epochs"], "converged": r["converged"],
             "plateau": r.get("stopped_by", "plateau") == "plateau", "late_gain": late_gain(r)}
            for r in results if r.get("epochs")]  # fmt: skip
    table = pd.DataFrame(rows).sort_values(["cell", "seed"])
    return table.groupby("cell", sort=False).agg(
        seeds=("seed", "count"),
        best_epoch=("best", lambda e: "/".join(map(str, e))),
        epochs=("epochs", lambda e: "/".join(map(str, e))),
        converged=("converged", lambda c: f"{int(c.sum())}/{len(c)}"),
        plateau=("plateau", lambda c: f"{int(c.sum())}/{len(c)}"),
        gain_after_decay=("late_gain", lambda g: f"{g.mean():+.1%}"),
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
