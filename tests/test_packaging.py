"""The repo's shape and its two dependency declarations agree."""

import re
import tomllib

import yaml

from iam_tutorial.paths import REPO_ROOT


def names(requirements):
    return {re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e ." in pip
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = names(project["dependencies"] + project["optional-dependencies"]["dev"])
    assert names(p for p in pip if p != "-e .") == declared
    assert all(re.search(r"==\d+\.\d+\.\*$", p) for p in pip if p != "-e ."), "pin minor versions"


def test_top_level_layout():
    for name in (
        "notebooks",
        "iam_tutorial",
        "data",
        "figures",
        "tests",
        "environment.yml",
        "README.md",
    ):
        assert (REPO_ROOT / name).exists(), name
    ignored = (REPO_ROOT / ".gitignore").read_text()
    assert "data/*" in ignored and "*.pt" in ignored  # MovieLens and checkpoints never committed
