"""recommend(): top-k unseen items for a user, the evaluation's window, and a saved model that
gives the same answers after a reload with no data folder at all."""

import pandas as pd
import pytest
import torch

from iam_tutorial.config import get_config
from iam_tutorial.data.movielens import leave_one_out, load_movies, load_sequences
from iam_tutorial.pipeline import prepare
from iam_tutorial.recommend import (
    RecommendError,
    SavedData,
    load_model,
    recommend,
    save_model,
    saved_data,
)
from iam_tutorial.train import train

TINY = dict(n_users=12, n_layer=2, n_head=2, n_embd=16, max_items=6, max_tokens=96, vocab_size=300,
            batch_size=4, max_epochs=2, eval_batch_size=5, max_steps=6)  # fmt: skip
PLANS = ("iam", "sasrec")  # text items and ID items


@pytest.fixture(scope="module")
def trained(synthetic_root):
    """plan -> (model, Prepared, movies): a few steps of training on the synthetic users."""
    split = leave_one_out(load_sequences(TINY["n_users"], synthetic_root))
    movies = load_movies(synthetic_root)
    out = {}
    for plan in PLANS:
        cfg = get_config("quick", plan=plan, **TINY)
        data = prepare(cfg, split, movies)
        out[plan] = (train(data, progress=False)[0], data, movies)
    return out


def history_ids(data, user: int) -> list[int]:
    """The user's whole history as original movie ids."""
    i = data.split.users.index(user)
    h = data.split.train[i] + [data.split.valid[i], data.split.test[i]]
    return [int(data.split.movie_ids[j]) for j in h]


@pytest.mark.parametrize("plan", PLANS)
def test_top_k_unseen_items_best_first(trained, plan):
    model, data, movies = trained[plan]
    top = recommend(model, saved_data(data, movies), user_id=3, k=5)
    assert list(top.columns) == ["rank", "movie_id", "title", "score"]
    assert top["rank"].tolist() == [1, 2, 3, 4, 5] and top["score"].is_monotonic_decreasing
    assert not set(top["movie_id"]) & set(history_ids(data, 3))  # seen items excluded
    assert top["title"].tolist() == movies.loc[top["movie_id"], "title"].tolist()


@pytest.mark.parametrize("plan", PLANS)
def test_scores_are_the_evaluation_scores(trained, plan):
    """Without the test item, a user's scores are exactly those the test split is ranked by."""
    model, data, movies = trained[plan]
    saved = saved_data(data, movies)
    row = data.split.users.index(4)
    saved.histories = {4: saved.histories[4][:-1]}  # train + validation: the test input
    top = recommend(model, saved, user_id=4, k=5)
    model.eval()
    with torch.no_grad():
        scores = model.score(data.test[[row]])[0]
    index = {int(m): i for i, m in enumerate(data.split.movie_ids)}
    expected = [float(scores[index[m]]) for m in top["movie_id"]]
    assert top["score"].tolist() == pytest.approx(expected, abs=1e-6)


def test_only_the_last_max_items_are_read(trained):
    """Items older than the window change no score; they are still never recommended."""
    model, data, movies = trained["iam"]
    saved = saved_data(data, movies)
    user = max(saved.histories, key=lambda u: len(saved.histories[u]))
    assert len(saved.histories[user]) > data.cfg.max_items  # the case under test
    unseen = lambda: data.split.n_items - len(set(saved.histories[user]))
    full = recommend(model, saved, user, k=unseen())  # every unseen item, scored
    saved.histories = {user: saved.histories[user][-data.cfg.max_items :]}
    recent = recommend(model, saved, user, k=unseen())
    both = full.merge(recent, on="movie_id", suffixes=("_full", "_recent"))
    assert len(both) > 0 and both["score_full"].tolist() == both["score_recent"].tolist()


@pytest.mark.parametrize("plan", PLANS)
def test_saved_model_answers_the_same_after_reload(trained, plan, tmp_path, monkeypatch):
    model, data, movies = trained[plan]
    before = {u: recommend(model, saved_data(data, movies), u, k=5) for u in (1, 7, 12)}
    save_model(model, data, tmp_path / "model", movies)
    monkeypatch.setenv("IAM_DATA_DIR", str(tmp_path / "nothing here"))  # a fresh machine
    loaded, saved = load_model(tmp_path / "model", device="cpu")
    assert isinstance(saved, SavedData) and (saved.tokenizer is None) == (plan == "sasrec")
    assert not loaded.training and sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "catalog.json",
        "config.json",
        "histories.json",
        "model.pt",
        *(["tokenizer"] if plan == "iam" else []),
    ]
    for name, value in model.state_dict().items():
        assert torch.equal(value.cpu(), loaded.state_dict()[name])
    for u, expected in before.items():
        pd.testing.assert_frame_equal(recommend(loaded, saved, u, k=5), expected)


def test_titles_default_to_the_data_folder(trained, synthetic_root, monkeypatch):
    """A Prepared without `movies`: ID items take MovieLens titles from the data folder."""
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    model, data, movies = trained["sasrec"]
    top = recommend(model, data, user_id=2, k=3)
    assert top["title"].tolist() == movies.loc[top["movie_id"], "title"].tolist()


@pytest.mark.parametrize(
    ("user", "k", "says"),
    [(99999, 3, r"Unknown user id 99999: this model knows 12 users \(original ids 1\.\.12\)"),
     (1, 0, r"k=0: ask for at least one item"), (1, 2.5, r"k=2.5: ask for at least one item"),
     (1, 10_000, r"k=10000, but user 1 has only \d+ unseen items")],
)  # fmt: skip
def test_bad_requests_are_one_line_errors(trained, user, k, says):
    model, data, movies = trained["iam"]
    with pytest.raises(RecommendError, match=says) as error:
        recommend(model, saved_data(data, movies), user, k)
    assert "\n" not in str(error.value)


def test_folder_without_a_model(tmp_path):
    with pytest.raises(RecommendError, match=r"No saved model in .* \(model.pt, config.json"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_their_config(trained, tmp_path):
    model, data, movies = trained["iam"]
    save_model(model, data, tmp_path, movies)
    state = torch.load(tmp_path / "model.pt")
    state["transformer.wte.weight"] = state["transformer.wte.weight"][:-1]
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(RecommendError, match="does not fit its config.json") as error:
        load_model(tmp_path, device="cpu")
    assert "\n" not in str(error.value)
