"""Layer plans: which attention mask every sublayer of every block uses. The one table of them.

IAM (From Token to Item, WWW 2026) stacks an intra-item and an inter-item layer; HatLLM (2025) puts
intra-item masks in shallow layers, causal in the middle and cross-item masks in deep layers.
Neither paper publishes code, so each row states our reading. Everything that lists plans (the
model, the CLIs, the comparison, the README table, notebook 02) reads `PLANS`; adding a plan is one
row here.
"""

from collections.abc import Callable
from dataclasses import dataclass

# One block: the mask kind of each attention sublayer, in order ("intra|inter" = half the heads
# intra, half inter, in one sublayer). A plan: one such tuple per block.
Layers = list[tuple[str, ...]]


@dataclass(frozen=True)
class Plan:
    name: str
    layers: Callable[
        [int, tuple[int, int, int] | None], Layers
    ]  # (n_layer, hatllm_split) -> layers
    description: str
    reading: str  # which paper and how we read it
    new_weights: bool = False  # adds attention weights to a GPT-2 of the same depth
    text: bool = True  # reads item text (False: one ID token per item)


def default_hatllm_split(n_layer: int) -> tuple[int, int, int]:
    """A quarter of the blocks intra, a quarter inter (at least one each), the rest causal."""
    if n_layer < 2:
        raise ValueError(f"hatllm needs n_layer >= 2 (an intra and an inter block), got {n_layer}.")
    edge = max(1, round(n_layer / 4))
    return edge, n_layer - 2 * edge, edge


def _hatllm(n_layer: int, split) -> Layers:
    a, b, c = split or default_hatllm_split(n_layer)
    if min(a, b, c) < 0 or a + b + c != n_layer:
        raise ValueError(f"hatllm_split {(a, b, c)} must be >= 0 and sum to n_layer={n_layer}.")
    return [("intra",)] * a + [("causal",)] * b + [("inter",)] * c


def _alternating(n_layer: int, split) -> Layers:
    return [("intra",) if i % 2 == 0 else ("inter",) for i in range(n_layer)]


_PLANS = (
    Plan(
        "token",
        lambda n, s: [("causal",)] * n,
        "causal in every block (the ordinary LLM)",
        "the baseline both papers start from",
    ),
    Plan(
        "control",
        lambda n, s: [("causal", "causal")] * n,
        "the iam block shape with both sublayers causal",
        "ours: iam's exact parameter count",
        new_weights=True,
    ),
    Plan(
        "hatllm",
        _hatllm,
        "intra in the first a blocks, causal in the middle b, inter in the last c",
        "HatLLM: hatllm_split=(a, b, c), default a quarter each side",
    ),
    Plan(
        "iam",
        lambda n, s: [("intra", "inter")] * n,
        "each block: an intra-item sublayer, an inter-item sublayer, then the MLP",
        "IAM: the two layers stacked in every block",
        new_weights=True,
    ),
    Plan(
        "iam-alt",
        _alternating,
        "one sublayer per block, alternating intra, inter, intra, ...",
        "IAM: the alternative layout, re-masking GPT-2's own layers",
    ),
    Plan(
        "iam-heads",
        lambda n, s: [("intra|inter",)] * n,
        "every block: half the heads intra-item, half inter-item",
        "IAM: a head-split reading, re-masking GPT-2's own heads",
    ),
    Plan(
        "sasrec",
        lambda n, s: [("causal",)] * n,
        "token over one ID token per item, tied table",
        "SASRec (Kang & McAuley, 2018), the ID-only baseline",
        text=False,
    ),
)
PLANS: dict[str, Plan] = {p.name: p for p in _PLANS}
MODEL_PLANS = tuple(PLANS)  # plans that train an ItemGPT
ALL_PLANS = ("popularity", *MODEL_PLANS)  # plus the popularity baseline
# On a pretrained LLM: the plans that re-mask its own layers (same weights and FLOPs as `token`),
# then those that add a sublayer per layer.
LLM_PLANS = ("token", "hatllm", "iam-heads", "iam-alt", "iam", "control")


def get_plan(name: str) -> Plan:
    if name not in PLANS:
        raise ValueError(f"Unknown layer plan {name!r}: choose one of {', '.join(MODEL_PLANS)}.")
    return PLANS[name]


def layer_plan(plan: str, n_layer: int, hatllm_split=None) -> Layers:
    """The mask kind of every attention sublayer, block by block (see `PLANS`)."""
    if n_layer < 1:
        raise ValueError(f"n_layer must be >= 1, got {n_layer}.")
    return get_plan(plan).layers(n_layer, hatllm_split)


def describe(layers: Layers) -> str:
    """'intra · causal · inter': blocks joined by ' · ', sublayers of one block by '+', and a
    head-split sublayer as 'intra/inter' (half the heads each)."""
    return " · ".join("+".join(kind.replace("|", "/") for kind in block) for block in layers)


def plans_table(n_layer: int = 4) -> str:
    """The README's markdown table of plans, with each plan's layers at `n_layer` blocks."""
    rows = [
        f"| plan | layers at {n_layer} blocks | what it is | reading |",
        "| --- | --- | --- | --- |",
    ]
    for p in _PLANS:
        rows.append(
            f"| `{p.name}` | {describe(layer_plan(p.name, n_layer))} | {p.description} | "
            f"{p.reading} |"
        )
    return "\n".join(rows)
