"""The configuration of one run: a frozen, validated dataclass and one preset per mode.

QUICK (CPU, real MovieLens users 1..800, a tiny GPT-2) is the default; every other preset is
derived from it or from FULL (one GPU, every user) with `dataclasses.replace`, so each difference
reads in one place. What a comparison trains over many runs (plans, item inputs, seeds, budgets)
is the lab's: iam_tutorial/lab/experiments.py.
"""

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass

MODES = ("quick", "reference", "full", "sasrec-full", "llm-pilot", "llm", "every-user")
SCRATCH = "scratch"  # the backbone of a model trained from scratch (family.py: the other families)


@dataclass(frozen=True)
class Config:
    mode: str = "quick"  # preset name, recorded in every result
    # Data.
    n_users: int | None = 800  # original MovieLens user ids 1..n_users; None = all 6,040
    # Users 1..train_users train the model and choose its epoch (validation); the test ranks every
    # loaded user, so it also tells how the model does on users it never saw. None = every user.
    train_users: int | None = None
    max_items: int = 12  # items per history window fed to the model (SASRec's maxlen)
    max_tokens: int = 224  # token budget of one serialized history, BOS included
    vocab_size: int = 2048  # ByteLevel BPE vocabulary trained on the item texts
    # Model.
    # SCRATCH, a named backbone ("smollm2-135m", backbones.py), or a transformers folder/name.
    backbone: str = SCRATCH
    finetune: str = "full"  # with a backbone: "full" fine-tuning, or "lora" adapters (peft)
    lora_rank: int = 8  # LoRA rank when finetune="lora"
    plan: str = "iam"  # attention layer plan: token, control, hatllm, iam, iam-alt, sasrec
    hatllm_split: tuple[int, int, int] | None = None  # (intra, causal, inter) layers; None = auto
    n_layer: int = 3  # transformer blocks (3: hatllm has a causal middle and differs from iam-alt)
    n_head: int = 2  # attention heads
    n_embd: int = 32  # model width
    dropout: float = 0.0  # dropout (0 keeps SDPA on its fast CPU path)
    item_head: str = "id"  # item table: "id" (learned) or "tied" (mean of its token embeddings)
    item_input: str = "text"  # "text", or "text+id": each token also gets its item's ID vector
    attn_impl: str = "sdpa"  # "sdpa", "einops" (reference) or "flex" (CUDA only)
    # Optimisation.
    batch_size: int = 16  # windows per step (QUICK: ~97 steps an epoch)
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_frac: float = 0.05  # fraction of steps spent in linear warmup, then cosine decay
    grad_clip: float = 1.0  # max global gradient norm
    # An epoch trains every training transition once (pipeline.epoch_windows).
    train_horizon: int | None = 12  # train on each user's most recent N transitions; None = all
    max_epochs: int = 18  # upper bound of the shared schedule; early stopping may end sooner
    # Cosine decay to 0.1x over these epochs, then flat; None = all; 0 = constant after a warmup of
    # warmup_frac of one epoch (then a run of E epochs is exactly the start of a longer one).
    decay_epochs: int | None = 12
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping
    # No stop before the learning rate has decayed: text models first drift towards popularity,
    # then learn items, so an early flat stretch is not a plateau (seen with a floor at epoch 8:
    # control and iam cells stopped on epoch 2-6 peaks, before they had learned items).
    min_epochs: int = 12
    max_steps: int | None = None  # hard step cap (tests and smoke runs); None = no cap
    # Wall-clock cap in seconds on one training run, validation included; the best epoch so far
    # is kept (full.py gives each GPU cell its share of the budget). None = no cap.
    max_train_seconds: float | None = None
    eval_every: int = 1  # validate every N epochs (and at the last); patience counts epochs
    eval_batch_size: int = 128  # users per evaluation batch
    exclude_seen: bool = True  # headline metrics rank only items outside the input history
    # Runtime.
    seed: int = 0  # seeds python, numpy and torch
    device: str = "auto"  # "auto" picks CUDA when present
    bf16: bool | None = None  # bf16 autocast; None: device.py decides (recorded in each result)
    compile: bool = False  # torch.compile the model (GPU)

    def __post_init__(self):
        check_config(self)

    def __str__(self) -> str:
        fields = sorted(dataclasses.asdict(self).items())
        return "Config(" + ", ".join(f"{k}={v}" for k, v in fields) + ")"


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the field and fix."""


POSITIVE = ("max_items", "max_tokens", "vocab_size", "n_layer", "n_head", "n_embd",
            "batch_size", "max_epochs", "patience", "min_epochs", "eval_batch_size", "eval_every",
            "lora_rank")  # fmt: skip
CHOICES = {"item_head": ("id", "tied"), "item_input": ("text", "text+id", "id"),
           "attn_impl": ("sdpa", "einops", "flex"), "finetune": ("full", "lora")}  # fmt: skip


def _has_type(value, annotation) -> bool:
    """isinstance against a field annotation (int, float, int | None, tuple[int, ...])."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return any(_has_type(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if origin is tuple:
        inner = args[:1] if args[-1:] == (Ellipsis,) else args
        fits = (
            args[-1:] == (Ellipsis,) or len(value) == len(args)
            if isinstance(value, tuple)
            else False
        )
        return fits and all(_has_type(v, inner[i % len(inner)]) for i, v in enumerate(value))
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def check_config(cfg: "Config") -> None:
    """Every value has its field's type and a usable range; raises ConfigError naming the fix."""
    for f in dataclasses.fields(cfg):
        if not _has_type(getattr(cfg, f.name), f.type):
            _bad(cfg, f.name, f"expected {getattr(f.type, '__name__', f.type)}")
    for name, failed, why in _value_rules(cfg):
        if failed:
            _bad(cfg, name, why)


def _bad(cfg: "Config", name: str, why: str):
    raise ConfigError(f"Config {name}={getattr(cfg, name)!r}: {why}.")


def _value_rules(cfg: "Config") -> list[tuple[str, bool, str]]:
    """(field, whether its value fails, what to do) in the order they are checked."""
    from iam_tutorial.plans import ALL_PLANS  # plans.py imports nothing of ours

    unlimited = {"n_users": "all 6,040 users", "train_users": "every loaded user",
                 "max_steps": "no limit", "train_horizon": "no limit"}  # fmt: skip
    ranges = "out of range (lr > 0, 0 <= dropout < 1, grad_clip > 0, 0 <= warmup_frac < 1)"
    split, scratch = cfg.hatllm_split, cfg.backbone == SCRATCH  # a backbone's depth: family.py
    return [
        *[(name, getattr(cfg, name) < 1, "must be >= 1") for name in POSITIVE],
        ("decay_epochs", cfg.decay_epochs is not None and cfg.decay_epochs < 0,
         "must be >= 1, 0 for a constant rate, or None to decay over all epochs"),
        *[(name, getattr(cfg, name) is not None and getattr(cfg, name) < 1,
           f"must be >= 1, or None for {none}") for name, none in unlimited.items()],
        ("max_train_seconds", cfg.max_train_seconds is not None and not cfg.max_train_seconds > 0,
         "must be > 0 seconds, or None for no cap"),
        ("n_users", cfg.n_users is not None and cfg.n_users > 6040, "MovieLens-1M has 6,040 users"),
        ("train_users", (cfg.train_users or 0) > (cfg.n_users or 6040),
         f"must be <= n_users={cfg.n_users}"),
        ("lr", not cfg.lr > 0, ranges),
        ("dropout", not 0 <= cfg.dropout < 1, ranges),
        ("grad_clip", not cfg.grad_clip > 0, ranges),
        ("warmup_frac", not 0 <= cfg.warmup_frac < 1, ranges),
        *[(name, getattr(cfg, name) not in choices, f"choose one of {', '.join(choices)}")
          for name, choices in CHOICES.items()],
        ("plan", cfg.plan not in ALL_PLANS, f"choose one of {', '.join(ALL_PLANS)}"),
        ("device", not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device),
         "use auto, cpu, cuda, cuda:N or mps"),
        ("n_embd", cfg.n_head >= 1 and cfg.n_embd % cfg.n_head != 0,
         f"must be divisible by n_head={cfg.n_head}"),
        ("item_input", cfg.item_input == "text+id" and cfg.item_head != "id",
         "text+id adds the learned item table: needs item_head='id'"),
        ("hatllm_split",
         split is not None and (min(split) < 0 or (scratch and sum(split) != cfg.n_layer)),
         f"give 3 counts >= 0 that add up to n_layer={cfg.n_layer}"),
    ]  # fmt: skip


QUICK = Config()

REFERENCE = dataclasses.replace(QUICK, mode="reference")

FULL = dataclasses.replace(
    QUICK,
    mode="full",
    n_users=None,
    train_horizon=None,
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
    decay_epochs=None,
    patience=10,
    eval_batch_size=512,
    bf16=True,
)

# SASRec at the literature's scale, on 2 CPU cores in about an hour (Klenitskiy & Vasilev,
# RecSys'23: SASRec with full cross-entropy, width 64, 2 blocks, 1 head, dropout 0.1, Adam lr 1e-3,
# batch 128, length 200; 0.1821 NDCG@10). Every user, every training transition; validation every 4
# epochs (a full pass over 6,040 users costs about a third of an epoch).
SASREC_FULL = dataclasses.replace(
    FULL,
    mode="sasrec-full",
    plan="sasrec",
    max_items=200,
    n_layer=2,
    n_head=1,
    n_embd=64,
    dropout=0.1,
    lr=1e-3,
    weight_decay=0.0,
    warmup_frac=0.02,
    batch_size=128,
    max_epochs=60,
    decay_epochs=None,
    min_epochs=20,
    patience=12,
    eval_every=4,
    bf16=None,
    device="cpu",
)

# A pretrained LLM (SmolLM2-135M, full fine-tuning, bf16 autocast where the CPU has it), users
# 1..300, each user's last 12 transitions, batch 8, lr 1e-4. LLM_PILOT: 2 epochs, to measure the
# seed and per-user noise that size the comparison.
LLM_PILOT = dataclasses.replace(
    QUICK,
    mode="llm-pilot",
    backbone="smollm2-135m",
    n_users=300,
    batch_size=8,
    lr=1e-4,
    max_epochs=2,
    decay_epochs=2,
    min_epochs=2,
    eval_every=1,
)
# LLM: the pilot at a constant rate for 4 epochs, so that the first 1 and 2 epochs of a run are
# exactly the 1- and 2-epoch runs (lab/hooks.py; the budgets are lab/experiments.py's).
LLM = dataclasses.replace(LLM_PILOT, mode="llm", max_epochs=4, decay_epochs=0, min_epochs=4)

# EVERY_USER: the LLM on the benchmark's 6,040 users and 3,416 items. Users 1..1,000 train it
# (each user's last 12 transitions, one epoch at a constant rate after a 5% warmup) and pick its
# epoch; every user is tested. results/every-user/PLAN.md is its plan. 16 windows a step train
# ~1.6x faster than 8 (benchmarks/llm_speed.py); lr scaled by sqrt(2). 32 windows at 2e-4 gave the
# same 1-epoch test NDCG@10 on users 1..300 as 8 at 1e-4 (0.042 vs 0.041-0.044), but ~15 GB.
EVERY_USER = dataclasses.replace(
    LLM, mode="every-user", n_users=None, train_users=1000, batch_size=16, lr=1.4e-4,
    max_epochs=1, min_epochs=1,
)  # fmt: skip

PRESETS = {"quick": QUICK, "reference": REFERENCE, "full": FULL, "sasrec-full": SASREC_FULL,
           "llm-pilot": LLM_PILOT, "llm": LLM, "every-user": EVERY_USER}  # fmt: skip


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


# Fields of the comparison grid that configs stored before lab/experiments.py still carry.
RETIRED = ("compare_plans", "item_inputs", "seeds", "budgets")


def config_from_dict(values: dict) -> Config:
    """The Config a stored dict records (JSON lists back to tuples; the retired grid fields of
    older records dropped); any other unknown field is a ConfigError."""
    values = {k: v for k, v in values.items() if k not in RETIRED}
    unknown = set(values) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ConfigError(f"Config fields {sorted(unknown)} are unknown to this version.")
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def config_diff(a: Config, b: Config) -> dict[str, tuple]:
    """{field: (a's value, b's value)} for every field where `a` and `b` differ, in field order
    (notebook 03 shows QUICK against FULL with it)."""
    return {
        f.name: (getattr(a, f.name), getattr(b, f.name))
        for f in dataclasses.fields(Config)
        if getattr(a, f.name) != getattr(b, f.name)
    }
