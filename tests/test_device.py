"""Device choice and the bf16 decision, with the hardware faked: every branch runs on any machine."""

import dataclasses

import pytest
import torch

from iam_tutorial import device as dev
from iam_tutorial.config import ConfigError, get_config


@pytest.fixture
def hardware(monkeypatch):
    """Fake what torch reports: call with cuda=..., mps=..., bf16=..., system=..., count=..."""

    def fake(cuda=False, mps=False, bf16=True, system="Linux", count=1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count if cuda else 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Old GPU")
        monkeypatch.setattr(dev, "mps_available", lambda: mps)
        monkeypatch.setattr(dev.platform, "system", lambda: system)

    return fake


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(hardware, cuda, mps, expected):
    hardware(cuda=cuda, mps=mps)
    assert dev.resolve_device("auto").type == expected


def test_named_devices(hardware):
    hardware(cuda=True, count=2)
    assert dev.resolve_device("cuda:1") == torch.device("cuda:1")
    assert dev.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="only 2 CUDA"):
        dev.resolve_device("cuda:2")


def test_missing_devices_are_one_line_errors(hardware):
    hardware(cuda=False, mps=False)
    with pytest.raises(ConfigError, match="sees no CUDA GPU; use device='auto'"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        dev.resolve_device("mps")


def decide(device: str, bf16=None, backbone="scratch"):
    cfg = dataclasses.replace(get_config("quick"), bf16=bf16, backbone=backbone)
    return dev.bf16_decision(cfg, torch.device(device))


def test_bf16_kept_where_asked_and_supported(hardware, monkeypatch):
    hardware(cuda=True, bf16=True)
    assert decide("cuda", bf16=True) == (True, "requested")
    assert decide("cpu", bf16=False) == (False, "requested")
    assert decide("cuda") == (True, "auto: CUDA GPU with bf16")


def test_bf16_dropped_with_a_reason(hardware, monkeypatch):
    hardware(cuda=True, bf16=False)
    assert decide("cuda", bf16=True) == (
        False, "bf16 requested, off: Old GPU has no bf16 (Ampere or later has)"
    )  # fmt: skip
    on, why = decide("mps")
    assert not on and why.startswith("auto: MPS bf16")


def test_auto_bf16_on_a_cpu_only_for_a_backbone_with_native_instructions(hardware, monkeypatch):
    hardware()
    monkeypatch.setattr(dev, "cpu_bf16_instructions", lambda: "")
    assert decide("cpu", backbone="smollm2-135m") == (
        False, "auto: this CPU has no native bf16 instructions"
    )  # fmt: skip
    monkeypatch.setattr(dev, "cpu_bf16_instructions", lambda: "amx_bf16")
    assert decide("cpu", backbone="smollm2-135m")[0] is True
    assert decide("cpu")[0] is False  # from scratch: fp32 is as fast


def test_the_heap_is_reused_inside_the_scope_and_settles_after():
    import ctypes
    import platform
    import sys
    from pathlib import Path

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

    def in_heap(size: int) -> bool:  # whether malloc serves `size` bytes from the [heap] mapping
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        block = libc.malloc(size)
        maps = Path("/proc/self/maps").read_text().splitlines()
        libc.free(ctypes.c_void_p(block))
        heap = [line.split()[0].split("-") for line in maps if line.endswith("[heap]")]
        return bool(block) and any(int(a, 16) <= block < int(b, 16) for a, b in heap)

    with dev.heap_reused() as applied:
        assert applied is glibc
        if glibc:  # far above glibc's 32 MB mmap ceiling, yet from the heap
            assert in_heap(256 * 2**20)
    if glibc:  # after: above 32 MB is an mmap of its own again, below it the heap
        assert not in_heap(256 * 2**20) and in_heap(8 * 2**20)
