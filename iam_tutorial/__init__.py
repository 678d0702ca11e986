"""iam_tutorial: item-aware attention for LLM recommenders, from scratch.

Start with `get_config`, `load_sequences`, `Serializer`, `allow_mask`, `ItemGPT` and `train.run`;
the numbered notebooks walk through them in order.
"""

from iam_tutorial.config import FULL, QUICK, Config, get_config
from iam_tutorial.masks import allow_causal, allow_inter_item, allow_intra_item, allow_mask
from iam_tutorial.model import ItemGPT, layer_plan
from iam_tutorial.paths import FIGURES_DIR, REPO_ROOT, data_dir
from iam_tutorial.repro import seed_everything
from iam_tutorial.serialize import GLOBAL, PADDING, Serializer

__all__ = [
    "FULL",
    "FIGURES_DIR",
    "GLOBAL",
    "PADDING",
    "QUICK",
    "REPO_ROOT",
    "Config",
    "ItemGPT",
    "Serializer",
    "allow_causal",
    "allow_inter_item",
    "allow_intra_item",
    "allow_mask",
    "data_dir",
    "get_config",
    "layer_plan",
    "seed_everything",
]
