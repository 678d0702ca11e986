"""Regenerate the tables of results/README.md from the committed cells: each table stands between
`<!-- name -->` and `<!-- /name -->` markers, and only those blocks are rewritten.

    python scripts/results_page.py           # rewrite the blocks
    python scripts/results_page.py --check   # exit 1 when a block differs (tests/test_readme.py)
"""

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "results" / "README.md"


def tables() -> dict[str, str]:
    """{marker: markdown table} from results/llm/ and results/reference/."""
    from iam_tutorial.lab.experiments import EXPERIMENTS
    from iam_tutorial.lab.report import budget_markdown, decision_table, to_markdown
    from iam_tutorial.lab.stats import convergence
    from iam_tutorial.lab.store import budget_dir, load_cells, tidy

    llm = EXPERIMENTS["llm"]
    by_budget = {b: load_cells(budget_dir(REPO / "results" / "llm", b), required="llm")
                 for b in llm.budgets}  # fmt: skip
    ref = EXPERIMENTS["reference"].run
    cells = load_cells(REPO / "results" / "reference", required="reference")
    return {
        "llm-table": budget_markdown(by_budget),
        "reference-table": to_markdown(decision_table(cells, tidy(cells), ref.n_layer)),
        "convergence-table": to_markdown(convergence(cells)),
    }


def blocks(text: str) -> dict[str, str]:
    """{marker: block} of every marked block in `text`."""
    return dict(re.findall(r"<!-- ([\w-]+) -->\n(.*?)\n?<!-- /\1 -->", text, flags=re.S))


def fill(text: str, new: dict[str, str]) -> str:
    for name, table in new.items():
        pattern = rf"(<!-- {name} -->\n)(.*?\n?)(<!-- /{name} -->)"
        if not re.search(pattern, text, flags=re.S):
            raise SystemExit(f"error: {PAGE} has no <!-- {name} --> block")
        text = re.sub(pattern, lambda m, t=table: m.group(1) + t + "\n" + m.group(3), text,
                      flags=re.S)  # fmt: skip
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 on a difference")
    args = parser.parse_args()
    text = PAGE.read_text()
    new = fill(text, tables())
    if args.check:
        stale = [n for n, b in blocks(new).items() if blocks(text).get(n) != b]
        print("stale:", ", ".join(stale) if stale else "none")
        return 1 if stale else 0
    PAGE.write_text(new)
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
