"""Regenerate the tables of results/README.md, and the answer the README and notebook 04 lead
with, from the committed cells: each stands between `<!-- name -->` and `<!-- /name -->` markers,
and only those blocks are rewritten.

    python scripts/results_page.py           # rewrite the blocks
    python scripts/results_page.py --check   # exit 1 when a block differs (tests/test_readme.py)
"""

import argparse
import re
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "results" / "README.md"
README = REPO / "README.md"
NOTEBOOK = REPO / "notebooks" / "04_comparison.ipynb"


def tables(every: list[dict], head, bounds) -> dict[str, str]:
    """{marker: markdown table} from the committed results folders; `every`: the every-user
    cells, `head` and `bounds` their decide.primary and decide.noise."""
    from iam_tutorial.lab import decide
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
        "llm-seed-bound": seed_bound_markdown(by_budget),
        "llm-speed": llm_speed_markdown(),
        "llm-memory": llm_memory_markdown(),
        "every-user-table": decide.markdown(every, head, bounds),
    }


def llm_speed_markdown() -> str:
    """The SmolLM2 speed levers of results/benchmarks/llm_speed.json (benchmarks/llm_speed.py):
    each one's speed and its ratio to the former code, measured in one run; for scoring, the
    scored users' NDCG@10 and how many ranks equal the former code's (bf16 rounding moves some)."""
    import json

    r = json.loads((REPO / "results" / "benchmarks" / "llm_speed.json").read_text())
    unit = "CPU time" if r["timed_by"] == "cpu time" else "wall clock"
    before = r["scoring"]["before"]
    rows = [f"| lever | speed ({r['threads']} thread, {unit}) | vs before | NDCG@10 | ranks equal |",
            "| --- | --- | --- | --- | --- |",
            f"| train: before (SDPA, a boolean mask built in every layer), 8 windows a step "
            f"| {r['before_tokens_per_s']:,.0f} tokens/s | 1.00x | | |",
            f"| score: before (autograd on, SDPA, a boolean mask per layer) "
            f"| {r['before_users_per_s']:.2f} users/s | 1.00x | {before['valid_ndcg_at_10']:.4f} | |"]  # fmt: skip
    for x in r["levers"]:
        speed = (f"{x['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in x
                 else f"{x['users_per_s']:.2f} users/s")  # fmt: skip
        ndcg = f"{x['valid_ndcg_at_10']:.4f}" if "valid_ndcg_at_10" in x else ""
        rows.append(f"| {x['lever']} | {speed} | **{x['ratio']:.2f}x** | {ndcg} | "
                    f"{x.get('ranks_equal', '')} |")  # fmt: skip
    return "\n".join(rows)


def llm_memory_markdown() -> str:
    """The allocator and scoring-batch levers (benchmarks/llm_memory.py): one table per stored
    run, each lever's scoring and training speed, its ratio to that run's first lever, the
    kernel's share (system CPU seconds, page faults), peak memory and ranks equal to the first."""
    import json

    rows = ["| run | lever | scoring, users/s | vs first | system s | page faults | training, "
            "tokens/s | vs first | peak GB | ranks equal |", "|" + " --- |" * 10]  # fmt: skip
    for name in ("llm_memory.json", "llm_memory_allocators.json"):
        r = json.loads((REPO / "results" / "benchmarks" / name).read_text())
        first = r["levers"][0]
        for x in r["levers"]:
            s, t = x["scoring"], x["training"]
            rows.append(
                f"| [{name}](benchmarks/{name}) | {x['lever']} | {s['users_per_s']:.2f} | "
                f"**{s['users_per_s'] / first['scoring']['users_per_s']:.2f}x** | "
                f"{s['system_s']:.1f} | {s['page_faults']:,} | {t['tokens_per_s']:.0f} | "
                f"{t['tokens_per_s'] / first['training']['tokens_per_s']:.2f}x | "
                f"{x['peak_rss_gb']:.1f} | {x['ranks_equal']}/{r['users']} |"
            )
    return "\n".join(rows)


def seed_bound_markdown(by_budget: dict[int, list[dict]], users: int = 6040) -> str:
    """Per budget and plan vs token: the seed component's SD (point estimate and one-sided 95%
    upper bound, stats.seed_sd_upper) and the sizing MDE of 3 seeds on all users at each."""
    import numpy as np
    import pandas as pd

    from iam_tutorial.lab.report import to_markdown
    from iam_tutorial.lab.stats import design_mde, per_user, seed_sd_upper, variance_components

    rows = []
    for budget, cells in sorted(by_budget.items()):
        ref = per_user(cells, "token")
        for plan in ("hatllm", "iam-heads"):
            mine = per_user(cells, plan)
            seeds = sorted(set(mine) & set(ref))
            a, b = np.array([mine[s] for s in seeds]), np.array([ref[s] for s in seeds])
            c, bound = variance_components(a, b), seed_sd_upper(a, b)
            at_bound = design_mde(c | {"seed": bound**2}, 3, users)
            rows.append({"epochs": budget, "plan": plan, "sd seed": f"{np.sqrt(c['seed']):.3f}",
                         "sd seed, 95% bound": f"{bound:.3f}",
                         f"MDE 3 seeds x {users} users": f"{design_mde(c, 3, users):.0%}",
                         "the same at the bound": f"{at_bound:.0%}"})  # fmt: skip
    return to_markdown(pd.DataFrame(rows).set_index("epochs"))


def pages() -> dict[Path, dict[str, str]]:
    """{page: {marker: block}} of every generated block: results/README.md's tables, and the
    every-user run's answer (decide.answer, wrapped at 100 columns) in the README and notebook 04."""
    from iam_tutorial.lab import decide
    from iam_tutorial.lab.store import load_cells

    every = load_cells(REPO / "results" / "every-user")
    head, bounds = decide.primary(every), decide.noise(every)  # the bootstraps, once for both
    text = decide.answer(every, head, bounds)
    answer = {"every-user-answer": textwrap.fill(text, 100, break_on_hyphens=False,
                                                 break_long_words=False)}  # fmt: skip
    return {PAGE: tables(every, head, bounds), README: answer, NOTEBOOK: answer}


def read(page: Path) -> str:
    """A page's text: a notebook's markdown cells, one after another."""
    if page.suffix != ".ipynb":
        return page.read_text()
    import nbformat

    cells = nbformat.read(page, as_version=4).cells
    return "\n\n".join(c.source for c in cells if c.cell_type == "markdown")


def write(page: Path, new: dict[str, str]) -> None:
    """Rewrite a page's blocks (in a notebook, the markdown cell that holds each)."""
    if page.suffix != ".ipynb":
        page.write_text(fill(page.read_text(), new, page))
        return
    import nbformat

    nb = nbformat.read(page, as_version=4)
    for name, block in new.items():
        cell = next((c for c in nb.cells if f"<!-- {name} -->" in c.source), None)
        if cell is None or cell.cell_type != "markdown":
            raise SystemExit(f"error: {page} has no markdown cell with a <!-- {name} --> block")
        cell.source = fill(cell.source, {name: block}, page)
    nbformat.write(nb, page)


def blocks(text: str) -> dict[str, str]:
    """{marker: block} of every marked block in `text`."""
    return dict(re.findall(r"<!-- ([\w-]+) -->\n(.*?)\n?<!-- /\1 -->", text, flags=re.S))


def fill(text: str, new: dict[str, str], page: Path = PAGE) -> str:
    for name, table in new.items():
        pattern = rf"(<!-- {name} -->\n)(.*?\n?)(<!-- /{name} -->)"
        if not re.search(pattern, text, flags=re.S):
            raise SystemExit(f"error: {page} has no <!-- {name} --> block")
        text = re.sub(pattern, lambda m, t=table: m.group(1) + t + "\n" + m.group(3), text,
                      flags=re.S)  # fmt: skip
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 on a difference")
    args = parser.parse_args()
    stale = []
    for page, new in pages().items():
        stored = blocks(read(page))
        mine = [n for n, b in new.items() if stored.get(n) != b]
        stale += [f"{page.relative_to(REPO)}: {n}" for n in mine]
        if mine and not args.check:
            write(page, new)
            print(f"wrote {page.relative_to(REPO)}")
    if args.check:
        print("stale:", ", ".join(stale) if stale else "none")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
