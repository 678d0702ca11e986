"""Experiments: one run's config and the grid a comparison trains over it.

A `Config` (config.py) describes one run. An experiment adds what only a comparison of many runs
has: the plans compared, the item inputs of the text plans, the seeds and the fine-tuning budgets.
One experiment per preset mode; `python -m iam_tutorial.lab.compare --mode M` runs EXPERIMENTS[M].
"""

import dataclasses
import os
from dataclasses import dataclass

from iam_tutorial.config import PRESETS, Config, ConfigError, get_config
from iam_tutorial.plans import ALL_PLANS, PLANS, layer_plan

ITEM_INPUTS = ("text", "text+id")


@dataclass(frozen=True)
class Experiment:
    run: Config  # every cell's config, less its plan, item input and seed
    plans: tuple[str, ...]  # the plans compared, baselines included
    inputs: tuple[str, ...] = ITEM_INPUTS  # item inputs of the text plans
    seeds: tuple[int, ...] = (0,)
    # Fine-tuning budgets (epochs): each (plan, seed) trains once, to the largest, and the shorter
    # ones are its snapshots (hooks.snapshots); () = one budget, run.max_epochs.
    budgets: tuple[int, ...] = ()
    # A plan's own run settings, where its cells differ from `run` (SASRec's architecture beside
    # an LLM's): ((plan, ((field, value), ...)), ...).
    plan_settings: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()

    def __post_init__(self):
        check_experiment(self)


def check_experiment(exp: Experiment) -> None:
    """Every grid value is usable with this run; raises ConfigError naming the fix."""

    def bad(name, why):
        raise ConfigError(f"Experiment {name}={getattr(exp, name)!r}: {why}.")

    if not exp.plans or not set(exp.plans) <= set(ALL_PLANS):
        bad("plans", f"choose from {', '.join(ALL_PLANS)}")
    if not exp.inputs or not set(exp.inputs) <= set(ITEM_INPUTS):
        bad("inputs", f"choose from {', '.join(ITEM_INPUTS)}")
    if not exp.seeds or not all(isinstance(s, int) for s in exp.seeds):
        bad("seeds", "a comparison needs at least one seed (integers)")
    if not all(isinstance(b, int) and b >= 1 for b in exp.budgets):
        bad("budgets", "every budget is a number of epochs >= 1")
    for plan in (p for p in exp.plans if p in PLANS):
        try:
            layer_plan(plan, exp.run.n_layer, exp.run.hatllm_split)
        except ValueError as e:
            bad("plans", str(e).rstrip("."))


REFERENCE_PLANS = ("popularity", "sasrec", "token", "control", "hatllm", "iam")
# SASRec as sasrec-full trains it, on another experiment's users, inputs and transitions.
SASREC_SETTING = tuple(
    (name, getattr(PRESETS["sasrec-full"], name))
    for name in ("backbone", "n_layer", "n_head", "n_embd", "dropout", "lr", "weight_decay",
                 "warmup_frac", "batch_size", "max_epochs", "decay_epochs", "min_epochs",
                 "patience", "eval_every", "bf16", "device")
)  # fmt: skip
LLM_COMPARED = ("popularity", "token", "hatllm", "iam-heads")

EXPERIMENTS = {
    # The main job: seed 0 of a few reference cells, trained beside the committed reference.
    "quick": Experiment(PRESETS["quick"], ("popularity", "sasrec", "token", "iam")),
    "reference": Experiment(PRESETS["reference"], REFERENCE_PLANS, seeds=(0, 1, 2, 3, 4)),
    "full": Experiment(PRESETS["full"], (*REFERENCE_PLANS, "iam-alt"), seeds=(0, 1, 2)),
    "sasrec-full": Experiment(PRESETS["sasrec-full"], ("popularity", "sasrec")),
    # On the LLM: the plans that re-mask its own layers (same weights and FLOPs) against token.
    "llm-pilot": Experiment(PRESETS["llm-pilot"], LLM_COMPARED, ("text",), seeds=(0, 1)),
    "llm": Experiment(PRESETS["llm"], LLM_COMPARED, ("text",), seeds=(0, 1, 2), budgets=(1, 2, 4)),
    # Every user tested (results/every-user/PLAN.md): the LLM plans and, on the same training
    # transitions, SASRec at the sasrec-full setting (its architecture, optimizer and schedule).
    "every-user": Experiment(
        PRESETS["every-user"],
        (*LLM_COMPARED, "sasrec"),
        ("text",),
        seeds=(0, 1, 2, 3, 4),
        plan_settings=(("sasrec", SASREC_SETTING),),
    ),
}


def get_experiment(
    mode: str | None = None, plans=None, inputs=None, seeds=None, budgets=None, **overrides
) -> Experiment:
    """The experiment of preset `mode` (default `$IAM_MODE`, else quick): its run's config with
    field `overrides`, and its grid with `plans`, `inputs`, `seeds`, `budgets` where given."""
    run = get_config(mode or os.environ.get("IAM_MODE"), **overrides)
    grid = {"plans": plans, "inputs": inputs, "seeds": seeds, "budgets": budgets}
    given = {k: tuple(v) for k, v in grid.items() if v is not None and (v or k == "budgets")}
    return dataclasses.replace(EXPERIMENTS[run.mode], run=run, **given)
