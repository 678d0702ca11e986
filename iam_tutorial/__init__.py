"""iam_tutorial: item-aware attention for LLM recommenders, from scratch.

Start with `get_config`, `load_sequences`, `leave_one_out`, `prepare`, `allow_mask`, `layer_plan`,
`ItemGPT` and `train.run`; the numbered notebooks walk through them in order. Plans are a table
(`PLANS`); `compare.run_comparison` trains them side by side and `stats.verdicts` says what the
numbers decide.
"""

from iam_tutorial.config import FULL, QUICK, REFERENCE, Config, get_config
from iam_tutorial.data.movielens import leave_one_out, load_sequences
from iam_tutorial.masks import allow_causal, allow_inter_item, allow_intra_item, allow_mask
from iam_tutorial.model import ItemGPT
from iam_tutorial.paths import FIGURES_DIR, REPO_ROOT, data_dir
from iam_tutorial.pipeline import Prepared, prepare
from iam_tutorial.plans import PLANS, describe, layer_plan
from iam_tutorial.repro import seed_everything
from iam_tutorial.serialize import GLOBAL, PADDING, Serializer

__all__ = [
    "FULL",
    "FIGURES_DIR",
    "GLOBAL",
    "PADDING",
    "PLANS",
    "QUICK",
    "REFERENCE",
    "REPO_ROOT",
    "Config",
    "ItemGPT",
    "Prepared",
    "Serializer",
    "allow_causal",
    "allow_inter_item",
    "allow_intra_item",
    "allow_mask",
    "data_dir",
    "describe",
    "get_config",
    "layer_plan",
    "leave_one_out",
    "load_sequences",
    "prepare",
    "seed_everything",
]
