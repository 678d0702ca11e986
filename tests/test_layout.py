"""Two floors and one rule: the teaching core never imports the lab, no module imports in a circle
(imports inside functions included: they must not hide one), and `import iam_tutorial` is light."""

import ast
import subprocess
import sys

from iam_tutorial.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "iam_tutorial"


def module_name(path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path) -> set[str]:
    """Every iam_tutorial module `path` imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("iam_tutorial")
        ):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("iam_tutorial"))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}


def test_the_core_never_imports_the_lab():
    offenders = {
        m: sorted(i for i in deps if i.startswith("iam_tutorial.lab"))
        for m, deps in graph().items()
        if not m.startswith("iam_tutorial.lab")
    }
    assert not {m: d for m, d in offenders.items() if d}


def test_no_import_circle():
    edges, state, cycles = graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(edges[m]):
            if d == "iam_tutorial":  # the package face imports lazily, never at import time
                continue
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_the_circle_finder_finds_a_circle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other are reported."""
    (tmp_path / "iam_tutorial").mkdir()
    (tmp_path / "iam_tutorial" / "a.py").write_text("def f():\n    from iam_tutorial.b import g\n")
    (tmp_path / "iam_tutorial" / "b.py").write_text("from iam_tutorial.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "iam_tutorial")
    try:
        test_no_import_circle()
    except AssertionError as e:
        assert "iam_tutorial.a -> iam_tutorial.b -> iam_tutorial.a" in str(e)
    else:
        raise AssertionError("the circle was not found")


def test_import_is_light():
    code = (
        "import sys, iam_tutorial; iam_tutorial.get_config; iam_tutorial.allow_mask;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'transformers'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
