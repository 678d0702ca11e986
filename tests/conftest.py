"""Shared fixtures: offline hub, a synthetic MovieLens folder, and the real data when present."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from iam_tutorial.data.synthetic import make_synthetic_ml1m  # noqa: E402
from iam_tutorial.paths import data_dir  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Unit tests use tiny tensors, where extra threads only cost synchronisation."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny MovieLens-shaped folder (official formats + benchmark form)."""
    return make_synthetic_ml1m(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def synthetic_env(monkeypatch, synthetic_root, tmp_path):
    """The synthetic data as IAM_DATA_DIR, results in a temporary folder (returned)."""
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    monkeypatch.setenv("IAM_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture(scope="session")
def ml1m_root():
    """The real data folder ($IAM_DATA_DIR); tests that need it skip when it is absent."""
    root = data_dir()
    if not (root / "ml-1m" / "movies.dat").exists():
        pytest.skip(f"MovieLens-1M not found in {root} (set IAM_DATA_DIR)")
    return root
