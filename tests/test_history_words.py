"""The README, the results page, the notebooks' sources and the package speak of the project as it
is: no history of how it was built (work rounds, issue numbers, sessions, work periods, stories
of what a text once said). Notebook outputs are not read: they are what the code printed."""

import json
import re

import pytest

from iam_tutorial.paths import REPO_ROOT

HISTORY = [
    r"\b(this|last|next|previous|earlier|later|current|that)\s+round('s)?\b",
    r"\bround\s+\d+\b",
    r"\b(issue|pull request|PR)\s*#?\d+\b",
    r"\(#\d+\)",
    r"\bthe issue\b",
    r"\b(this|next|last|previous|earlier|later|another|a|one|each|that|many)\s+sessions?('s)?\b",
    r"\bsessions that\b",
    r"\b(last|this|next|previous)\s+(week|month|night|morning|afternoon|evening|sprint)\b",
    r"\b(yesterday|today)\b",
    r"\bonce (skipped|said|stated|recommended|claimed)\b",
    r"\bwhen this (notebook|readme|page) was written\b",
    r"\bwas cut off\b",
    r"\bresumes? next\b",
]
# A space in a pattern matches any run of whitespace: a sentence may wrap across lines.
PATTERN = re.compile("|".join(f"(?:{p})" for p in HISTORY).replace(" ", r"\s+"), flags=re.I)


def texts() -> dict[str, str]:
    """Every file read, as {name: text}; a notebook contributes its cells' sources only."""
    out = {name: (REPO_ROOT / name).read_text() for name in ("README.md", "results/README.md")
           if (REPO_ROOT / name).exists()}  # fmt: skip
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                   for c in cells]  # fmt: skip
        out[str(path.relative_to(REPO_ROOT))] = "\n".join(sources)
    for path in sorted((REPO_ROOT / "iam_tutorial").rglob("*.py")):
        out[str(path.relative_to(REPO_ROOT))] = path.read_text()
    return out


def history_words(text: str) -> list[str]:
    """'line N: match' for every history word in `text`."""
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
            for m in PATTERN.finditer(text)]  # fmt: skip


@pytest.mark.parametrize(
    "sentence",
    [
        "retrained by this round's trainer",
        "the half wall time the issue aims at",
        "as collected in issue 18",
        "see #27 (#27)",
        "cut off at a session's end, it resumes next session",
        "no GPU was lent to the sessions that built this",
        "measured last week",
        "the measurement the README once skipped",
        "Not measured: no GPU was available when this notebook was\nwritten",
    ],
)
def test_history_words_are_found(sentence):
    assert history_words(sentence), sentence


@pytest.mark.parametrize(
    "sentence",
    [
        "round(x, 3) and a rounded metric; titles round-trip; timed round-robin",
        "the fused kernel rounds the same update differently",
        "Jupyter names the notebook in JPY_SESSION_NAME when it starts a kernel",
        "colour #31688e; a cut-off ratings.dat is refused",
        "one issue with padding is that a row could be empty",
    ],
)
def test_legitimate_words_pass(sentence):
    assert not history_words(sentence), history_words(sentence)


def test_no_history_words():
    found = {name: hits for name, text in texts().items() if (hits := history_words(text))}
    assert not found, "history words (say what the project is, not how it got here):\n" + "\n".join(
        f"{name}: {', '.join(hits)}" for name, hits in found.items()
    )
