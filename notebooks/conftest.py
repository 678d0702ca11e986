"""nbval runs every notebook in a fresh kernel that inherits this environment: pin what makes
outputs reproducible before any kernel starts (threads, hash seed, offline hub, no tqdm bars)."""

import os

os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("IAM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
