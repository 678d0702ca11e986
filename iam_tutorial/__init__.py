"""iam_tutorial: item-aware attention for LLM recommenders, from scratch.

Start with `get_config`, `load_sequences`, `leave_one_out`, `prepare`, `allow_mask`, `layer_plan`,
`ItemGPT` and `train`; the numbered notebooks walk through them in order. Plans are a table
(`PLANS`). Everything that runs many models (the comparison, its statistics, FULL on a GPU) lives
in `iam_tutorial.lab`.

`import iam_tutorial` is light: each name below is imported from its module on first use, so a
notebook that needs only masks never loads pandas or transformers.
"""

import importlib

# name -> the module that defines it (the one place to look it up).
_EXPORTS = {
    "Config": "config", "FULL": "config", "QUICK": "config", "REFERENCE": "config",
    "SASREC_FULL": "config", "get_config": "config",
    "leave_one_out": "data.movielens", "load_sequences": "data.movielens",
    "allow_causal": "masks", "allow_inter_item": "masks", "allow_intra_item": "masks",
    "allow_mask": "masks",
    "ItemGPT": "model",
    "FIGURES_DIR": "paths", "REPO_ROOT": "paths", "data_dir": "paths",
    "Prepared": "pipeline", "prepare": "pipeline",
    "PLANS": "plans", "describe": "plans", "layer_plan": "plans",
    "seed_everything": "repro",
    "GLOBAL": "serialize", "PADDING": "serialize", "Serializer": "serialize",
    "train": "train", "run": "train",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'iam_tutorial' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"iam_tutorial.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *__all__})
