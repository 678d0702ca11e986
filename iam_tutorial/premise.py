"""HatLLM's premise, measured on a pretrained LLM: does its attention stay inside items?

HatLLM puts intra-item masks in shallow layers and cross-item masks in deep ones because, it says, a
pretrained LLM's tokens attend mostly within their own item. We measure it on the backbone as it was
pretrained (plan `token`: plain causal attention), per layer and per head: the share of each query's
attention on its own token (`self`), its own item (self included), other items and the first token
(our BOS, where pretrained models park spare attention), and the same shares with the token itself
left out (`*_x`, renormalised over the other keys). `even_*` is the yardstick: the shares an even
spread over the keys the causal mask lets the query see would give. Queries are item tokens from the
second item on (the first item has no other item to look at). Then `ruled_out`: per plan, how much
of the backbone's own attention its masks forbid at step 0. Notebook 05, results/premise/.
"""

# Axes: batch, head, query, key, token

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from einops import rearrange, reduce

from iam_tutorial.analysis import key_groups, measured_queries
from iam_tutorial.cli import fail, guarded
from iam_tutorial.config import get_config
from iam_tutorial.family import build_model
from iam_tutorial.hf_adapter import RECORDER, layer_kind
from iam_tutorial.masks import HEAD_SPLITS, allow_mask, head_groups
from iam_tutorial.pipeline import prepare
from iam_tutorial.plans import LLM_PLANS, layer_plan
from iam_tutorial.record import run_facts
from iam_tutorial.serialize import Batch
from iam_tutorial.viz import plot_premise, save_fig

SHARES = ("self", "own_item", "other_items", "first")
WITHOUT_SELF = ("own_item_x", "other_items_x", "first_x")


def groups_of(item_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Key masks (batch query key) bool: self, own item (self included), other items, first."""
    groups = key_groups(item_index)
    n = item_index.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=item_index.device).expand_as(groups["own_item"])
    return {
        "self": eye & groups["own_item"],
        "own_item": groups["own_item"],
        "other_items": groups["other_items"],
        "first": groups["bos"],
    }


def shares(weights: torch.Tensor, groups: dict) -> dict[str, torch.Tensor]:
    """Per (batch head query): mass on each group, and without self renormalised.
    Shapes: weights (batch head query key), each group (batch query key)."""
    out = {
        name: reduce(weights * rearrange(g, "b q k -> b 1 q k"), "b h q k -> b h q", "sum")
        for name, g in groups.items()
    }
    rest = (1 - out["self"]).clamp(min=1e-12)
    out |= {
        "own_item_x": (out["own_item"] - out["self"]) / rest,
        "other_items_x": out["other_items"] / rest,
        "first_x": out["first"] / rest,
    }
    return out


class PremiseRecorder:
    """Called by every attention layer with its weights; sums each head's shares over queries."""

    def __init__(self):
        self.sums: dict[int, dict[str, torch.Tensor]] = {}
        self.queries: dict[int, int] = {}

    def __call__(self, module, weights: torch.Tensor, item_index: torch.Tensor) -> None:
        if layer_kind(module) != "causal":
            raise ValueError("The premise is measured on the backbone as pretrained: plan 'token'.")
        index = item_index.to(weights.device)
        queries = measured_queries(index)
        per_query = shares(weights.double(), groups_of(index))
        layer = module.layer_idx
        total = self.sums.setdefault(layer, {})
        for name, value in per_query.items():  # (batch head query) -> (head)
            summed = rearrange(value, "b h q -> h b q")[:, queries].sum(-1)
            total[name] = total.get(name, 0) + summed
        self.queries[layer] = self.queries.get(layer, 0) + int(queries.sum())


def even_shares(item_index: torch.Tensor) -> dict[str, float]:
    """The shares an even spread over the causally visible keys gives, mean over measured
    queries."""
    allow = allow_mask("causal", item_index).double()
    even = rearrange(allow / allow.sum(-1, keepdim=True), "b q k -> b 1 q k")
    queries = measured_queries(item_index)
    return {
        f"even_{k}": float(v[:, 0][queries].mean())
        for k, v in shares(even, groups_of(item_index)).items()
    }


@torch.no_grad()
def measure(model, batches: list[Batch]) -> pd.DataFrame:
    """One row per (layer, head) of an ItemLLM under plan `token`: mean shares over every
    measured query of `batches`, and the even spread's shares beside them."""
    recorder, attention = PremiseRecorder(), attention_modules(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for module in attention:
        setattr(module, RECORDER, recorder)
    try:
        for batch in batches:
            model(batch.tokens.to(device), batch.item_index.to(device))
    finally:
        for module in attention:
            setattr(module, RECORDER, None)
        model.train(was_training)
    yardstick = even_shares_over(batches)
    rows = []
    for layer in sorted(recorder.sums):
        sums, n = recorder.sums[layer], recorder.queries[layer]
        for head in range(len(sums["self"])):
            row = {"layer": layer, "head": head}
            row |= {name: float(sums[name][head]) / n for name in (*SHARES, *WITHOUT_SELF)}
            rows.append(row | yardstick)
    return pd.DataFrame(rows)


def even_shares_over(batches: list[Batch]) -> dict[str, float]:
    """`even_shares` over several batches, weighted by their measured queries."""
    totals, count = {}, 0
    for batch in batches:
        n = int(measured_queries(batch.item_index).sum())
        for k, v in even_shares(batch.item_index).items():
            totals[k] = totals.get(k, 0.0) + v * n
        count += n
    return {k: v / count for k, v in totals.items()}


def attention_modules(model) -> list:
    """The backbone's own attention module of every decoder layer, in order."""
    return [getattr(layer, "layer", layer).self_attn for layer in model.decoder.layers]


def by_layer(per_head: pd.DataFrame) -> pd.DataFrame:
    """Mean over heads: one row per layer."""
    return per_head.drop(columns="head").groupby("layer").mean().reset_index()


def ruled_out(per_head: pd.DataFrame, plans: dict[str, list[tuple[str, ...]]]) -> pd.DataFrame:
    """Per plan: the share of the backbone's attention its masks forbid at step 0, mean over layers
    and heads (per layer in the columns `layer_<i>`). intra forbids other items, inter the own item
    (self included), a head split each group its part; sublayers a plan adds start at zero output,
    so only each block's first kind counts. `plans`: {plan: layer_plan(...)}."""
    forbid = {
        "causal": lambda r: 0.0,
        "intra": lambda r: r.other_items,
        "inter": lambda r: r.own_item,
    }
    rows = []
    for plan, layers in plans.items():
        per_layer = []
        for layer, kinds in enumerate(layers):
            heads = per_head[per_head.layer == layer].sort_values("head")
            kind_of_head = head_kinds(kinds[0], len(heads))
            per_layer.append(
                sum(forbid[k](r) for k, r in zip(kind_of_head, heads.itertuples(), strict=True))
                / len(heads)
            )
        row = {"plan": plan, "ruled_out": sum(per_layer) / len(per_layer)}
        rows.append(row | {f"layer_{i}": v for i, v in enumerate(per_layer)})
    return pd.DataFrame(rows)


def head_kinds(kind: str, n_head: int) -> list[str]:
    """The mask kind of each head under `kind` (a head split: its groups as masks.head_groups
    splits them, the rule the attention masks use)."""
    if kind not in HEAD_SPLITS:
        return [kind] * n_head
    parts = HEAD_SPLITS[kind]
    return [parts[g] for g in head_groups(n_head, len(parts))]


def parse_args(argv=None):

    parser = argparse.ArgumentParser(
        prog="python -m iam_tutorial.premise", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--users", type=int, default=300, help="users 1..N (validation inputs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("results/premise"))
    args = parser.parse_args(argv)
    if not 1 <= args.users <= 6040:
        fail(f"--users {args.users}: give 1..6040.")
    return args


def measure_backbone(backbone: str, users: int, batch_size: int):
    """(data, per-head shares) of `backbone` as pretrained (plan token) on the validation inputs
    of users 1..`users`."""

    data = prepare(get_config("quick", backbone=backbone, plan="token", n_users=users))
    model = build_model(data.cfg, data.serializer)
    rows = range(len(data.valid))
    batches = [data.valid[list(rows[i : i + batch_size])] for i in range(0, len(rows), batch_size)]
    return data, measure(model, batches)


def write_premise(args, data, per_head: pd.DataFrame) -> None:
    """per_head.csv, by_layer.csv, ruled_out.csv (every LLM plan), the figure and facts.json."""

    layers, n = by_layer(per_head), data.cfg.n_layer
    removed = ruled_out(per_head, {p: layer_plan(p, n, data.cfg.hatllm_split) for p in LLM_PLANS})
    args.out.mkdir(parents=True, exist_ok=True)
    per_head.round(5).to_csv(args.out / "per_head.csv", index=False)
    layers.round(5).to_csv(args.out / "by_layer.csv", index=False)
    removed.round(5).to_csv(args.out / "ruled_out.csv", index=False)
    save_fig(plot_premise(layers), "05_premise_smollm2", folder=args.out)
    facts = {
        "users": args.users,
        "queries": "item tokens of the 2nd item on, validation inputs",
        "max_tokens": data.cfg.max_tokens,
        "max_items": data.cfg.max_items,
        **run_facts(data.cfg),
        "precision": {"bf16": False, "why": "measured in float32 (no autocast)"},
    }
    (args.out / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True))
    print(layers.round(3).to_string(index=False))
    print(removed[["plan", "ruled_out"]].round(3).to_string(index=False))


def main(argv=None):
    """Measure the premise on the validation inputs of users 1..N and write results/premise/."""

    @guarded
    def run(argv):
        args = parse_args(argv)
        data, per_head = measure_backbone(args.backbone, args.users, args.batch_size)
        write_premise(args, data, per_head)

    run(argv)


if __name__ == "__main__":
    main()
