"""Step-time ratios of the layer plans, measured in one run on this machine.

  python benchmarks/attention_speed.py [--device cuda] [--full] [--repeats 10] [--json out.json]

Forward+backward of one training batch at QUICK size (or FULL size with --full: batch 128 of
50-item histories, <= 800 tokens, 4 blocks, d = 256, bf16 autocast on CUDA as FULL trains), for
every plan relative to `token`, and the einops reference relative to SDPA. On CUDA it also times
the FlexAttention block-sparse path of every plan against dense SDPA (its first steps compile it,
once per mask kind; they are warm-up, not timed). Variants are timed interleaved, round-robin, and
the median is reported, so drift on a shared machine hits all of them alike. A variant that fails
(out of memory, a compile error) is reported as failed and the rest still run; --json is rewritten
after each section, so a run cut short keeps what it measured.
"""

import argparse
import dataclasses
import json
import statistics
import time

import torch

from iam_tutorial.config import get_config
from iam_tutorial.model import ItemGPT
from iam_tutorial.serialize import PADDING, Serializer

PLANS = ("token", "hatllm", "iam-alt", "iam", "control")


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


def time_step(model, batch, device, bf16: bool) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        loss = model.loss(batch)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(variants: dict, batch, device, repeats: int, bf16: bool, warmup: int = 2):
    """({name: median seconds per step}, {name: error}): round-robin after `warmup` steps each;
    a variant that raises is dropped from the round and reported."""
    times, failed = {name: [] for name in variants}, {}
    for i in range(repeats + warmup):
        for name, model in variants.items():
            if name in failed:
                continue
            try:
                t = time_step(model, batch, device, bf16)
            except Exception as error:  # out of memory, a compile error: report, go on
                failed[name] = repr(error)[:300]
                model.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            model.zero_grad(set_to_none=True)
            if i >= warmup:
                times[name].append(t)
    return {n: statistics.median(ts) for n, ts in times.items() if ts and n not in failed}, failed


def report(seconds: dict, failed: dict, tokens: int, token: float | None) -> list[str]:
    """One section's table; `token` is the dense token plan's time, the ratios' reference."""
    lines = [f"{'variant':<26}{'ms/step':>10}{'tokens/s':>12}{'vs token':>10}"]
    for name, s in seconds.items():
        ratio = f"{s / token:>9.2f}×" if token else ""
        lines.append(f"{name:<26}{1e3 * s:>10.1f}{tokens / s:>12,.0f}{ratio}")
    lines += [f"{name:<26}failed: {error}" for name, error in failed.items()]
    return lines


def ratios(seconds: dict) -> list[str]:
    """The ratios worth reading, where both sides were measured."""
    pairs = [
        ("iam", "control", "iam vs control (same block shape)"),
        ("token (einops reference)", "token", "einops reference vs SDPA (token)"),
    ]
    pairs += [(f"{p} (flex)", p, f"{p}: flex vs dense SDPA") for p in PLANS]
    pairs += [(f"{p} (flex)", "token", f"{p} flex vs token dense SDPA") for p in ("iam", "hatllm")]  # fmt: skip
    return [f"{label}: {seconds[a] / seconds[b]:.2f}×" for a, b, label in pairs
            if a in seconds and b in seconds]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full", action="store_true", help="FULL model size instead of QUICK")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-flex", action="store_true", help="skip the FlexAttention section")
    parser.add_argument("--json", default=None, help="also write the timings to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    preset = get_config("full" if args.full else "quick")
    bf16 = preset.bf16 and device.type == "cuda"  # FULL trains in bf16 autocast on the GPU
    base = dataclasses.replace(preset, dropout=0.0, bf16=bf16)
    n_items = 3416
    serializer = text_like_serializer(n_items, base.max_tokens)
    batch = random_batch(serializer, n_items, base.batch_size, base.max_items).to(device)
    tokens = int((batch.item_index != PADDING).sum())

    def build(plan, impl="sdpa"):
        cfg = dataclasses.replace(base, plan=plan, attn_impl=impl)
        words = serializer.item_words()[: n_items + 1]
        return ItemGPT(cfg, serializer.vocab_size, words).to(device)

    head = (f"{device} · {torch.get_num_threads()} threads · torch {torch.__version__} · "
            f"{'FULL' if args.full else 'QUICK'} size: batch {tuple(batch.tokens.shape)}, "
            f"{base.n_layer} layers, d={base.n_embd}, {'bf16' if bf16 else 'fp32'} · median of "
            f"{args.repeats} forward+backward steps")  # fmt: skip
    print(head, flush=True)
    out = {"setting": head, "seconds": {}, "failed": {}}
    sections = [{plan: (plan, "sdpa") for plan in PLANS}]
    sections[0] |= {f"{p} (einops reference)": (p, "einops") for p in ("token", "iam")}
    if device.type == "cuda" and not args.no_flex:
        sections.append({f"{plan} (flex)": (plan, "flex") for plan in PLANS})
    for section in sections:
        variants = {}
        for name, spec in section.items():
            try:
                variants[name] = build(*spec)
            except Exception as error:  # a model that cannot even be built: report it
                out["failed"][name] = repr(error)[:300]
        seconds, failed = bench(variants, batch, device, args.repeats, bf16)
        out["seconds"] |= seconds
        out["failed"] |= failed
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        del variants
        print("\n".join(report(seconds, failed, tokens, out["seconds"].get("token"))), flush=True)
    print("\n".join(ratios(out["seconds"])))


if __name__ == "__main__":
    main()
