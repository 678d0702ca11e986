"""Device choice and speed flags, with the hardware faked: every branch runs on any machine."""

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


def flags(device: str, bf16=True, compile=True):
    cfg = dataclasses.replace(get_config("quick"), bf16=bf16, compile=compile)
    return dev.runtime_flags(cfg, torch.device(device))


def test_flags_kept_where_they_work(hardware):
    hardware(cuda=True, bf16=True)
    assert flags("cuda") == dev.RuntimeFlags(True, True, ())
    assert flags("cpu") == dev.RuntimeFlags(True, True, ())  # CPU bf16: slow but works
    assert flags("cuda", bf16=False, compile=False) == dev.RuntimeFlags(False, False, ())


def test_flags_dropped_with_a_reason(hardware):
    hardware(cuda=True, bf16=False)
    old_gpu = flags("cuda")
    assert (old_gpu.bf16, old_gpu.compile) == (False, True)
    assert old_gpu.notes == ("bf16 off: Old GPU has no bf16 (Ampere or later has)",)
    mps = flags("mps")
    assert (mps.bf16, mps.compile) == (False, False) and len(mps.notes) == 2
    hardware(cuda=True, system="Windows")
    windows = flags("cuda")
    assert (windows.bf16, windows.compile) == (True, False)
    assert "Windows" in windows.notes[0]


def test_flags_never_add_what_was_not_asked(hardware):
    hardware(system="Windows")
    assert flags("mps", bf16=False, compile=False) == dev.RuntimeFlags(False, False, ())
