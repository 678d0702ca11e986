"""Notebook helpers: source display, the live-kernel switch, the config diff, and the attention
explorer's callbacks (one figure per update; the sublayer slider follows the plan) without a
browser: an ipywidgets.Output's `outputs` is exactly what the front end would draw."""

import base64

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from iam_tutorial.config import FULL, QUICK, config_diff, get_config  # noqa: E402
from iam_tutorial.masks import allow_rule  # noqa: E402
from iam_tutorial.model import Block, ItemGPT  # noqa: E402
from iam_tutorial.notebook import (  # noqa: E402
    AttentionExplorer,
    Source,
    live_kernel,
    show_source,
    source_text,
)
from iam_tutorial.serialize import Serializer  # noqa: E402


def test_source_text_names_and_dedents():
    text = source_text(Block.forward)
    assert text.splitlines()[0] == "# iam_tutorial.model.Block.forward"
    assert text.splitlines()[1].startswith("def forward(self, x, masks")  # dedented method
    assert "def allow_rule(kind: str" in source_text(allow_rule)
    source = Source("x = 1")
    assert source._repr_markdown_() == "```python\nx = 1\n```" and repr(source) == "x = 1"


def test_show_source_prints_outside_ipython(capsys):
    show_source(allow_rule)
    assert capsys.readouterr().out == source_text(allow_rule) + "\n"


def test_live_kernel(monkeypatch):
    monkeypatch.delenv("IAM_WIDGETS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not live_kernel()
    monkeypatch.setenv("JPY_SESSION_NAME", "02_visualizing_masks.ipynb")
    assert live_kernel()
    monkeypatch.setenv("IAM_WIDGETS", "0")
    assert not live_kernel()
    monkeypatch.delenv("JPY_SESSION_NAME")
    monkeypatch.setenv("IAM_WIDGETS", "1")
    assert live_kernel()


def test_config_diff():
    diff = config_diff(QUICK, FULL)
    assert diff["mode"] == ("quick", "full") and diff["n_users"] == (QUICK.n_users, None)
    assert "seed" not in diff and config_diff(QUICK, QUICK) == {}
    names = [f for f in QUICK.__dataclass_fields__ if f in diff]
    assert list(diff) == names  # field order


@pytest.fixture(scope="module")
def explorer():
    """Fresh iam (2 blocks: 4 sublayers) and token (2 sublayers) models on a toy catalog."""
    items = [[], [3, 4, 2], [5, 2], [6, 7, 8, 2], [9, 2]]
    serializer = Serializer(items, bos_id=0, pad_id=1, max_tokens=32)
    serializer.sep_id = 2
    models = {}
    for plan in ("iam", "token"):
        cfg = get_config("quick", plan=plan, n_layer=2, n_embd=16, n_head=2, max_tokens=32)
        torch.manual_seed(0)
        models[plan] = ItemGPT(cfg, serializer.vocab_size, serializer.item_words()).eval()
    return AttentionExplorer(models, {1: [1, 2, 3], 2: [4, 1], 3: [2, 3, 4, 1]}, serializer)


def shown(box) -> list[dict]:
    return list(box.children[1].outputs)


def test_explorer_figure_and_its_checks(explorer):
    plt.close("all")  # figures other tests left open are not the explorer's
    assert explorer.sublayers("iam") == 4 and explorer.sublayers("token") == 2
    fig = explorer.figure(2, "iam", 3)
    assert fig._suptitle.get_text().startswith("user 2 · iam · sublayer 3 (block 1): inter")
    plt.close(fig)
    with pytest.raises(ValueError, match="sublayers 0..1, not 2"):
        explorer.figure(1, "token", 2)
    with pytest.raises(ValueError, match="No model for plan"):
        explorer.figure(1, "hatllm", 0)
    assert explorer.png(1, "token", 1)[:4] == b"\x89PNG"
    assert not plt.get_fignums()  # rendered figures are closed, never shown twice


def test_explorer_widget_one_figure_per_update(explorer):
    box = explorer.widget(user=1, plan="iam", sublayer=3)
    user, plan, sublayer = box.children[0].children
    assert (sublayer.min, sublayer.max, sublayer.value) == (0, 3, 3)
    assert len(shown(box)) == 1 and shown(box)[0]["data"]["text/plain"].endswith(
        "sublayer 3 (block 1): inter"
    )
    draws = explorer.draws
    for value in (2, 3, 1):  # quick changes: each replaces the one figure
        user.value = value
        assert len(shown(box)) == 1
    assert explorer.draws == draws + 3
    output = shown(box)[0]
    assert output["output_type"] == "display_data"
    assert base64.b64decode(output["data"]["image/png"])[:4] == b"\x89PNG"
    assert output["data"]["text/plain"].startswith("user 1 · iam · sublayer 3")
    assert not plt.get_fignums()


def test_explorer_sublayer_slider_follows_the_plan(explorer):
    box = explorer.widget(user=1, plan="iam", sublayer=3)
    _, plan, sublayer = box.children[0].children
    draws = explorer.draws
    plan.value = "token"  # 2 sublayers: the slider's max moves, its value is clamped, one draw
    assert (sublayer.max, sublayer.value) == (1, 1)
    assert explorer.draws == draws + 1 and len(shown(box)) == 1
    assert shown(box)[0]["data"]["text/plain"] == "user 1 · token · sublayer 1 (block 1): causal"
    plan.value = "iam"  # back: the max grows, the value stays
    assert (sublayer.max, sublayer.value) == (3, 1) and explorer.draws == draws + 2
    sublayer.value = 3
    assert shown(box)[0]["data"]["text/plain"] == "user 1 · iam · sublayer 3 (block 1): inter"


def test_explorer_static_fallback(explorer, capsys, monkeypatch):
    shown_objects = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown_objects.append(obj))
    explorer.show(1, "iam", 1, live=False)
    assert type(shown_objects[0]).__name__ == "Image" and shown_objects[0].data[:4] == b"\x89PNG"
    assert "static view: user 1 · iam · sublayer 1 (block 0): inter" in capsys.readouterr().out
    explorer.show(1, "iam", 1, live=True)
    assert type(shown_objects[1]).__name__ == "VBox"
