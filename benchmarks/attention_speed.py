"""Step-time ratios of the layer plans, measured in one run on this machine.

  python benchmarks/attention_speed.py [--device cuda] [--repeats 20]

Forward+backward of one training batch at QUICK size (or FULL size with --full), for every plan
relative to `token`, and the einops reference relative to SDPA. On CUDA it also times the
FlexAttention block-sparse path against dense SDPA. Plans are timed interleaved, round-robin,
and the median is reported, so drift on a shared machine hits all of them alike.
"""

import argparse
import dataclasses
import statistics
import time

import torch

from iam_tutorial.config import get_config
from iam_tutorial.model import ItemGPT
from iam_tutorial.serialize import Serializer


def random_batch(serializer: Serializer, n_items: int, users: int, items_per_user: int, seed=0):
    g = torch.Generator().manual_seed(seed)
    histories = [
        torch.randint(1, n_items + 1, (items_per_user + 1,), generator=g).tolist()
        for _ in range(users)
    ]
    return serializer.collate([h[:-1] for h in histories], [h[1:] for h in histories])


def text_like_serializer(n_items: int, max_tokens: int, seed=0) -> Serializer:
    """Items of 9..17 tokens + SEP (ML-1M's BPE averages ~13 + SEP), vocabulary 2048."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(9, 18, (n_items + 1,), generator=g).tolist()
    tokens = [[]] + [torch.randint(3, 2048, (n,), generator=g).tolist() + [1] for n in lengths[1:]]
    serializer = Serializer(tokens, bos_id=0, pad_id=2, max_tokens=max_tokens)
    serializer.sep_id, serializer.vocab_size = 1, 2048
    return serializer


def time_step(model, batch, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.loss(batch).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(variants: dict, batch, device, repeats: int) -> dict[str, float]:
    """Median seconds per step of each model, timed round-robin after two warm-up steps."""
    times = {name: [] for name in variants}
    for i in range(repeats + 2):
        for name, model in variants.items():
            t = time_step(model, batch, device)
            if i >= 2:
                times[name].append(t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full", action="store_true", help="FULL model size instead of QUICK")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = get_config("full" if args.full else "quick", dropout=0.0, bf16=False)
    n_items = 3416
    serializer = text_like_serializer(n_items, base.max_tokens)
    batch = random_batch(serializer, n_items, base.batch_size, base.max_items).to(device)

    def build(plan, impl="sdpa"):
        cfg = dataclasses.replace(base, plan=plan, attn_impl=impl)
        return ItemGPT(cfg, serializer.vocab_size, serializer.item_words()[: n_items + 1]).to(
            device
        )

    plans = ("token", "hatllm", "iam-alt", "iam", "control")
    variants = {plan: build(plan) for plan in plans}
    variants["token (einops reference)"] = build("token", "einops")
    variants["iam (einops reference)"] = build("iam", "einops")
    if device.type == "cuda":
        for plan in ("token", "iam", "hatllm"):
            variants[f"{plan} (flex)"] = build(plan, "flex")
    seconds = bench(variants, batch, device, args.repeats)
    tokens = int((batch.item_index != -2).sum())
    print(f"{device} · {torch.get_num_threads()} threads · {'FULL' if args.full else 'QUICK'} size: "
          f"batch {tuple(batch.tokens.shape)}, {base.n_layer} layers, d={base.n_embd} · "
          f"median of {args.repeats} forward+backward steps")  # fmt: skip
    print(f"{'variant':<26}{'ms/step':>10}{'tokens/s':>12}{'vs token':>10}")
    for name, s in seconds.items():
        print(f"{name:<26}{1e3 * s:>10.1f}{tokens / s:>12,.0f}{s / seconds['token']:>9.2f}×")
    print(f"iam vs control (same block shape): {seconds['iam'] / seconds['control']:.2f}×")
    print(
        f"einops reference vs SDPA (token): {seconds['token (einops reference)'] / seconds['token']:.2f}×"
    )
    if device.type == "cuda":
        print(f"iam flex vs token dense SDPA: {seconds['iam (flex)'] / seconds['token']:.2f}×")


if __name__ == "__main__":
    main()
