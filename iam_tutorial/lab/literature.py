"""SASRec at the literature's scale, beside the published numbers: is the harness right?

  python -m iam_tutorial.train --mode sasrec-full --plan sasrec --threads 1 \
      --out results/sasrec-full
  python -m iam_tutorial.lab.literature results/sasrec-full

The first command trains (about an hour on one core; every epoch is checkpointed and a restart
resumes). The second reads the stored results: test NDCG@10 and HR@10 with 95% CIs over users
(bootstrap, per-user ranks), epochs to the best, wall time, CPU, the validation curve, and a table
beside the published full-ranking numbers on the same benchmark.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from iam_tutorial.metrics import ndcg_at, protocol

# Published full-ranking results on the standard ML-1M benchmark (6,040 users, 3,416 items,
# leave-one-out, seen items filtered), each from the paper named.
PUBLISHED = (
    ("SASRec, full cross-entropy (Klenitskiy & Vasilev, RecSys'23)", 0.1821, 0.3152),
    ("gSASRec (Petrov & Macdonald, RecSys'23)", 0.173, None),
    ("SASRec, original BCE with one negative", 0.134, None),
    ("HSTU-large (Zhai et al., ICML'24)", 0.189, None),
)


def user_metrics(ranks) -> dict[str, np.ndarray]:
    """Per-user NDCG@10 and HR@10 from 0-based target ranks."""
    hit = np.asarray(ranks, dtype=float) < 10
    return {"NDCG@10": ndcg_at(ranks, 10).numpy(), "HR@10": hit.astype(float)}


def mean_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean and a 95% percentile-bootstrap CI over users."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summary(results: dict) -> dict:
    """Test metrics with CIs and the run's facts, from one stored results JSON."""
    per_user = user_metrics(results["ranks"]["test"]["seen_excluded"])
    history = results["history"]
    return {
        "metrics": {k: mean_ci(v) for k, v in per_user.items()},
        "users": len(per_user["HR@10"]),
        "best_epoch": results["best_epoch"],
        "epochs": results["epochs"],
        "converged": results["converged"],
        "stopped_by": results["stopped_by"],
        "wall_seconds": results.get("wall_seconds", results["train_seconds"]),
        "train_seconds": results["train_seconds"],
        "device": results["device"],
        "threads": results.get("threads"),
        "precision": results.get("precision"),
        "commit": results.get("commit"),
        "curve": list(zip(history["epoch"], history["valid_NDCG@10"], strict=True)),
    }


def report(results: dict) -> str:
    """A markdown report: ours with CIs beside the published numbers, and the run's facts."""
    s = summary(results)
    (n, n_lo, n_hi), (h, h_lo, h_hi) = s["metrics"]["NDCG@10"], s["metrics"]["HR@10"]
    users = f"{s['users']:,}"
    lines = [
        "| model | NDCG@10 | HR@10 |",
        "| --- | --- | --- |",
        f"| **ours: SASRec, full cross-entropy** | **{n:.4f}** [{n_lo:.4f}, {n_hi:.4f}] | "
        f"**{h:.4f}** [{h_lo:.4f}, {h_hi:.4f}] |",
        *(
            f"| {name} | {nd:.4f} | {'' if hr is None else f'{hr:.4f}'} |"
            for name, nd, hr in PUBLISHED
        ),
        "",
        f"Ours: {protocol('test', users=users)}; 95% CIs from 2,000 bootstrap "
        f"resamples of users; seed 0; best validation epoch {s['best_epoch']} of {s['epochs']} run "
        f"(stopped by {s['stopped_by']}); wall {s['wall_seconds'] / 60:.0f} min "
        f"({s['train_seconds'] / 60:.0f} min of optimizer steps) on {s['threads']} thread(s) of "
        f"{s['device']}; precision {s['precision']}; commit {s['commit']}.",
        "",
        "Validation NDCG@10 by epoch: " + ", ".join(f"{e}: {v:.4f}" for e, v in s["curve"]),
    ]
    return "\n".join(lines)


def plot_curve(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    epochs, valid = zip(*summary(results)["curve"], strict=True)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, valid, marker="o", label="ours, validation")
    ax.axhline(
        PUBLISHED[0][1], color="grey", ls="--", label="published test (Klenitskiy & Vasilev)"
    )
    ax.set(xlabel="epoch", ylabel="NDCG@10", title="SASRec on all of ML-1M (full ranking)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.lab.literature", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folder", type=Path, help="the --out folder of the training run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = args.folder / f"sasrec_seed{args.seed}.json"
    if not path.exists():
        raise SystemExit(f"error: {path} not found; train it first (see this module's doc).")
    results = json.loads(path.read_text())
    text = report(results)
    (args.folder / "report.md").write_text(text + "\n")
    plot_curve(results, args.folder / "validation_curve.png")
    print(text)


if __name__ == "__main__":
    main()
