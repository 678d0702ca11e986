"""The store of a comparison's cells: one JSON per (plan, item input, seed) under <out>/runs/.

A cell is written atomically the moment it finishes and is reused only while its config, its data
and the code's behaviour are unchanged (its fingerprint, lab/fingerprint.py: moving code or editing
a docstring keeps it), so an interrupted comparison loses nothing, on any machine; `load_cells`
reads every stored cell, whatever code made it, for reporting.
"""

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from iam_tutorial.config import Config, ConfigError
from iam_tutorial.lab.fingerprint import fingerprint, matches
from iam_tutorial.paths import REPO_ROOT
from iam_tutorial.plans import PLANS
from iam_tutorial.repro import git_commit

CODE_DIR = REPO_ROOT / "iam_tutorial"


def text_plan(plan: str) -> bool:
    """Whether `plan` reads item text (so it has item inputs and a mask plan to compare); the
    baselines (popularity, SASRec's ID tokens) do not."""
    return plan in PLANS and PLANS[plan].text


def cell_name(cfg: Config) -> str:
    """'iam' (text items), 'iam+id' (text + ID), 'sasrec', 'popularity'."""
    return cfg.plan + ("+id" if text_plan(cfg.plan) and cfg.item_input == "text+id" else "")


def code_hash() -> str:
    """A hash of the core package's text when a cell was written: stored with the cell as its
    provenance (reuse rests on the fingerprint, which ignores the text)."""
    h = hashlib.sha1()
    for path in sorted(CODE_DIR.rglob("*.py")):
        relative = path.relative_to(CODE_DIR)
        if relative.parts[0] != "lab":
            h.update(relative.as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:12]


def cell_path(cfg: Config, out_dir: Path) -> Path:
    return Path(out_dir) / "runs" / f"{cell_name(cfg)}_seed{cfg.seed}.json"


def stored_cell(cfg: Config, out_dir: Path) -> dict | None:
    """The stored results of a cell if its config, data and the code's behaviour still match
    (lab/fingerprint.py), else None."""
    path = cell_path(cfg, out_dir)
    if path.exists():
        stored = json.loads(path.read_text())
        if matches(stored.get("fingerprint"), fingerprint(cfg)):
            return stored
    return None


def write_cell(cfg: Config, results: dict, out_dir: Path) -> dict:
    """Write one cell atomically (a killed run never leaves a half-written file); returns it as a
    later run reads it back."""
    results = {
        **results,
        "cell": cell_name(cfg),
        "fingerprint": fingerprint(cfg),
        "code": code_hash(),
        "commit": git_commit(),
    }
    path = cell_path(cfg, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=1, sort_keys=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return json.loads(text)


def budget_dir(out_dir: Path, epochs: int) -> Path:
    return Path(out_dir) / f"epochs-{epochs}"


class NoCells(ConfigError):
    """A comparison folder with no stored cells; the message says how to make them."""


def load_cells(out_dir: Path, required: str | None = None) -> list[dict]:
    """Every stored cell of a comparison folder, whatever code produced it (for reading only);
    with `required` (the mode that makes them), none is a one-line NoCells error that says how
    to train them."""
    cells = [json.loads(p.read_text()) for p in sorted((Path(out_dir) / "runs").glob("*.json"))]
    if required and not cells:
        mode = required
        raise NoCells(
            f"No cells are stored in {Path(out_dir) / 'runs'}: train them first with "
            f"`python -m iam_tutorial.lab.compare --mode {mode}` (or `make {mode}`)."
        )
    return cells


def tidy(results: list[dict]) -> pd.DataFrame:
    """One row per (cell, seed, split, protocol, metric), with the cell's facts."""
    rows = [
        {
            "cell": r.get("cell", r["plan"]),
            "plan": r["plan"],
            "item_input": r["config"].get("item_input", "text"),
            "seed": r["seed"],
            "split": split,
            "protocol": proto,
            "metric": metric,
            "value": value,
            "params": r["params"],
            "train_seconds": r["train_seconds"],
            "epochs": r.get("epochs", 0),
            "best_epoch": r.get("best_epoch", 0),
            "converged": r.get("converged", True),
        }
        for r in results
        for split in ("valid", "test")
        for proto, metrics in r[split].items()
        for metric, value in metrics.items()
    ]
    return pd.DataFrame(rows)
