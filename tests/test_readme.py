"""Every Python block of the README runs as printed, in order, in one session (as a reader would
paste them), on the synthetic MovieLens and a CSV log of it. Only the presets' size is shrunk (few
users, two epochs), so that the blocks run in seconds: their code is untouched."""

import dataclasses
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
    small = dict(n_users=12, max_epochs=2, min_epochs=1, decay_epochs=2, n_embd=16, vocab_size=300)
    for mode, preset in list(config.PRESETS.items()):
        monkeypatch.setitem(config.PRESETS, mode, dataclasses.replace(preset, **small))
    namespace = {}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that failed
            pytest.fail(f"README python block {i + 1} failed: {type(e).__name__}: {e}")
    assert (tmp_path / "models" / "iam" / "model.pt").exists()


def test_readme_llm_table_is_the_stored_cells():
    """The README's top answer is regenerated from results/llm/, never typed: the block between its
    `llm-table` markers equals `budget_markdown` of the committed cells."""
    from iam_tutorial.lab.compare import budget_dir, budget_markdown, load_cells
    from iam_tutorial.lab.experiments import EXPERIMENTS

    llm = EXPERIMENTS["llm"]
    by_budget = {b: load_cells(budget_dir(REPO_ROOT / "results" / "llm", b), required=True)
                 for b in llm.budgets}  # fmt: skip
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- llm-table -->\n(.*?)\n<!-- /llm-table -->", text, flags=re.S)
    assert block, "README lost its <!-- llm-table --> markers"
    assert block.group(1) == budget_markdown(by_budget), (
        "README's LLM table is stale: regenerate it with lab.compare.budget_markdown"
    )
