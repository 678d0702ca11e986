"""How the memory allocator and the scoring batch set SmolLM2's speed on a CPU, in one run.

  python benchmarks/llm_memory.py [--users 512] [--steps 3] [--threads 2]
                                  [--json results/benchmarks/llm_memory.json]

The every-user preset's model scores a batch of 512 users in tensors of hundreds of MB. glibc's
malloc serves any block above 32 MB with a fresh mmap and unmaps it on free, so every such tensor
is faulted in page by page and zeroed by the kernel, batch after batch: on 2 cores of a Xeon the
run spent a third of its CPU time in the kernel (`top`: 32% sy, 430,000 page faults a second).
The levers, each in a process of its own (glibc reads its tunables when a process starts):
- `default`: glibc as it comes;
- `reuse`: GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...: large blocks
  come from the heap and stay there for the next batch (the peak memory stays taken);
- `mallopt`: what evaluation does (`device.heap_reused`): the same two settings made from inside
  the process while scoring, then glibc's settled thresholds and the free memory returned, so
  its training runs as glibc's default does after a long run;
- `hugepages`: glibc.malloc.hugetlb=1: transparent huge pages, one fault per 2 MB;
each at the preset's scoring batch (512 users) and at 64. A lever scores the first --users test
users as evaluation does (by input length, eval_batch_size users a batch) and then trains --steps
steps of the preset's 16 windows (after one warm-up step). Printed per lever: users/s, tokens/s
(wall clock), the process's user and system CPU seconds and minor page faults while scoring and
while training, peak RSS, and how many ranks equal the first lever's (the allocator cannot
change a number; the batch can, by bf16 rounding). Ratios are to the first lever, same run.
"""

import argparse
import contextlib
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ALLOCATORS = {  # GLIBC_TUNABLES of each lever; "mallopt": the package's device.heap_reused
    "default": "",
    "mallopt": "",
    "reuse": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736",
    "hugepages": "glibc.malloc.hugetlb=1",
}
LEVERS = ("default/512", "reuse/512", "mallopt/512", "hugepages/512", "default/64", "reuse/64")


def usage() -> tuple[float, float, int]:
    """(user CPU s, system CPU s, minor page faults) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def measured(fn) -> tuple[object, dict]:
    """fn()'s result and its wall, user and system seconds and page faults."""
    wall, (user, system, faults) = time.perf_counter(), usage()
    out = fn()
    u, s, f = usage()
    return out, {"wall_s": time.perf_counter() - wall, "user_s": u - user, "system_s": s - system,
                 "page_faults": f - faults}  # fmt: skip


def worker(args) -> dict:
    """One lever in this process: score, then train; returns the measurements."""
    import torch

    from iam_tutorial.config import get_config
    from iam_tutorial.family import build_model
    from iam_tutorial.metrics import rank_targets
    from iam_tutorial.pipeline import prepare
    from iam_tutorial.serialize import PADDING
    from iam_tutorial.train import make_optimizer, model_scorer, train_step

    torch.set_num_threads(args.threads)
    data = prepare(get_config("every-user", plan="token", eval_batch_size=args.batch))
    torch.manual_seed(0)
    model = build_model(data.cfg, data.serializer).eval()
    users = torch.arange(args.users)
    lengths = (data.test.item_index[: args.users] != PADDING).sum(1)
    order = users[torch.argsort(lengths, stable=True)]
    scorer = model_scorer(model, data, "test", torch.device("cpu"))
    seen, targets = data.seen["test"][: args.users], data.split.test[: args.users]
    with contextlib.ExitStack() as scope:
        if args.mallopt:  # what evaluation does: the heap reused while scoring, settled after
            from iam_tutorial.device import heap_reused

            assert scope.enter_context(heap_reused()), "mallopt failed"
        ranks, scoring = measured(lambda: rank_targets(scorer, seen, targets, args.batch, order))
    model.train()
    optimizer = make_optimizer(model, data.cfg)
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = list(itertools.islice(data.epoch(torch.Generator().manual_seed(0)), args.steps + 1))
    train_step(model, model.loss, optimizer, constant, batches[0], data.cfg)  # warm-up
    tokens = sum(int((b.item_index != PADDING).sum()) for b in batches[1:])
    _, training = measured(lambda: [train_step(model, model.loss, optimizer, constant, b, data.cfg)
                                    for b in batches[1:]])  # fmt: skip
    return {
        "scoring": scoring | {"users_per_s": args.users / scoring["wall_s"]},
        "training": training | {"tokens_per_s": tokens / training["wall_s"]},
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "ranks": ranks["seen_excluded"].tolist(),
    }


def run_lever(lever: str, args) -> dict:
    """Run `lever` ("allocator/batch") in a fresh process; returns its measurements."""
    allocator, batch = lever.split("/")
    env = {**os.environ, "GLIBC_TUNABLES": ALLOCATORS[allocator]}
    command = [sys.executable, __file__, "--worker", "--batch", batch, "--users", str(args.users),
               "--steps", str(args.steps), "--threads", str(args.threads)]  # fmt: skip
    command += ["--mallopt"] if allocator == "mallopt" else []
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return {"lever": lever, **json.loads(out.strip().splitlines()[-1])}


def table(rows: list[dict]) -> str:
    """One line per lever with its ratios to the first."""
    first = rows[0]
    lines = [f"{'lever':<15}{'users/s':>9}{'ratio':>7}{'sys s':>7}{'faults':>11}{'tokens/s':>10}"
             f"{'ratio':>7}{'sys s':>7}{'peak GB':>9}{'ranks equal':>13}"]  # fmt: skip
    for r in rows:
        s, t = r["scoring"], r["training"]
        lines.append(
            f"{r['lever']:<15}{s['users_per_s']:>9.2f}"
            f"{s['users_per_s'] / first['scoring']['users_per_s']:>6.2f}x{s['system_s']:>7.1f}"
            f"{s['page_faults']:>11,}{t['tokens_per_s']:>10.0f}"
            f"{t['tokens_per_s'] / first['training']['tokens_per_s']:>6.2f}x{t['system_s']:>7.1f}"
            f"{r['peak_rss_gb']:>9.1f}{r['ranks_equal']:>13}"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=512, help="test users scored per lever")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per lever")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levers", nargs="*", default=list(LEVERS), help="allocator/batch")
    parser.add_argument("--batch", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mallopt", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    from iam_tutorial.device import cpu_name

    facts = {"cpu": cpu_name(), "threads": args.threads, "users": args.users,
             "steps": args.steps, "load_average_before": os.getloadavg()[0]}  # fmt: skip
    print(facts, flush=True)
    rows = []
    for lever in args.levers:
        rows.append(run_lever(lever, args))
        rows[-1]["ranks_equal"] = sum(
            a == b for a, b in zip(rows[-1]["ranks"], rows[0]["ranks"], strict=True)
        )
        print(table(rows).splitlines()[-1], flush=True)
    print(table(rows))
    if args.json:
        stored = [{k: v for k, v in r.items() if k != "ranks"} for r in rows]
        args.json.write_text(json.dumps({**facts, "levers": stored}, indent=1) + "\n")


if __name__ == "__main__":
    main()
