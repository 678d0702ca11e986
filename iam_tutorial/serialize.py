"""User history -> token ids plus a per-token item index, what every attention mask is built from.

`[BOS] Toy Story (1995) | Animation, ... [SEP] Heat (1995) | Action, ... [SEP]` BOS is a global
token (item index GLOBAL), each item's tokens carry the item's position in the history (0, 1, ...),
and PAD belongs to no item (PADDING). The hidden state at an item's SEP predicts the next item.
Padding is on the right, so positions of real tokens never depend on the batch.
"""

from dataclasses import dataclass

import torch

from iam_tutorial.config import ConfigError

GLOBAL, PADDING = -1, -2  # item index of the BOS token and of PAD tokens
IGNORE = -100  # target of positions that predict nothing (cross_entropy's ignore_index)
PADDING_SIDE = "right"


@dataclass(frozen=True)
class Serialized:
    tokens: list[int]
    item_index: list[int]  # GLOBAL for BOS, then 0..len(items)-1
    sep_positions: list[int]  # where each kept item ends (its SEP, or its only token)
    items: list[int]  # the kept (most recent) history items
    n_dropped: int  # older items left out to respect the token budget


@dataclass
class Batch:
    """Right-padded tensors. Shapes: tokens, item_index, targets, items (batch token); readout
    (batch)."""

    tokens: torch.Tensor
    item_index: torch.Tensor  # position of each token's item in the history (GLOBAL, PADDING)
    targets: torch.Tensor  # next item at each SEP position, IGNORE elsewhere
    readout: torch.Tensor  # position of the last item's SEP: where the next item is scored
    items: torch.Tensor  # catalog index of each token's item (0 for BOS and PAD)

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in self._fields()))

    def _fields(self):
        return self.tokens, self.item_index, self.targets, self.readout, self.items

    def __getitem__(self, rows) -> "Batch":
        """Rows `rows` (a slice, list or index tensor), with columns trimmed to the longest real
        sequence among them."""
        if isinstance(rows, int):
            rows = [rows]
        width = int((self.item_index[rows] != PADDING).sum(1).max())
        return Batch(
            self.tokens[rows, :width],
            self.item_index[rows, :width],
            self.targets[rows, :width],
            self.readout[rows],
            self.items[rows, :width],
        )

    def __len__(self) -> int:
        return len(self.tokens)


class Serializer:
    """Turns histories of catalog indices into token sequences under a token budget.

    `item_tokens[i]` are the tokens of catalog item i, ending with its SEP (text items) or being
    a single ID token (SASRec). Build with `from_tokenizer` or `for_item_ids`.
    """

    def __init__(self, item_tokens: list[list[int]], bos_id: int, pad_id: int, max_tokens: int):
        self.item_tokens, self.bos_id, self.pad_id = item_tokens, bos_id, pad_id
        self.sep_id: int | None = None  # the shared end-of-item token (text items only)
        self.max_tokens = max_tokens
        self.vocab_size = max(max(t) for t in item_tokens if t) + 1
        self.vocab_size = max(self.vocab_size, bos_id + 1, pad_id + 1)

    @classmethod
    def from_tokenizer(cls, tokenizer, texts: list[str], max_tokens: int) -> "Serializer":
        """Text items: `texts[i]` is the text of catalog item i (index 0, padding, may be '')."""
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        item_tokens = [
            t + [tokenizer.sep_token_id] if text else [] for t, text in zip(ids, texts, strict=True)
        ]
        serializer = cls(item_tokens, tokenizer.bos_token_id, tokenizer.pad_token_id, max_tokens)
        serializer.vocab_size, serializer.sep_id = len(tokenizer), tokenizer.sep_token_id
        return serializer

    @classmethod
    def for_item_ids(cls, n_items: int, max_tokens: int) -> "Serializer":
        """ID items (SASRec): item i is the single token 2 + i; 0 is BOS and 1 is PAD."""
        item_tokens = [[]] + [[2 + i] for i in range(1, n_items + 1)]  # item 0 is padding
        return cls(item_tokens, bos_id=0, pad_id=1, max_tokens=max_tokens)

    def item_words(self) -> list[list[int]]:
        """Each catalog item's tokens without the shared SEP (the model's item-token table)."""
        return [[t for t in toks if t != self.sep_id] for toks in self.item_tokens]

    def serialize(self, history: list[int]) -> Serialized:
        """Keep the most recent whole items that fit the budget (BOS included); never cut an
        item."""
        if not history:
            raise ValueError("Cannot serialize an empty history: a user needs at least one item.")
        budget, kept = self.max_tokens - 1, []
        for item in reversed(history):
            n = len(self.item_tokens[item])
            if n == 0:
                raise ValueError(f"Item {item} has no tokens (catalog index 0 is padding).")
            if n > budget:
                if not kept:
                    raise ConfigError(
                        f"The most recent item ({n} tokens) does not fit max_tokens="
                        f"{self.max_tokens}; raise max_tokens."
                    )
                break
            kept.append(item)
            budget -= n
        kept.reverse()
        tokens, item_index, seps = [self.bos_id], [GLOBAL], []
        for position, item in enumerate(kept):
            tokens += self.item_tokens[item]
            item_index += [position] * len(self.item_tokens[item])
            seps.append(len(tokens) - 1)
        return Serialized(tokens, item_index, seps, kept, len(history) - len(kept))

    def collate(
        self, histories: list[list[int]], next_items: list[list[int]] | None = None
    ) -> Batch:
        """Serialize and right-pad a list of histories.

        `next_items[b][j]` is the target of history item j of row b (training: the following item);
        targets of items dropped by the budget are dropped with them.
        """
        if not histories:
            raise ValueError("collate needs at least one history, got an empty list.")
        if next_items is not None:
            lengths = [(len(h), len(n)) for h, n in zip(histories, next_items, strict=True)]
            if any(h != n for h, n in lengths):
                raise ValueError(
                    f"next_items must give one target per history item, got {lengths}."
                )
        rows = [self.serialize(h) for h in histories]
        width = max(len(r.tokens) for r in rows)
        shape = (len(rows), width)
        tokens = torch.full(shape, self.pad_id)
        item_index = torch.full(shape, PADDING)
        targets = torch.full(shape, IGNORE)
        items = torch.zeros(shape, dtype=torch.long)
        for b, r in enumerate(rows):
            tokens[b, : len(r.tokens)] = torch.tensor(r.tokens)
            item_index[b, : len(r.tokens)] = torch.tensor(r.item_index)
            items[b, 1 : len(r.tokens)] = torch.tensor(r.items)[torch.tensor(r.item_index[1:])]
            if next_items is not None:
                kept_targets = next_items[b][r.n_dropped :]
                targets[b, r.sep_positions] = torch.tensor(kept_targets)
        readout = torch.tensor([r.sep_positions[-1] for r in rows])
        return Batch(tokens, item_index, targets, readout, items)


# --- tables for the notebooks -------------------------------------------------------------------


def token_table(serialized: Serialized, tokenizer):
    """One row per token: position, token_id, readable token, item_index and role (BOS/item/SEP).

    Byte-level BPE writes a leading space as 'Ġ'; it is shown as '·' so word starts stay visible.
    Returns a pandas DataFrame (pandas is imported here: only the notebooks need these tables).
    """
    import pandas as pd

    role = {tokenizer.bos_token_id: "BOS", tokenizer.sep_token_id: "SEP"}
    tokens = tokenizer.convert_ids_to_tokens(serialized.tokens)
    return pd.DataFrame(
        {
            "position": range(len(serialized.tokens)),
            "token_id": serialized.tokens,
            "token": [t.replace("Ġ", "·") for t in tokens],
            "item_index": serialized.item_index,
            "role": [role.get(t, "item") for t in serialized.tokens],
        }
    )


def token_lengths(serializer: Serializer, histories: list[list[int]]):
    """Per history, a DataFrame row: n_items kept, n_tokens (BOS included), n_dropped by the budget.

    `n_items + n_dropped` is the history's length; `(n_tokens - 1) / n_items` its tokens per item.
    """
    import pandas as pd

    rows = [serializer.serialize(history) for history in histories]
    return pd.DataFrame(
        {
            "n_items": [len(r.items) for r in rows],
            "n_tokens": [len(r.tokens) for r in rows],
            "n_dropped": [r.n_dropped for r in rows],
        }
    )
