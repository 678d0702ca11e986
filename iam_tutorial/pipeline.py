"""One pipeline from data to batches: split once, serialize, and sample training epochs.

`prepare(cfg)` loads and splits the data (or takes a split already loaded), trains the tokenizer on
the item texts and keeps it, collates the evaluation inputs once, and hands out training epochs in
which every training transition is trained exactly once (notebook 03 explains the sampler).
"""

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from iam_tutorial.config import Config, ConfigError
from iam_tutorial.data.movielens import LeaveOneOut, leave_one_out, load_movies, load_sequences
from iam_tutorial.device import bf16_decision, resolve_device
from iam_tutorial.family import model_config, pretrained_tokenizer
from iam_tutorial.plans import get_plan
from iam_tutorial.serialize import Batch, Serializer
from iam_tutorial.tokenizer import item_texts, train_tokenizer


def load_split(cfg: Config) -> LeaveOneOut:
    """The leave-one-out split of the users `cfg` names (load once, pass it on)."""
    return leave_one_out(load_sequences(cfg.n_users))


def sasrec_config(cfg: Config) -> Config:
    """SASRec-ID: one token per item (positions = items + BOS), item table tied to embeddings."""
    return dataclasses.replace(
        cfg, plan="sasrec", item_head="tied", item_input="id", max_tokens=cfg.max_items + 1
    )


def epoch_windows(history: list[int], k: int, generator: torch.Generator) -> list[list[int]]:
    """Cut one training history into windows of at most k + 1 consecutive items so that every
    transition (an item predicted from the items before it) lies in exactly one window.

    The cuts sit every k transitions from a random offset drawn afresh each epoch, so a
    transition's context varies between epochs and no part of the history (its most recent end
    included) is trained more or less often than another. Shapes: history (item) -> windows.
    """
    n = len(history) - 1  # transitions: history[j + 1] predicted from history[: j + 1]
    if n < 1:
        return []
    shift = int(torch.randint(k, (1,), generator=generator))
    first = (k - shift) % k or k
    cuts = [0, *range(first, n, k), n]
    return [history[a : b + 1] for a, b in zip(cuts, cuts[1:], strict=False)]


def fit_budget(window: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Split a window whose serialization (BOS + its items' tokens) exceeds `budget` into pieces
    that fit, each new piece starting at the previous piece's last item, so no transition is
    lost."""
    pieces, start, used = [], 0, 1 + lengths[window[0]]
    for j in range(1, len(window)):
        if used + lengths[window[j]] > budget:
            if j - start < 2:
                raise ConfigError(
                    f"Two consecutive items ({used + lengths[window[j]]} tokens with BOS) exceed "
                    f"max_tokens={budget}; raise max_tokens."
                )
            pieces.append(window[start:j])
            start, used = j - 1, 1 + lengths[window[j - 1]]
        used += lengths[window[j]]
    return [*pieces, window[start:]]


@dataclass
class Prepared:
    """Everything a run needs: split, tokenizer, serializer, and the evaluation inputs collated
    once."""

    cfg: Config  # the run's config: derived settings applied (`run_config`)
    split: LeaveOneOut
    serializer: Serializer
    tokenizer: object | None  # the item-text tokenizer (None for ID items)
    valid: Batch  # the last max_items items before the validation item
    test: Batch  # the last max_items items before the test item (validation item included)
    seen: dict[str, list[list[int]]]  # full input history per split, excluded from the ranking
    n_dropped: int  # evaluation-input items left out by the token budget
    bf16_reason: str = ""  # why the run autocasts to bf16 or not (device.bf16_decision)

    @functools.cached_property
    def item_lengths(self) -> list[int]:
        """Tokens per catalog item (index 0: padding), computed once."""
        return [len(t) for t in self.serializer.item_tokens]

    def training_histories(self) -> list[list[int]]:
        """The training items of users 1..`train_users` (all if None), each cut to the most recent
        `train_horizon` + 1 if set."""
        h = self.cfg.train_horizon
        return [t[-(h + 1) :] if h else t for t in self.split.train[: self.cfg.train_users]]

    def transitions(self) -> int:
        """Training transitions per epoch (every one is trained once an epoch)."""
        return sum(max(0, len(t) - 1) for t in self.training_histories())

    def windows(self, generator: torch.Generator) -> list[list[int]]:
        """One epoch's windows: every transition in exactly one, each within the token budget."""
        lengths, k, budget = self.item_lengths, self.cfg.max_items, self.cfg.max_tokens
        return [
            piece
            for t in self.training_histories()
            for w in epoch_windows(t, k, generator)
            for piece in fit_budget(w, lengths, budget)
        ]

    def steps_per_epoch(self) -> int:
        """Optimizer steps of one epoch (the window count varies a little between epochs; this is
        the schedule's estimate, from a fixed draw)."""
        return math.ceil(len(self.windows(torch.Generator().manual_seed(0))) / self.cfg.batch_size)

    def epoch(self, generator: torch.Generator, pool: int = 50) -> Iterator[Batch]:
        """One epoch of training batches: every transition once, in shuffled batches of windows of
        similar length (sorted within pools of `pool` batches, so little compute goes to PAD)."""
        windows, size, lengths = self.windows(generator), self.cfg.batch_size, self.item_lengths
        n_tokens = [sum(lengths[i] for i in w[:-1]) for w in windows]
        order = torch.randperm(len(windows), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), pool * size):
            chunk = sorted(order[start : start + pool * size], key=n_tokens.__getitem__)
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            chunk = [windows[i] for i in batches[b]]
            yield self.serializer.collate([w[:-1] for w in chunk], [w[1:] for w in chunk])


def build_serializer(cfg: Config, split: LeaveOneOut, movies=None):
    """(serializer, tokenizer) for the plan's item form: ID tokens (SASRec) or item text, in a BPE
    trained on the item texts or, with `cfg.backbone`, the backbone's own (family.py)."""
    if not get_plan(cfg.plan).text:
        return Serializer.for_item_ids(split.n_items, cfg.max_tokens), None
    texts = item_texts(load_movies() if movies is None else movies)
    tokenizer = pretrained_tokenizer(cfg)  # a pretrained backbone reads text with its own BPE
    if tokenizer is None:
        tokenizer = train_tokenizer([texts[m] for m in sorted(texts)], cfg.vocab_size)
    catalog = [""] + [texts[int(m)] for m in split.movie_ids[1:]]
    return Serializer.from_tokenizer(tokenizer, catalog, cfg.max_tokens), tokenizer


def run_config(cfg: Config) -> Config:
    """The config a run uses, its derived settings applied once: SASRec's one ID token per item or
    a pretrained backbone's shape (family.model_config); `with_precision` then decides bf16.
    `Prepared.cfg` is the result, and every result records it."""
    if not get_plan(cfg.plan).text:
        cfg = sasrec_config(cfg)
    return model_config(cfg)  # a pretrained backbone's shape (transformers loads only then)


def with_precision(cfg: Config) -> tuple[Config, str]:
    """`cfg` with bf16 on or off as `device.bf16_decision` rules, and the reason in words."""
    bf16, why = bf16_decision(cfg, resolve_device(cfg.device))
    return dataclasses.replace(cfg, bf16=bf16), why


def prepare(cfg: Config, split: LeaveOneOut | None = None, movies=None) -> Prepared:
    """Load and split the data (unless given), apply the run's derived settings (`run_config`),
    build the serializer, collate the evaluation inputs."""
    split = split or load_split(cfg)
    cfg, bf16_reason = with_precision(run_config(cfg))
    serializer, tokenizer = build_serializer(cfg, split, movies)
    inputs = {s: split.histories(s)[0] for s in ("valid", "test")}
    inputs["valid"] = inputs["valid"][: cfg.train_users]  # the epoch is chosen on trained users
    windows = {s: [h[-cfg.max_items :] for h in hs] for s, hs in inputs.items()}
    batches = {s: serializer.collate(ws) for s, ws in windows.items()}
    kept = sum(int(b.item_index.max(1).values.sum()) + len(b) for b in batches.values())
    dropped = sum(len(w) for ws in windows.values() for w in ws) - kept
    return Prepared(
        cfg,
        split,
        serializer,
        tokenizer,
        batches["valid"],
        batches["test"],
        inputs,
        dropped,
        bf16_reason,
    )
