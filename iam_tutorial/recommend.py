"""Top-k recommendations for one user from a trained model; a model folder survives a restart.

    model, results = train(data)              # data = pipeline.prepare(cfg)
    save_model(model, data, "models/iam")     # weights, config, tokenizer, catalog, histories
    model, saved = load_model("models/iam")   # later, in a fresh process
    recommend(model, saved, user_id=1, k=10)  # rank, movie_id, title, score

Users and items are the original ids (MovieLens user and movie ids, or your CSV's); the user's whole
known history is excluded from the ranking, as in evaluation (notebook 03).
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iam_tutorial.config import Config, ConfigError, config_from_dict
from iam_tutorial.device import resolve_device
from iam_tutorial.family import build_model
from iam_tutorial.plans import get_plan
from iam_tutorial.serialize import Serializer
from iam_tutorial.tokenizer import load_tokenizer

SAVED_FILES = ("model.pt", "config.json", "catalog.json", "histories.json")
MOVIELENS_SOURCES = ("official ratings.dat", "SASRec benchmark")  # Sequences.source prefixes


class RecommendError(ValueError):
    """A bad request (unknown user, bad k) or a folder without a usable saved model."""


@dataclass
class SavedData:
    """What `recommend` needs besides the model: a `Prepared` reduced to its catalog and users."""

    cfg: Config  # the model's config (the serializer's budget, the plan)
    serializer: Serializer
    tokenizer: object | None  # item-text tokenizer; None for ID items (SASRec)
    movie_ids: np.ndarray  # catalog index -> original item id (index 0 unused)
    titles: list[str]  # catalog index -> title ('' for index 0, and where none is known)
    texts: list[str] | None  # catalog index -> item text (text items), which the tokens encode
    histories: dict[int, list[int]]  # original user id -> whole history (catalog indices)
    source: str = ""  # where the sequences came from (LeaveOneOut.source)


def saved_data(data, movies: pd.DataFrame | None = None) -> SavedData:
    """A `Prepared`'s catalog and users. Titles: text items carry their own; ID items take them
    from `movies` (default: MovieLens's movies.dat when the sequences are MovieLens)."""
    split = data.split
    texts = item_texts_of(data.serializer, data.tokenizer)
    if texts is not None:
        titles = [t.rsplit(" | ", 1)[0] for t in texts]  # tokenizer.item_text: "title | genres"
    else:
        titles = id_titles(split.movie_ids, split.source, movies)
    histories = {
        u: t + [v, s]
        for u, t, v, s in zip(split.users, split.train, split.valid, split.test, strict=True)
    }
    return SavedData(
        data.cfg,
        data.serializer,
        data.tokenizer,
        split.movie_ids,
        titles,
        texts,
        histories,
        split.source,
    )


def item_texts_of(serializer: Serializer, tokenizer) -> list[str] | None:
    """Each catalog item's text, decoded from its tokens (None for ID items); checked to encode
    back to the very same tokens, so a saved model rebuilds its serializer exactly."""
    if tokenizer is None:
        return None
    texts = [""] + [
        tokenizer.decode(words, clean_up_tokenization_spaces=False)
        for words in serializer.item_words()[1:]
    ]
    again = Serializer.from_tokenizer(tokenizer, texts, serializer.max_tokens)
    if again.item_tokens != serializer.item_tokens:
        raise RecommendError("Item texts do not round-trip through the tokenizer; cannot save.")
    return texts


def id_titles(movie_ids: np.ndarray, source: str, movies: pd.DataFrame | None) -> list[str]:
    """Titles of ID items from `movies` (indexed by id, with a `title` column)."""
    if movies is None:
        if not source.startswith(MOVIELENS_SOURCES):
            return [""] * len(movie_ids)  # your own ID-only data: no titles known (documented)
        from iam_tutorial.data.movielens import load_movies

        movies = load_movies()
    titles = movies["title"].reindex(movie_ids[1:])
    if titles.isna().any():
        missing = movie_ids[1:][titles.isna().to_numpy()][:5].tolist()
        raise RecommendError(f"movies lacks catalog items {missing}...; pass the right movies.")
    return [""] + titles.astype(str).tolist()


# --- recommend ------------------------------------------------------------------------------


def check_request(data: SavedData, user_id, k) -> list[int]:
    """The user's history, or a one-line RecommendError for an unknown user or a bad k."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise RecommendError(f"k={k!r}: ask for at least one item (an int >= 1).")
    if user_id not in data.histories:
        users = sorted(data.histories)
        raise RecommendError(
            f"Unknown user id {user_id!r}: this model knows {len(users):,} users "
            f"(original ids {users[0]}..{users[-1]})."
        )
    history = data.histories[user_id]
    unseen = len(data.movie_ids) - 1 - len(set(history))
    if k > unseen:
        raise RecommendError(
            f"k={k}, but user {user_id} has only {unseen:,} unseen items of "
            f"{len(data.movie_ids) - 1:,}."
        )
    return history


@torch.no_grad()
def recommend(model, data, user_id: int, k: int = 10, movies=None) -> pd.DataFrame:
    """The `k` items the model scores highest for what `user_id` does next: a DataFrame of rank,
    movie_id, title and score, best first.

    The input is the user's whole known history (train, validation and test items). As in
    evaluation, the model reads only its most recent `max_items` items, and of those only the
    most recent whole items that fit `max_tokens` (BOS included); older items still count as
    seen, and no seen item is ever recommended. `data` is a `SavedData` (from `load_model`) or a
    `Prepared` (converted with `saved_data(data, movies)`; convert once when asking for many users).
    """
    data = data if isinstance(data, SavedData) else saved_data(data, movies)
    history = check_request(data, user_id, k)
    device = next(model.parameters()).device
    batch = data.serializer.collate([history[-data.cfg.max_items :]])
    was_training = model.training
    model.eval()
    scores = model.score(batch.to(device))[0].float().cpu()
    model.train(was_training)
    scores[0] = -torch.inf  # padding is no item
    scores[torch.tensor(history)] = -torch.inf
    top = torch.sort(scores, descending=True, stable=True).indices[:k]  # ties: lower index first
    return pd.DataFrame(
        {
            "rank": np.arange(1, k + 1),
            "movie_id": data.movie_ids[top.numpy()].astype(int),
            "title": [data.titles[i] for i in top.tolist()],
            "score": scores[top].numpy(),
        }
    )


# --- save and load --------------------------------------------------------------------------


def save_model(model, data, folder: str | Path, movies=None) -> Path:
    """Write what `load_model` needs into `folder`: weights (model.pt), config.json, the tokenizer
    (text items), the catalog (item ids, titles, texts) and every user's history (original ids)."""
    data = data if isinstance(data, SavedData) else saved_data(data, movies)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / "model.pt")
    write_json(folder / "config.json", dataclasses.asdict(data.cfg))
    if data.tokenizer is not None:
        data.tokenizer.save_pretrained(str(folder / "tokenizer"))
    ids = data.movie_ids.tolist()
    write_json(
        folder / "catalog.json",
        {"movie_ids": ids, "titles": data.titles, "texts": data.texts, "source": data.source},
    )
    users = sorted(data.histories)
    write_json(
        folder / "histories.json",
        {"users": users, "histories": [[ids[i] for i in data.histories[u]] for u in users]},
    )
    return folder


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def load_model(folder: str | Path, device: str = "auto"):
    """(model in eval mode on `device`, SavedData) from a folder written by `save_model`."""
    folder = Path(folder)
    missing = [name for name in SAVED_FILES if not (folder / name).exists()]
    if missing:
        raise RecommendError(
            f"No saved model in {folder} ({', '.join(missing)} missing); write one with "
            f"iam_tutorial.recommend.save_model(model, data, folder)."
        )
    try:  # a field this version lacks is an error; older records' grid fields are dropped
        cfg = config_from_dict(read_json(folder / "config.json"))
    except ConfigError as e:
        raise RecommendError(f"{folder / 'config.json'}: {e}") from None
    catalog = read_json(folder / "catalog.json")
    movie_ids = np.array(catalog["movie_ids"])
    text = get_plan(cfg.plan).text
    tokenizer = load_tokenizer(folder / "tokenizer") if text else None
    serializer = (
        Serializer.from_tokenizer(tokenizer, catalog["texts"], cfg.max_tokens)
        if text
        else Serializer.for_item_ids(len(movie_ids) - 1, cfg.max_tokens)
    )
    index = {int(m): i for i, m in enumerate(movie_ids)}
    saved = read_json(folder / "histories.json")
    histories = {
        int(u): [index[m] for m in h]
        for u, h in zip(saved["users"], saved["histories"], strict=True)
    }
    data = SavedData(
        cfg,
        serializer,
        tokenizer,
        movie_ids,
        catalog["titles"],
        catalog["texts"],
        histories,
        catalog.get("source", ""),
    )
    return load_weights(folder, data, resolve_device(device)), data


def load_weights(folder: Path, data: SavedData, device: torch.device):
    """The model `data` describes, with the saved weights, in eval mode on `device`."""

    model = build_model(data.cfg, data.serializer)
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise RecommendError(
            f"{folder / 'model.pt'} does not fit its config.json ({first})."
        ) from None
    return model.to(device).eval()
