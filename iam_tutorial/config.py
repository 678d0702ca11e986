"""Experiment configuration: one frozen dataclass and two presets.

QUICK runs on a laptop CPU on real MovieLens-1M users 1..N; FULL is derived from QUICK with
`dataclasses.replace`, so the whole difference between them reads in one place.
"""

import dataclasses
import os
from dataclasses import dataclass

MODES = ("quick", "full")


@dataclass(frozen=True)
class Config:
    mode: str = "quick"  # preset name, recorded in every result
    # Data.
    n_users: int | None = 1000  # original MovieLens user ids 1..n_users; None = all 6,040
    max_items: int = 12  # items per history window fed to the model (SASRec's maxlen)
    max_tokens: int = 224  # token budget of one serialized history, BOS included
    vocab_size: int = 2048  # ByteLevel BPE vocabulary trained on the item texts
    # Model.
    plan: str = "iam"  # attention layer plan: token, control, hatllm, iam, iam-alt, sasrec
    hatllm_split: tuple[int, int, int] | None = None  # (intra, causal, inter) layers; None = auto
    n_layer: int = 2  # transformer blocks
    n_head: int = 2  # attention heads
    n_embd: int = 64  # model width
    dropout: float = 0.0  # dropout (0 keeps SDPA on its fast CPU path)
    item_head: str = "id"  # item table: "id" (learned) or "tied" (mean of its token embeddings)
    attn_impl: str = "sdpa"  # "sdpa", "einops" (reference) or "flex" (CUDA only)
    # Optimisation.
    batch_size: int = 32  # users per step
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_frac: float = 0.05  # fraction of steps spent in linear warmup, then cosine decay
    grad_clip: float = 1.0  # max global gradient norm
    max_epochs: int = 15  # upper bound; early stopping may end sooner
    # Epochs without a better validation NDCG@10 before stopping. QUICK trains every plan the same
    # 15 epochs (one noisy early epoch must not end a run) and keeps its best validation epoch.
    patience: int = 15
    max_steps: int | None = None  # hard step cap (tests and smoke runs); None = no cap
    eval_batch_size: int = 128  # users per evaluation batch
    exclude_seen: bool = True  # headline metrics rank only items outside the input history
    # Runtime.
    seed: int = 0  # seeds python, numpy and torch
    seeds: tuple[int, ...] = (0, 1, 2)  # seeds of a comparison run
    device: str = "auto"  # "auto" picks CUDA when present
    bf16: bool = False  # bf16 autocast (GPU)
    compile: bool = False  # torch.compile the model (GPU)

    def __str__(self) -> str:
        fields = sorted(dataclasses.asdict(self).items())
        return "Config(" + ", ".join(f"{k}={v}" for k, v in fields) + ")"


QUICK = Config()

FULL = dataclasses.replace(
    QUICK,
    mode="full",
    n_users=None,
    max_items=50,
    max_tokens=800,
    vocab_size=4096,
    n_layer=4,
    n_head=4,
    n_embd=256,
    dropout=0.1,
    batch_size=128,
    lr=1e-3,
    max_epochs=100,
    patience=10,
    eval_batch_size=512,
    bf16=True,
)

PRESETS = {"quick": QUICK, "full": FULL}


def get_config(mode: str | None = None, **overrides) -> Config:
    """The preset named `mode` (default: `$IAM_MODE`, else quick), with field overrides."""
    mode = (mode or os.environ.get("IAM_MODE", "quick")).lower()
    if mode not in PRESETS:
        raise ValueError(
            f"Unknown mode {mode!r}: choose one of {', '.join(MODES)} (or set IAM_MODE)."
        )
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(
            f"Unknown config fields {sorted(unknown)}; see iam_tutorial.config.Config."
        )
    return dataclasses.replace(PRESETS[mode], **overrides)
