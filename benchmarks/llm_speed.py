"""SmolLM2 fine-tuning and scoring speed on this CPU: the code before and each lever, in one run.

  python benchmarks/llm_speed.py [--plan token] [--steps 8] [--eval-users 256] [--threads 1]
                                 [--json results/benchmarks/llm_speed.json]

Training: the `llm` preset's model (8 windows a step), bf16 autocast and fused AdamW: the former code
("before": SDPA with a boolean mask built in every layer) against each lever and the package's code
("after": `attention.attend_grouped`, masks built once per forward) at 8 windows and at the
every-user preset's windows a step; `after_tokens_per_s` is the latter. Every lever trains on the
same batches, round-robin step by step (drift on a shared machine hits each alike), after a
warm-up step; a lever's speed is tokens (real, not PAD) over the median step. Each step is timed
twice: wall clock and this process's CPU time. With one thread the CPU time is the step's compute
even when other programs share the cores, so the ratios hold on a busy machine; the wall clock is
what a run sees. Scoring: full-catalog scores of `--eval-users` validation users as evaluation
computes them (by input length, `eval_batch_size` users a batch), before and after, and whether
their ranks agree. The split of a step (GEMM, attention, elementwise, optimizer, data) comes from
torch.profiler; the fraction of the CPU's bf16 peak counts 6 FLOPs a token a weight (training) and
2 (scoring) over the decoder's non-embedding weights, the peak from the CPU's flags:
  peak = cores x clock x bf16 FLOPs a cycle a core (AMX 1024, AVX512-BF16 128, neither 64 fp32).
"""

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from transformers import AttentionInterface

from iam_tutorial import hf_adapter
from iam_tutorial.attention import per_head
from iam_tutorial.config import get_config
from iam_tutorial.device import cpu_bf16_instructions, cpu_name
from iam_tutorial.family import build_model
from iam_tutorial.masks import allow_mask
from iam_tutorial.metrics import rank_targets
from iam_tutorial.pipeline import prepare
from iam_tutorial.serialize import PADDING
from iam_tutorial.train import make_optimizer, train_step

FLOPS_PER_CYCLE = {"amx_bf16": 1024, "avx512_bf16": 128, "": 64}  # a core, dense bf16 (fp32)


def sdpa_bool(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
              item_index=None, **kwargs):  # fmt: skip
    """The attention before: SDPA with one boolean mask per layer, built in that layer."""
    allow = per_head(allow_mask(hf_adapter.layer_kind(module), item_index), query.shape[1])
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=allow, scale=scaling,
                                         enable_gqa=key.shape[1] != query.shape[1])  # fmt: skip
    return rearrange(out, "batch head query dim -> batch query head dim").contiguous(), None


def sdpa_float(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
               item_index=None, item_bias=None, **kwargs):  # fmt: skip
    """Lever: SDPA's fused kernel with the additive float mask (built once per forward)."""
    bias = item_bias[hf_adapter.layer_kind(module)].to(query.dtype)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scaling,
                                         enable_gqa=key.shape[1] != query.shape[1])  # fmt: skip
    return rearrange(out, "batch head query dim -> batch query head dim").contiguous(), None


def sdpa_causal(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                item_index=None, **kwargs):  # fmt: skip
    """Lever: SDPA's is_causal path for causal layers (right padding: a real token never sees a
    PAD key), the boolean mask elsewhere."""
    if hf_adapter.layer_kind(module) != "causal":
        return sdpa_bool(module, query, key, value, attention_mask, scaling, item_index=item_index)
    out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling,
                                         enable_gqa=key.shape[1] != query.shape[1])  # fmt: skip
    return rearrange(out, "batch head query dim -> batch query head dim").contiguous(), None


def explicit(*args, **kwargs):
    """Lever: the explicit-matmul path (the training path on a CPU) used for scoring too."""
    with torch.enable_grad():  # attend_grouped takes SDPA's kernel without autograd
        return hf_adapter.item_aware_attention(*args, **kwargs)


ATTENTION = {"before": sdpa_bool, "sdpa-float": sdpa_float, "sdpa-is-causal": sdpa_causal,
             "explicit": explicit, "after": hf_adapter.item_aware_attention}  # fmt: skip
TRAIN_LEVERS = ("before", "sdpa-float", "sdpa-is-causal", "after")


def use_attention(name: str) -> None:
    AttentionInterface.register(hf_adapter.ATTENTION_NAME, ATTENTION[name])


def timed(fn):
    """(result, wall seconds, this process's CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def real_tokens(batch) -> int:
    return int((batch.item_index != PADDING).sum())


def stepper(data, model, optimizer):
    """The trainer's own step (train.train_step) at a constant rate: batch -> loss."""
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return lambda batch: train_step(model, model.loss, optimizer, constant, batch, data.cfg)


def train_levers(data, model, optimizer, steps: int, big_batches) -> dict:
    """Tokens/s of a training step under each attention lever (same batches, round-robin), and
    of the package's code with `big_batches` (more windows a step)."""
    batches = list(itertools.islice(data.epoch(torch.Generator().manual_seed(0)), steps + 1))

    step = stepper(data, model, optimizer)
    levers = {name: {"wall": [], "cpu": [], "tokens": []} for name in TRAIN_LEVERS}
    levers[f"after, {len(big_batches[0])} windows a step"] = {"wall": [], "cpu": [], "tokens": []}
    for i in range(len(batches)):
        for name, log in levers.items():
            big = name.startswith("after,")
            use_attention("after" if big else name)
            batch = big_batches[i % len(big_batches)] if big else batches[i]
            _, wall, cpu = timed(lambda b=batch: step(b))
            if i:  # the first step of each is warm-up
                log["wall"].append(wall / real_tokens(batch))
                log["cpu"].append(cpu / real_tokens(batch))
    use_attention("after")
    return {name: {"tokens_per_s_wall": round(1 / statistics.median(log["wall"]), 1),
                   "tokens_per_s_cpu": round(1 / statistics.median(log["cpu"]), 1)}
            for name, log in levers.items()}  # fmt: skip


def score(model, data, users: int, grad: bool, batch_size: int):
    """Ranks of the first `users` validation users, scored as evaluation does (by length)."""
    batch, seen = data.valid, data.seen["valid"][:users]
    targets = data.split.valid[:users]
    lengths = (batch.item_index[:users] != PADDING).sum(1)

    def score_rows(rows):
        mode = torch.enable_grad() if grad else torch.inference_mode()
        with mode, torch.autocast("cpu", torch.bfloat16, enabled=data.cfg.bf16):
            return model.score(batch[rows])

    model.eval()
    out = rank_targets(score_rows, seen, targets, batch_size, torch.argsort(lengths, stable=True))
    model.train()
    return out["seen_excluded"]


def score_levers(data, model, users: int) -> dict:
    """Users/s of full-catalog scoring: before (SDPA boolean mask, autograd on, as evaluation ran)
    and each lever, twice round-robin; ranks of each compared with the before's."""
    size = data.cfg.eval_batch_size
    levers = {"before": ("before", True, size), "inference_mode": ("before", False, size),
              "explicit matmuls, inference_mode": ("explicit", False, size),
              "after": ("after", False, size), "after, batch 32": ("after", False, 32),
              "after, batch 512": ("after", False, 512)}  # fmt: skip
    logs = {name: {"wall": [], "cpu": []} for name in levers}
    ranks = {}
    for _ in range(2):
        for name, (attention, grad, batch_size) in levers.items():
            use_attention(attention)
            ranks[name], wall, cpu = timed(
                lambda g=grad, b=batch_size: score(model, data, users, g, b)
            )
            logs[name]["wall"].append(wall)
            logs[name]["cpu"].append(cpu)
    use_attention("after")
    out = {}
    for name, log in logs.items():
        diff = (ranks[name] - ranks["before"]).abs()
        ndcg = ((ranks[name] < 10) / torch.log2(ranks[name] + 2.0)).mean()
        out[name] = {"users_per_s_wall": round(users / min(log["wall"]), 2),
                     "users_per_s_cpu": round(users / min(log["cpu"]), 2),
                     "ranks_equal": int((diff == 0).sum()), "users": users,
                     "median_rank_difference": float(diff.float().median()),
                     "valid_ndcg_at_10": round(float(ndcg), 4)}  # fmt: skip
    return out


CATEGORIES = {  # profiler op name fragments -> part of a step
    "gemm": ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear"),
    "attention": ("scaled_dot_product", "softmax"),
    "optimizer": ("adamw", "clip_grad", "foreach_norm", "aten::norm"),
}


def split_step(data, model, optimizer, attention: str) -> dict:
    """Share of one step's CPU self time by part (torch.profiler), data loading timed apart."""
    from torch.profiler import ProfilerActivity, profile

    use_attention(attention)
    batches = data.epoch(torch.Generator().manual_seed(1))
    data_seconds = timed(lambda: next(batches))[1]
    batch = next(batches)
    step = stepper(data, model, optimizer)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batch)
    parts = dict.fromkeys([*CATEGORIES, "elementwise and copies"], 0.0)
    for event in prof.key_averages():
        name = event.key.lower()
        part = next((p for p, keys in CATEGORIES.items() if any(k in name for k in keys)),
                    "elementwise and copies")  # fmt: skip
        parts[part] += event.self_cpu_time_total / 1e6
    parts["data"] = data_seconds
    total = sum(parts.values())
    use_attention("after")
    return {part: round(seconds / total, 3) for part, seconds in parts.items()}


def cpu_peak(threads: int) -> dict:
    """The CPU's dense bf16 peak for `threads` cores, from its flags and clock (the formula)."""
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    flags = cpu_bf16_instructions()
    per_cycle = FLOPS_PER_CYCLE[flags]
    peak = threads * mhz * 1e6 * per_cycle / 1e12
    formula = f"{threads} cores x {mhz / 1e3:.2f} GHz x {per_cycle} FLOPs/cycle ({flags or 'fp32'})"
    return {"peak_tflops": round(peak, 2), "peak_formula": formula}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="token")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per lever")
    parser.add_argument("--eval-users", type=int, default=256)
    parser.add_argument("--big-batch", type=int, default=get_config("every-user").batch_size,
                        help="windows a step of the after (default: the every-user preset's)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = prepare(get_config("llm", plan=args.plan))
    torch.manual_seed(0)
    model = build_model(data.cfg, data.serializer)
    optimizer = make_optimizer(model, data.cfg)
    big = prepare(get_config("llm", plan=args.plan, batch_size=args.big_batch))
    big_batches = list(itertools.islice(big.epoch(torch.Generator()), args.steps + 1))
    facts = {"cpu": cpu_name(), "bf16_instructions": cpu_bf16_instructions(),
             "threads": args.threads, "torch": torch.__version__, "plan": args.plan,
             "load_average_before": os.getloadavg()[0], **cpu_peak(args.threads)}  # fmt: skip
    print(facts, flush=True)
    train = train_levers(data, model, optimizer, args.steps, big_batches)
    print(json.dumps(train, indent=1), flush=True)
    scoring = score_levers(data, model, args.eval_users)
    print(json.dumps(scoring, indent=1), flush=True)
    split = {name: split_step(data, model, optimizer, name) for name in ("before", "after")}
    weights = sum(p.numel() for n, p in model.named_parameters()
                  if "embed" not in n and not n.startswith("item_"))  # fmt: skip
    result = summary(facts, train, scoring, split, weights, data)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def summary(facts, train, scoring, split, weights, data) -> dict:
    """The JSON the README's table is made from: before/after, every lever's ratio, the peak."""
    key = "tokens_per_s_cpu" if facts["threads"] == 1 else "tokens_per_s_wall"
    ukey = "users_per_s_cpu" if facts["threads"] == 1 else "users_per_s_wall"
    before = train["before"][key]
    after = train[next(name for name in train if name.startswith("after,"))][key]
    tokens = sum(len(t) for t in data.serializer.item_tokens) / len(data.serializer.item_tokens)
    levers = [
        {"lever": f"train: {name}", "ratio": round(r[key] / before, 2), "tokens_per_s": r[key]}
        for name, r in train.items()
        if name != "before"
    ]
    levers += [{"lever": f"score: {name}", "ratio": round(r[ukey] / scoring["before"][ukey], 2),
                "users_per_s": r[ukey], "ranks_equal": f"{r['ranks_equal']}/{r['users']}",
                "valid_ndcg_at_10": r["valid_ndcg_at_10"]}
               for name, r in scoring.items() if name != "before"]  # fmt: skip
    achieved = 6 * weights * after / 1e12
    return {**facts, "timed_by": key.removeprefix("tokens_per_s_") + " time",
            "load_average_after": os.getloadavg()[0], "non_embedding_weights": weights,
            "before_tokens_per_s": before, "after_tokens_per_s": after,
            "train_speedup": round(after / before, 2),
            "before_users_per_s": scoring["before"][ukey], "after_users_per_s": scoring["after"][ukey],
            "score_speedup": round(scoring["after"][ukey] / scoring["before"][ukey], 2),
            "after_training_tflops": round(achieved, 3),
            "after_fraction_of_peak": round(achieved / facts["peak_tflops"], 3),
            "mean_tokens_an_item": round(tokens, 1),
            "split_before": split["before"], "split_after": split["after"],
            "levers": levers, "train": train, "scoring": scoring}  # fmt: skip


def table(r: dict) -> str:
    lines = [f"{r['cpu']}, {r['threads']} thread(s), timed by {r['timed_by']}; peak "
             f"{r['peak_tflops']} TFLOP/s = {r['peak_formula']}",
             f"train tokens/s: before {r['before_tokens_per_s']:.0f}, after "
             f"{r['after_tokens_per_s']:.0f} ({r['train_speedup']:.2f}x); scoring users/s: before "
             f"{r['before_users_per_s']:.1f}, after {r['after_users_per_s']:.1f} "
             f"({r['score_speedup']:.2f}x); after = {r['after_training_tflops']} TFLOP/s, "
             f"{100 * r['after_fraction_of_peak']:.1f}% of peak",
             f"split of a step before: {r['split_before']}",
             f"split of a step after:  {r['split_after']}"]  # fmt: skip
    lines += [f"  {x['lever']:<40} {x['ratio']:>5.2f}x" for x in r["levers"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
