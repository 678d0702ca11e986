"""Worker processes that share one GPU: a queue of tasks, timing a kind of cell, training one.

full.py starts `Pool(lanes, ...)`; each worker maps the shared, pre-tokenized data once
(fastdata.py), then serves ("time", cell, seconds) and ("train", cell, (deadline, reserve)) tasks
until it gets None, and reports every result, or the error that ended a task, on one queue. A
worker that runs out of memory reports it and keeps serving; `calibrate` then ends lanes.
"""

import contextlib
import dataclasses
import os
import queue
import threading
import time
from multiprocessing import get_context
from pathlib import Path

from iam_tutorial.config import Config
from iam_tutorial.device import resolve_device
from iam_tutorial.family import build_model
from iam_tutorial.lab import sizing, store
from iam_tutorial.plans import PLANS
from iam_tutorial.repro import seed_everything
from iam_tutorial.train import evaluate_model, make_optimizer, train, train_step

WARMUP_STEPS = 2  # untimed first steps (CUDA context, cuBLAS handles, allocator growth)
WORKER_ENV = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # deterministic cuBLAS, without a warning per matmul
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",  # less fragmentation, many processes
    "TOKENIZERS_PARALLELISM": "false",
}


# --- in each worker process -------------------------------------------------------------------


def worker(shared_path, out_dir, tasks, reports, barrier, threads: int):
    """Serve tasks until None: ("time", cfg, seconds) or ("train", cfg, (deadline, reserve))."""
    import torch

    torch.set_num_threads(threads)
    first, cache = True, {}
    while (task := tasks.get()) is not None:
        verb, cfg, arg = task
        try:
            data = cell_data(shared_path, cfg, cache)
            if first:  # every worker has loaded its data: the timings start together
                with contextlib.suppress(threading.BrokenBarrierError):  # one died: time anyway
                    barrier.wait(timeout=60)
                first = False
            work = measure if verb == "time" else train_cell
            reports.put((verb, store.cell_name(cfg), cfg.seed, work(cfg, data, arg, out_dir)))
        except Exception as error:  # out of memory, say: report it, keep serving
            reports.put(("failed", store.cell_name(cfg), cfg.seed, f"{verb}: {error!r}"[:400]))
        if torch.cuda.is_available():  # the next task's peak memory is its own
            torch.cuda.empty_cache()


def cell_data(shared_path, cfg: Config, cache: dict):
    """The shared data under this cell's config, streams on its device (moved once per form)."""
    import torch

    form = "text" if PLANS[cfg.plan].text else "id"
    if form not in cache:
        shared = cache.setdefault("file", torch.load(shared_path, mmap=True, weights_only=False))
        data = shared[form]
        cache[form] = data.for_config(data.cfg, resolve_device(cfg.device))
    return cache[form].for_config(cfg)


def throwaway_trainer(cfg: Config, data, device):
    """(model, step): a fresh model of this kind of cell, and one AdamW step at a constant rate on
    the next random batch, returning its tokens (the loss's .item() waits for the GPU, so a clock
    around it is honest)."""
    import torch

    seed_everything(cfg.seed)
    model = build_model(data.cfg, data.serializer).to(device)
    optimizer = make_optimizer(model, data.cfg)
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    def epochs():  # random samples of epochs, as many as the seconds take
        generator = torch.Generator().manual_seed(cfg.seed)
        while True:
            yield from data.epoch(generator)

    batches = epochs()

    def step() -> int:
        batch = next(batches).to(device)
        train_step(model, model.loss, optimizer, constant, batch, data.cfg)
        return batch.tokens.numel()

    return model, step


def measure(cfg: Config, data, seconds: float, out_dir=None) -> dict:
    """A `sizing.Timing` of this kind of cell: steps for `seconds` on a throwaway model."""
    import torch

    device = resolve_device(data.cfg.device)
    model, step = throwaway_trainer(cfg, data, device)
    for _ in range(WARMUP_STEPS):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, n, tokens = time.perf_counter(), 0, 0
    while n < 3 or time.perf_counter() - start < seconds:
        tokens, n = tokens + step(), n + 1
    per_token = (time.perf_counter() - start) / tokens
    # At an epoch's mean batch, not the few sampled ones: their widths vary a lot.
    steps = data.steps_per_epoch()
    step_seconds = per_token * data.padded_tokens(torch.Generator().manual_seed(0)) / steps
    start = time.perf_counter()
    evaluate_model(model, data, "valid", device)
    eval_seconds = time.perf_counter() - start
    cuda = device.type == "cuda"
    timing = sizing.Timing(
        step_seconds,
        eval_seconds,
        steps,
        torch.cuda.max_memory_reserved(device) / 2**20 if cuda else 0.0,
        torch.cuda.mem_get_info(device)[1] / 2**20 if cuda else 0.0,
    )
    return {**dataclasses.asdict(timing), "steps_timed": n}


def train_cell(cfg: Config, data, arg, out_dir) -> dict:
    """Train one cell under its share of the budget and write it; a short summary comes back."""

    deadline, reserve = arg
    left = deadline - time.time() - reserve
    if left <= 1:
        raise TimeoutError(f"only {left:.0f} s left before the deadline: not started")
    cfg = dataclasses.replace(
        cfg, max_train_seconds=round(min(cfg.max_train_seconds or left, left), 1)
    )
    started = time.time()
    results = train(data.for_config(cfg), progress=False)[1]
    results["worker"] = {"pid": os.getpid(), "started": started, "ended": time.time()}
    stored = store.write_cell(cfg, results, out_dir)
    return {
        "epochs": stored["epochs"],
        "stopped_by": stored["stopped_by"],
        "test_NDCG@10": stored["test"]["seen_excluded"]["NDCG@10"],
        "train_seconds": stored["train_seconds"],
        "ended": stored["worker"]["ended"],
    }


# --- in the parent process -------------------------------------------------------------------


class Pool:
    """`lanes` worker processes (spawned: CUDA needs it) on one task queue; reports on another."""

    def __init__(self, lanes: int, shared_path: Path, out_dir: Path, threads: int):
        for key, value in WORKER_ENV.items():  # inherited by the workers
            os.environ.setdefault(key, value)
        ctx = get_context("spawn")
        self.tasks, self.reports = ctx.Queue(), ctx.Queue()
        self.barrier = ctx.Barrier(lanes)  # held here: a collected one vanishes under the workers
        args = (str(shared_path), str(out_dir), self.tasks, self.reports, self.barrier, threads)
        self.procs = [ctx.Process(target=worker, args=args, daemon=True) for _ in range(lanes)]
        for p in self.procs:
            p.start()  # they import torch while the parent prepares the data
        self.lanes = lanes

    def collect(self, expected: int, until: float, log=print) -> list[tuple]:
        """Up to `expected` reports, waiting no later than `until` (wall clock)."""
        got = []
        while len(got) < expected and time.time() < until:
            try:
                got.append(self.reports.get(timeout=1))
            except queue.Empty:
                if not any(p.is_alive() for p in self.procs):
                    break
                continue
            verb, kind, seed, value = got[-1]
            if verb == "train":
                log(
                    f"  {kind} seed {seed}: {value['epochs']} epochs, stopped by "
                    f"{value['stopped_by']}, test NDCG@10 {value['test_NDCG@10']:.4f}"
                )
            elif verb == "failed":
                log(f"  {kind} seed {seed} failed: {value}")
        return got

    def retire(self, n: int):
        """End `n` idle workers (each takes one None)."""
        for _ in range(n):
            self.tasks.put(None)
        self.lanes -= n

    def close(self, grace: float = 10):
        self.retire(self.lanes)
        end = time.time() + grace
        for p in self.procs:
            p.join(timeout=max(0.1, end - time.time()))
            if p.is_alive():
                p.terminate()  # past the deadline: its cell is lost, the others are written


def time_kinds(pool: Pool, kinds: dict[str, Config], seconds: float, until: float):
    """Time every kind at once (kinds repeated until every lane has one); returns
    ({kind: Timing}, {kind: error})."""
    names = list(kinds)
    n = max(pool.lanes, len(names))
    for i in range(n):
        pool.tasks.put(("time", kinds[names[i % len(names)]], seconds))
    timings, failed = {}, {}
    for verb, kind, _, value in pool.collect(n, until):
        (
            timings.setdefault(kind, []).append(value)
            if verb == "time"
            else failed.update({kind: value})
        )
    return {kind: _mean_timing(ms) for kind, ms in timings.items()}, failed


def _mean_timing(measured: list[dict]) -> sizing.Timing:
    mean = lambda key: sum(m[key] for m in measured) / len(measured)
    return sizing.Timing(
        mean("step_seconds"),
        mean("eval_seconds"),
        measured[0]["steps_per_epoch"],
        max(m["peak_mib"] for m in measured),
        measured[0]["device_mib"],
    )


def calibrate(pool: Pool, cells: list[Config], seconds: float, until: float, log=print):
    """Time every kind, then end lanes while the largest cells would not fit the GPU together
    (or a kind ran out of memory), and time again at the new width."""
    kinds = {store.cell_name(c): c for c in cells}
    for _ in range(3):
        timings, failed = time_kinds(pool, kinds, seconds, until)
        timed = [store.cell_name(c) for c in cells if store.cell_name(c) in timings]
        fit = sizing.lanes_that_fit(timed, timings, pool.lanes)
        short = [k for k, error in failed.items() if "out of memory" in error.lower()]
        fit = min(fit, max(1, pool.lanes // 2)) if short else fit  # other errors: not retried
        for kind, t in sorted(timings.items()):
            log(
                f"  {kind:<12} {1e3 * t.step_seconds:8.1f} ms/step"
                f"  {t.epoch_seconds():7.1f} s/epoch"
                f"  {t.peak_mib:8.0f} MiB"
            )
        if fit >= pool.lanes or pool.lanes == 1:
            return timings, failed
        log(
            f"  {pool.lanes} lanes do not fit ({', '.join(short) or 'memory'}): {fit} lanes, "
            "timing again"
        )
        pool.retire(pool.lanes - fit)
    return timings, failed
