"""Which device to train on, and whether a run autocasts to bf16 there.

`device="auto"` picks CUDA, then Apple's MPS, then the CPU. `bf16_decision` turns the config's
bf16 request (True, False, or None for auto) into a decision and its reason, which every result
records: bf16 needs a device that has it, and pays off only where the hardware runs it natively.
"""

import contextlib
import ctypes
import platform
import sys
from pathlib import Path

import torch

from iam_tutorial.config import SCRATCH, ConfigError

# mallopt's parameters (malloc.h), and glibc's own thresholds once a long run has raised them.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
GLIBC_SETTLED = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 64 * 2**20}


def glibc():
    """The C library if it is glibc on Linux (its malloc is the one tuned here), else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL("libc.so.6")


@contextlib.contextmanager
def heap_reused():
    """While inside, large freed blocks stay in the heap for the next batch (Linux with glibc;
    elsewhere nothing changes). glibc's malloc serves every block above 32 MB with a fresh mmap
    and unmaps it on free, so scoring an LLM, whose batch tensors are hundreds of MB, has the
    kernel fault in and zero them page by page, batch after batch: a third of the CPU time on 2
    cores. Scoring inside runs 2.1x faster with identical ranks (benchmarks/llm_memory.py). On
    exit the free memory goes back to the system and glibc's thresholds are the ones it reaches
    by itself, because training gains nothing from the heap and, kept there across 124 steps of
    varied shapes, fragments it: a cell's peak grew from 14.1 to 18.5 GiB. Yields whether it
    applied."""
    libc = glibc()
    if libc is None:
        yield False
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield True
    finally:
        for parameter, value in GLIBC_SETTLED.items():
            libc.mallopt(parameter, value)
        libc.malloc_trim(0)


def mps_available() -> bool:
    """Apple's Metal backend (torch builds without it lack the attribute on older versions)."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda, else mps, else cpu; a named device that is not there is a ConfigError
    (one clear line) rather than an assertion deep inside torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name!r}, but this torch ({torch.__version__}) sees no CUDA GPU; "
            f"use device='auto' or 'cpu'."
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device={name!r}, but only {torch.cuda.device_count()} CUDA device(s) exist."
        )
    if device.type == "mps" and not mps_available():
        raise ConfigError(f"device={name!r}, but MPS is not available here; use 'auto' or 'cpu'.")
    return device


def bf16_blocker(device: torch.device) -> str:
    """Why bf16 autocast should not run on `device` ('' when it can)."""
    if device.type == "mps":
        return "MPS bf16 autocast needs a recent macOS and is untested here, so fp32 is used"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} has no bf16 (Ampere or later has)"
    return ""


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows, else 'cpu'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def cpu_bf16_instructions() -> str:
    """The CPU's native bf16 matrix instructions ('amx_bf16', 'avx512_bf16') or '' (Linux flags;
    elsewhere unknown, so auto stays fp32)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return ""
    return next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), "")


def bf16_decision(cfg, device: torch.device) -> tuple[bool, str]:
    """Whether a run autocasts to bf16, and why. An explicit `cfg.bf16` is kept where the device
    has it; `None` (auto) takes bf16 on CUDA GPUs that have it, and on CPUs with native bf16
    instructions for pretrained backbones (SmolLM2-135M fine-tunes 2.7x faster there:
    results/benchmarks/trainer_speed_smollm2_fused.txt); width-32 models from scratch stay fp32 on
    the CPU, where bf16 buys nothing at that size (benchmarks/trainer_speed.py)."""
    blocker = bf16_blocker(device)
    if cfg.bf16 is not None:
        if cfg.bf16 and blocker:
            return False, f"bf16 requested, off: {blocker}"
        return cfg.bf16, "requested"
    if blocker:
        return False, f"auto: {blocker}"
    if device.type == "cuda":
        return True, "auto: CUDA GPU with bf16"
    instructions = cpu_bf16_instructions()
    if not instructions:
        return False, "auto: this CPU has no native bf16 instructions"
    if cfg.backbone == SCRATCH:
        return False, f"auto: a small model from scratch ({instructions} CPU, fp32 is as fast)"
    return True, f"auto: pretrained backbone on a CPU with {instructions}"


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak GPU memory allocated on CUDA; on CPU the process's peak resident memory (ru_maxrss,
    KiB on Linux, bytes on macOS); None where neither is known (Windows has no `resource`)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)
