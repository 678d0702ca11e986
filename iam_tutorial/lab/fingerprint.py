"""A cell's fingerprint: what the cell was computed from and how the code behaves, not its text.

A stored cell is reused only while both parts still match:
- `digest`, exact: a hash of the run's config, of the data it reads (every user's items, the
  serialized catalog, the evaluation inputs, one epoch's windows) and of the backbone's weights;
- `behaviour`, to a tolerance: the numbers the code gives on a tiny fixed problem of the cell's
  family and plan (a small model of the same kind, seeded: its loss, gradient norm, the losses of
  three AdamW steps under the run's schedule, and catalog scores of a few users). Code moved,
  renamed or re-documented gives the same numbers; a change to the numerics does not. Another
  CPU or thread count moves them by float32 rounding only, far inside the tolerance.
tests/test_fingerprint.py shows both directions.
"""

import copy
import dataclasses
import functools
import hashlib
import itertools
import json

import torch

from iam_tutorial.config import Config
from iam_tutorial.family import build_model, family
from iam_tutorial.pipeline import Prepared, load_split, prepare
from iam_tutorial.train import make_optimizer, make_schedule, model_scorer, train_step

RTOL = 1e-3  # relative tolerance of each behaviour number
USERS = 6  # users whose scores are part of the behaviour
ITEMS = 12  # catalog items scored for each of them


def split_digest(split) -> str:
    """An exact hash of every user's items and the catalog."""
    items = [split.train, split.valid, split.test, split.movie_ids.tolist()]
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def data_digest(data: Prepared) -> str:
    """An exact hash of everything the run reads: every user's items, the serialized catalog, the
    evaluation inputs, one epoch's windows, the backbone's weights."""
    h = hashlib.sha256(split_digest(data.split).encode())
    h.update(json.dumps(data.serializer.item_tokens).encode())
    for batch in (data.valid, data.test):
        for tensor in batch._fields():
            h.update(tensor.numpy().tobytes())
    h.update(json.dumps(data.windows(torch.Generator().manual_seed(0))).encode())
    if family(data.cfg.backbone) != "scratch":
        from iam_tutorial.backbones import resolve

        h.update(str(resolve(data.cfg.backbone).sha256).encode())
    return h.hexdigest()


def tiny_model(cfg: Config, data: Prepared):
    """A small seeded model of the cell's kind: from scratch, the run's own model (already
    small); on a decoder backbone, ItemLLM on a narrow copy of the backbone's architecture, every
    layer kept so the plan's layers are the run's."""
    torch.manual_seed(0)
    if family(cfg.backbone) != "decoder":
        return build_model(cfg, data.serializer)
    from transformers import AutoModelForCausalLM

    from iam_tutorial.backbones import hf_config
    from iam_tutorial.hf_adapter import ATTENTION_NAME
    from iam_tutorial.llm import build

    hf = copy.deepcopy(hf_config(cfg.backbone))
    hf.hidden_size, hf.head_dim = 4 * hf.num_attention_heads, 4
    hf.intermediate_size = 2 * hf.hidden_size
    lm = AutoModelForCausalLM.from_config(hf, attn_implementation=ATTENTION_NAME)
    return build(cfg, data.serializer, lm)


def behaviour(data: Prepared) -> list[float]:
    """The numbers of the tiny fixed problem (float32, on the CPU, no autocast)."""
    cfg = dataclasses.replace(data.cfg, bf16=False, device="cpu", seed=0)
    data = dataclasses.replace(data, cfg=cfg)
    model = tiny_model(cfg, data)
    batch = next(itertools.islice(data.epoch(torch.Generator().manual_seed(0)), 1))
    loss = model.loss(batch)
    loss.backward()
    grad_norm = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    optimizer = make_optimizer(model, cfg)
    scheduler = make_schedule(optimizer, data)
    losses = [train_step(model, model.loss, optimizer, scheduler, batch, cfg) for _ in range(3)]
    model.eval()
    scores = model_scorer(model, data, "valid", torch.device("cpu"))(torch.arange(USERS))
    numbers = [loss.item(), grad_norm.norm().item(), *losses, *scores[:, :ITEMS].flatten()]
    return [float(x) for x in numbers]


@functools.cache
def _probe(cfg: Config) -> tuple[str, tuple[float, ...]]:
    """(data digest, behaviour) of a config whose seed is 0: the same for every seed."""
    if cfg.plan == "popularity":  # no model: the counts and ranks follow from the split alone
        return split_digest(load_split(cfg)), ()
    data = prepare(cfg)
    return data_digest(data), tuple(behaviour(data))


def fingerprint(cfg: Config) -> dict:
    """{"digest": hash of the config and the data, "behaviour": [numbers]} of a cell (the data
    are read and the tiny problem solved once per process for all seeds of a config)."""
    data, numbers = _probe(dataclasses.replace(cfg, seed=0))
    config = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    text = hashlib.sha256((config + data).encode()).hexdigest()[:16]
    return {"digest": text, "behaviour": list(numbers)}


def matches(stored: dict | None, current: dict) -> bool:
    """Whether a stored fingerprint is the current one: the same digest, and every behaviour
    number within RTOL of its current value (near zero: of a thousandth of the largest)."""
    if not isinstance(stored, dict) or stored.get("digest") != current["digest"]:
        return False
    a, b = torch.tensor(stored.get("behaviour", [])), torch.tensor(current["behaviour"])
    if a.shape != b.shape:
        return False
    floor = 1e-3 * float(b.abs().max()) if len(b) else 0.0  # for numbers near zero
    return bool(((a - b).abs() <= RTOL * (b.abs() + floor)).all())
