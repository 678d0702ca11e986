"""Open every notebook in JupyterLab in a headless Chromium, run it (Run All), fail on an error cell,
and screenshot what a learner sees: the top of each notebook and every figure and table output.

Not part of `make test`: it needs Chromium and the `browser` extra. Setup, once:
    apt-get install -y chromium && .venv/bin/pip install -e ".[browser]"
Run:
    .venv/bin/python scripts/browser_check.py [01 05 ...]   # screenshots in screenshots/ (git-ignored)

The server serves a copy of notebooks/ (JupyterLab autosaves, and the stored outputs are only ever
written by `make notebooks`) on a free port, without a token, and is stopped by its own process id.
Figures the kernels save go to a temporary folder.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# Every cell stays in the page (no virtual scrolling), so each output can be captured.
SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False}}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int, settings: Path, log) -> subprocess.Popen:
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "HF_HUB_OFFLINE": "1",
           "IAM_FIGURES_DIR": str(root / "_figures"), "PYTHONHASHSEED": "0",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           f"--port={port}", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
           "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True"]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(120):  # up to a minute
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
            return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(
                    f"error: JupyterLab exited with code {server.returncode}"
                ) from None
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("error: JupyterLab did not answer within a minute")


RUN_ALL = """async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.sessionContext.ready;
  await app.commands.execute('notebook:run-all-cells');
  while (panel.sessionContext.session.kernel.status !== 'idle') {
    await new Promise(r => setTimeout(r, 500));
  }
  await app.commands.execute('docmanager:save');
}"""


def check(page, root: Path, name: str, port: int, out: Path) -> list[str]:
    """Run one notebook in a fresh page; return its error cells (index and error name)."""
    page.goto(f"http://127.0.0.1:{port}/lab/workspaces/check/tree/{name}?reset")  # no other tab
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=60_000)  # fmt: skip
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    start = time.time()
    try:
        page.evaluate(RUN_ALL)
    except Exception:  # a timeout or a dialog: keep what the page showed
        page.screenshot(path=str(out / f"{name.removesuffix('.ipynb')}-FAILED.png"))
        raise
    took = time.time() - start
    stem = name.removesuffix(".ipynb")
    shots = 0
    for i, cell in enumerate(page.locator(".jp-Notebook .jp-Cell").all()):
        outputs = cell.locator(".jp-OutputArea-output:has(img), .jp-OutputArea-output:has(table)")
        for j, output in enumerate(outputs.all()):
            output.scroll_into_view_if_needed()
            output.screenshot(path=str(out / f"{stem}-cell{i:02d}-{j}.png"))
            shots += 1
    page.locator(".jp-Notebook .jp-Cell").first.scroll_into_view_if_needed()
    page.screenshot(path=str(out / f"{stem}.png"))  # the notebook's first screen
    saved = json.loads((root / name).read_text())
    errors, unrun = [], 0
    for i, c in enumerate(saved["cells"]):
        if c["cell_type"] != "code":
            continue
        unrun += c.get("execution_count") is None
        errors += [f"cell {i}: {o['ename']}: {o['evalue'][:200]}" for o in c.get("outputs", [])
                   if o["output_type"] == "error"]  # fmt: skip
    if unrun:
        errors.append(f"{unrun} code cells did not run")
    print(f"{name}: {took:.0f} s in the browser, {shots} outputs captured, "
          f"{len(errors)} error(s)", flush=True)  # fmt: skip
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="notebook prefixes, e.g. 02 05 (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "screenshots")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per notebook")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright  # the optional `browser` extra

    names = sorted(p.name for p in (REPO / "notebooks").glob("0*.ipynb")
                   if not args.only or p.name.startswith(tuple(args.only)))  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="iam-browser-"))
    root, settings = work / "notebooks", work / "settings"
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns("conftest.py"))
    for rel, values in SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(values))
    port = free_port()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    with open(work / "server.log", "w") as log:
        server = start_server(root, port, settings, log)
        failures = {}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
                for name in names:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.set_default_timeout(args.timeout * 1000)
                    failures[name] = check(page, root, name, port, args.out)
                    page.evaluate("() => window.jupyterapp.shell.currentWidget"
                                  ".sessionContext.shutdown()")  # fmt: skip
                    page.close()
                browser.close()
        finally:
            server.terminate()  # only the server this script started
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    bad = {n: e for n, e in failures.items() if e}
    for name, errors in bad.items():
        print(f"FAILED {name}:", *errors, sep="\n  ")
    print(f"screenshots: {args.out}; server log: {work / 'server.log'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
