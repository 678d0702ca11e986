"""nbval runs every notebook in a fresh kernel that inherits this environment: pin what makes
outputs reproducible before any kernel starts (threads, hash seed, offline hub, no tqdm bars), and
send figures to a temporary folder, so checking a notebook never rewrites the README's figures
(`make notebooks` is the one command that does, with IAM_FIGURES_DIR=figures)."""

import os
import tempfile

os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("IAM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ["IAM_FIGURES_DIR"] = tempfile.mkdtemp(prefix="iam-nbval-figures-")
