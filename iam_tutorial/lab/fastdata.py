"""Pre-tokenized training epochs: each history tokenized once, each batch gathered by indexing.

`Prepared.epoch` serializes every window in Python, about 4 s of CPU per FULL epoch and per cell.
Here every user's training items are tokenized once into flat tensors (users one after another),
so a training window is one contiguous slice of them and a batch is a few gathers, on the GPU when
the streams are there. `FastPrepared.epoch` draws the same windows with the same generator calls
and yields the same batches as `Prepared.epoch` (tests/test_fastdata.py checks it tensor by tensor).
"""

# Axes: batch, token (of a batch row), stream (every training token of every user), position
# (every training item of every user, one after another)

import dataclasses
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from iam_tutorial.config import Config
from iam_tutorial.pipeline import Prepared, fit_budget, run_config, with_precision
from iam_tutorial.plans import get_plan
from iam_tutorial.serialize import GLOBAL, IGNORE, PADDING, Batch

# The fields that decide the streams: a cell may reuse them only if these match.
DATA_FIELDS = ("n_users", "max_items", "max_tokens", "vocab_size", "train_horizon", "backbone")


@dataclass
class Streams:
    """Every user's training history and its tokens, users one after another.

    Shapes: tokens, position, last (stream); items (position + 1, a 0 sentinel last);
    token_start (position + 1). Position g's tokens are tokens[token_start[g] : token_start[g + 1]].
    """

    tokens: torch.Tensor  # token ids (int32)
    position: torch.Tensor  # the position of each token's item (int32)
    last: torch.Tensor  # True at an item's last token: its SEP, or its one ID token
    items: torch.Tensor  # catalog item at each position (int64)
    token_start: torch.Tensor  # where each position's tokens begin (int64)
    user_start: list[int]  # user u's positions are user_start[u] : user_start[u + 1]
    home: "Streams | None" = None  # the CPU copy, once moved: windows are drawn in Python

    def to(self, device) -> "Streams":
        names = ("tokens", "position", "last", "items", "token_start")
        moved = {f: getattr(self, f).to(device) for f in names}
        return dataclasses.replace(self, **moved, home=self.home or self)

    @functools.cached_property
    def starts(self) -> list[int]:
        """token_start as a list (read by the window draws, never waiting on a GPU)."""
        return (self.home or self).token_start.tolist()

    @functools.cached_property
    def catalog(self) -> list[int]:
        """items as a list."""
        return (self.home or self).items.tolist()


def build_streams(histories: list[list[int]], item_tokens: list[list[int]]) -> Streams:
    """Tokenize every history at once: the catalog's tokens are gathered per position."""
    catalog_len = torch.tensor([len(t) for t in item_tokens])
    catalog_start = torch.cat([torch.zeros(1, dtype=torch.long), catalog_len.cumsum(0)])
    catalog_tokens = torch.tensor([t for toks in item_tokens for t in toks], dtype=torch.int32)
    items = torch.tensor([i for h in histories for i in h], dtype=torch.long)
    lengths = catalog_len[items]
    token_start = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    position = torch.repeat_interleave(torch.arange(len(items)), lengths)
    offset = torch.arange(int(token_start[-1])) - token_start[position]  # within its item
    return Streams(
        tokens=catalog_tokens[catalog_start[items[position]] + offset],
        position=position.int(),
        last=offset == lengths[position] - 1,
        items=torch.cat([items, torch.zeros(1, dtype=torch.long)]),
        token_start=token_start,
        user_start=[0, *torch.tensor([len(h) for h in histories]).cumsum(0).tolist()],
    )


@dataclass
class FastPrepared(Prepared):
    """A `Prepared` whose training epochs come from pre-tokenized streams (train.train takes it)."""

    streams: Streams | None = None

    @classmethod
    def from_prepared(cls, data: Prepared) -> "FastPrepared":
        fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(Prepared)}
        streams = build_streams(data.training_histories(), data.serializer.item_tokens)
        return cls(**fields, streams=streams)

    def for_config(self, cfg: Config, device=None) -> "FastPrepared":
        """These data under another cell's config (SASRec's ID form applied), on `device`."""
        text = get_plan(cfg.plan).text
        if text != get_plan(self.cfg.plan).text:
            raise ValueError(f"These data hold {'ID' if text else 'text'} items, not {cfg.plan}'s.")
        cfg, why = with_precision(run_config(cfg))
        differ = [f for f in DATA_FIELDS if getattr(cfg, f) != getattr(self.cfg, f)]
        if differ:
            raise ValueError(f"These data were prepared for other {', '.join(differ)}.")
        streams = self.streams.to(device) if device is not None else self.streams
        return dataclasses.replace(self, cfg=cfg, streams=streams, bf16_reason=why)

    def spans(self, generator: torch.Generator) -> list[tuple[int, int]]:
        """One epoch's windows as (first, last) positions: `Prepared.windows`, drawn alike."""
        k, budget = self.cfg.max_items, self.cfg.max_tokens
        starts, ts = self.streams.user_start, self.streams.starts
        out = []
        for u0, u1 in zip(starts, starts[1:], strict=False):
            n = u1 - u0 - 1  # transitions, as in pipeline.epoch_windows
            if n < 1:
                continue
            shift = int(torch.randint(k, (1,), generator=generator))
            first = (k - shift) % k or k
            cuts = [0, *range(first, n, k), n]
            for a, b in zip(cuts, cuts[1:], strict=False):
                if 1 + ts[u0 + b + 1] - ts[u0 + a] <= budget:  # fits: no need to split it
                    out.append((u0 + a, u0 + b))
                else:
                    out += self._split(u0 + a, u0 + b)
        return out

    def _split(self, a: int, b: int) -> list[tuple[int, int]]:
        """pipeline.fit_budget on positions a..b, as spans (each starts at the last one's end)."""
        window = self.streams.catalog[a : b + 1]
        pieces, start = [], a
        for piece in fit_budget(window, self.item_lengths, self.cfg.max_tokens):
            pieces.append((start, start + len(piece) - 1))
            start += len(piece) - 1
        return pieces

    def windows(self, generator: torch.Generator) -> list[list[int]]:
        items = self.streams.catalog
        return [items[a : b + 1] for a, b in self.spans(generator)]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.spans(torch.Generator().manual_seed(0))) / self.cfg.batch_size)

    def batch_plan(self, generator: torch.Generator, pool: int = 50):
        """One epoch as (spans, input tokens per span, each batch's span indices), in the order
        and length buckets of `Prepared.epoch`, drawn with the same generator calls."""
        spans, size, ts = self.spans(generator), self.cfg.batch_size, self.streams.starts
        n_tokens = [ts[b] - ts[a] for a, b in spans]  # input tokens: every item but the last
        order = torch.randperm(len(spans), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), pool * size):
            chunk = sorted(order[start : start + pool * size], key=n_tokens.__getitem__)
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return spans, n_tokens, [batches[b] for b in shuffled]

    def padded_tokens(self, generator: torch.Generator) -> int:
        """Tokens of one epoch's batches, padding and BOS included (what a step's cost follows)."""
        _, n_tokens, batches = self.batch_plan(generator)
        return sum(len(rows) * (1 + max(n_tokens[i] for i in rows)) for rows in batches)

    def epoch(self, generator: torch.Generator, pool: int = 50) -> Iterator[Batch]:
        """`Prepared.epoch`'s batches (same order, same length buckets), from the streams."""
        spans, n_tokens, batches = self.batch_plan(generator, pool)
        for rows in batches:
            yield self.gather([spans[i] for i in rows], [n_tokens[i] for i in rows])

    def gather(self, spans: list[tuple[int, int]], n_tokens: list[int]) -> Batch:
        """The batch `Serializer.collate` makes of these windows (inputs: every item but the last;
        targets: the item after each). Widths come from `n_tokens`, so nothing waits on the GPU."""
        s, device = self.streams, self.streams.tokens.device
        first = torch.tensor([a for a, _ in spans], device=device)
        length = torch.tensor(n_tokens, device=device)
        column = torch.arange(max(n_tokens), device=device)
        real = column < length[:, None]  # (batch token)
        stream = torch.where(real, s.token_start[first][:, None] + column, 0)
        position = s.position[stream].long()
        pad = self.serializer.pad_id
        tokens = torch.where(real, s.tokens[stream].long(), pad)
        item_index = torch.where(real, position - first[:, None], PADDING)
        items = torch.where(real, s.items[position], 0)
        targets = torch.where(real & s.last[stream], s.items[position + 1], IGNORE)

        def lead(x, value):  # the BOS column: a global token that predicts nothing
            return torch.cat([torch.full_like(x[:, :1], value), x], 1)

        bos = self.serializer.bos_id
        return Batch(
            lead(tokens, bos),
            lead(item_index, GLOBAL),
            lead(targets, IGNORE),
            length,
            lead(items, 0),
        )
