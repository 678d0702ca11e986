"""Every Python block of the README runs as printed, in order, in one session (as a reader would
paste them), on the synthetic MovieLens and a CSV log of it. Only the presets' size is shrunk (few
users, two epochs), so that the blocks run in seconds: their code is untouched."""

import dataclasses
import importlib.util
import re

import pytest

from iam_tutorial import config
from iam_tutorial.data.movielens import load_movies, load_ratings
from iam_tutorial.paths import REPO_ROOT


def python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_python_blocks():
    assert len(python_blocks()) >= 3


def test_readme_blocks_run_as_printed(synthetic_root, tmp_path, monkeypatch):
    ratings = load_ratings(synthetic_root, allow_partial=True)
    titles = load_movies(synthetic_root)["title"]
    rows = [f'{r.user},{r.movie},{r.timestamp},"{titles[r.movie]}"' for r in ratings.itertuples()]
    (tmp_path / "log.csv").write_text("user,item,timestamp,text\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IAM_DATA_DIR", str(synthetic_root))
    small = dict(n_users=12, train_users=None, max_epochs=2, min_epochs=1, decay_epochs=2, n_embd=16,
                 vocab_size=300)  # fmt: skip
    for mode, preset in list(config.PRESETS.items()):
        monkeypatch.setitem(config.PRESETS, mode, dataclasses.replace(preset, **small))
    namespace = {}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that failed
            pytest.fail(f"README python block {i + 1} failed: {type(e).__name__}: {e}")
    assert (tmp_path / "models" / "iam" / "model.pt").exists()


def results_page():
    """scripts/results_page.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "results_page", REPO_ROOT / "scripts" / "results_page.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_page_tables_are_the_stored_cells():
    """results/README.md's tables, and the answer the README and notebook 04 lead with, are
    regenerated from the committed cells, never typed: each block between its markers (the LLM
    over budgets, the reference, its convergence, the every-user run...) equals what `lab.report`
    and `lab.decide` make of the results folders."""
    page = results_page()
    for path, new in page.pages().items():
        stored, where = page.blocks(page.read(path)), path.relative_to(REPO_ROOT)
        for name, block in new.items():
            assert name in stored, f"{where} lost its <!-- {name} --> markers"
            assert stored[name] == block, f"{where}'s {name} is stale: run scripts/results_page.py"


def test_readme_first_screen():
    """The README's first screen: what you will learn, the figure, both commands, the notebooks."""
    head = (REPO_ROOT / "README.md").read_text().splitlines()[:60]
    text = "\n".join(head)
    for needed in ("What you will learn", "figures/02_masks_causal_intra_inter.png", "make quick",
                   "make test", "notebooks/05_pretrained.ipynb"):  # fmt: skip
        assert needed in text, f"README's first 60 lines lack {needed!r}"
    assert "(results/README.md)" in (REPO_ROOT / "README.md").read_text(), "no link to the results"
