"""Settings for `pytest --nbval notebooks` (`make nbval`), kept out of the learner's notebook folder.

nbval runs every notebook in a fresh kernel that inherits this process's environment: pin what makes
outputs reproducible before any kernel starts (threads, hash seed, offline hub, no tqdm bars), and
send figures to a temporary folder, so checking a notebook never rewrites the README's figures
(`make notebooks` is the one command that does, with IAM_FIGURES_DIR=figures). Unit tests
(`pytest tests`) are left alone: tests/conftest.py sets theirs.
"""

import os
import tempfile

NOTEBOOK_ENV = {
    "PYTHONHASHSEED": "0",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "IAM_THREADS": "2",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "TQDM_DISABLE": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


def pytest_configure(config):
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        return
    for name, value in NOTEBOOK_ENV.items():
        os.environ.setdefault(name, value)  # a caller's IAM_THREADS=1 wins
    os.environ["IAM_FIGURES_DIR"] = tempfile.mkdtemp(prefix="iam-nbval-figures-")
