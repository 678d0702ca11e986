"""Notebook helpers: the code next to its explanation, and notebook 02's attention explorer.

The annotated transformer prints each piece of code beside the paper's idea; `show_source(fn)` does
that here (syntax-highlighted Markdown in Jupyter, plain text elsewhere), so a notebook shows the
very function it calls. `AttentionExplorer` draws user x plan x sublayer: one figure per update, a
sublayer slider that offers only the plan's sublayers, a static figure outside a live kernel.
"""

import base64
import inspect
import io
import os
import textwrap

import matplotlib.pyplot as plt

from iam_tutorial.analysis import attention_maps
from iam_tutorial.masks import allow_mask
from iam_tutorial.viz import plot_mask_and_attention


def source_text(obj) -> str:
    """The source of a function, method or class, dedented, under a comment naming it."""
    target = inspect.unwrap(obj)
    name = f"{target.__module__}.{target.__qualname__}"
    return f"# {name}\n" + textwrap.dedent(inspect.getsource(target)).rstrip()


class Source:
    """Source text that Jupyter renders as a highlighted Python block and a terminal as text."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return f"```python\n{self.text}\n```"

    def __repr__(self) -> str:
        return self.text


def show_source(*objs) -> None:
    """Display the source of each object (see `source_text`): Markdown under IPython, printed
    text otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # the package itself does not need IPython
        get_ipython = None
    for obj in objs:
        if get_ipython is not None and get_ipython() is not None:
            display(Source(source_text(obj)))
        else:
            print(source_text(obj))


def live_kernel() -> bool:
    """Whether widgets can work: a Jupyter server started this kernel (it sets JPY_SESSION_NAME;
    nbconvert and nbval do not). IAM_WIDGETS=1 or 0 forces the answer."""
    forced = os.environ.get("IAM_WIDGETS")
    return forced == "1" if forced in ("0", "1") else "JPY_SESSION_NAME" in os.environ


def figure_png(fig, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes and close it, so pyplot never shows it a second time."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buffer.getvalue()


def png_output(png: bytes, text: str) -> dict:
    """One notebook display_data output holding a PNG (what an ipywidgets.Output stores)."""
    data = {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}
    return {"output_type": "display_data", "data": data, "metadata": {}}


class AttentionExplorer:
    """A sublayer's mask next to the attention it produced, for a user's history and a plan.

    `models` maps plan names to ItemGPT models that share `serializer`; `histories` maps user ids
    to the catalog items to show. `figure` draws one view; `widget` wraps it in sliders; `show`
    picks the widget in a live kernel and the static figure elsewhere.
    """

    def __init__(self, models: dict, histories: dict, serializer):
        self.models, self.histories, self.serializer = models, dict(histories), serializer
        self.draws = 0  # figures drawn so far (the widget draws one per update)

    def sublayers(self, plan: str) -> int:
        """Attention sublayers of `plan`'s model, over all blocks."""
        return sum(len(block) for block in self.models[plan].plan)

    def title(self, user, plan: str, sublayer: int) -> str:
        """'user 1 · iam · sublayer 3 (block 1): inter' (sublayers and blocks count from 0)."""
        where = [(b, k) for b, block in enumerate(self.models[plan].plan) for k in block]
        block, kind = where[sublayer]
        return f"user {user} · {plan} · sublayer {sublayer} (block {block}): {kind}"

    def figure(self, user, plan: str, sublayer: int):
        """The figure of one view; a sublayer the plan does not have raises."""
        if plan not in self.models:
            raise ValueError(f"No model for plan {plan!r}: choose one of {', '.join(self.models)}.")
        if not 0 <= sublayer < self.sublayers(plan):
            raise ValueError(f"{plan} has sublayers 0..{self.sublayers(plan) - 1}, not {sublayer}.")
        batch = self.serializer.collate([self.histories[user]])
        kind, attn = attention_maps(self.models[plan], batch)[sublayer]
        allow = allow_mask(kind, batch.item_index)[0]
        self.draws += 1
        return plot_mask_and_attention(
            allow, attn[0], batch.item_index[0], self.title(user, plan, sublayer)
        )

    def png(self, user, plan: str, sublayer: int) -> bytes:
        return figure_png(self.figure(user, plan, sublayer))

    def widget(self, user=None, plan: str | None = None, sublayer: int = 0):
        """Sliders for user and sublayer, a menu for the plan, and an Output holding exactly one
        figure: each update renders the new PNG first, then replaces the Output's contents in one
        assignment (no blank frame, no stray figure); a plan change first moves the sublayer
        slider's maximum to the plan's last sublayer, then draws once."""
        import ipywidgets as widgets

        users = list(self.histories)
        plan = plan or next(iter(self.models))
        start = users[0] if user is None else user
        user_w = widgets.SelectionSlider(options=users, value=start, description="user")
        plan_w = widgets.Dropdown(options=list(self.models), value=plan, description="plan")
        last = self.sublayers(plan) - 1
        sub_w = widgets.IntSlider(
            value=min(sublayer, last), min=0, max=last, description="sublayer"
        )
        out = widgets.Output()
        holding = [False]  # set while the plan change moves the slider: draw once, after it

        def draw(_=None):
            if not holding[0]:
                view = (user_w.value, plan_w.value, sub_w.value)
                out.outputs = (png_output(self.png(*view), self.title(*view)),)

        def on_plan(_):
            holding[0] = True
            try:
                sub_w.max = self.sublayers(plan_w.value) - 1  # clamps the value if needed
            finally:
                holding[0] = False
            draw()

        user_w.observe(draw, "value")
        sub_w.observe(draw, "value")
        plan_w.observe(on_plan, "value")
        draw()
        return widgets.VBox([widgets.HBox([user_w, plan_w, sub_w]), out])

    def show(self, user, plan: str, sublayer: int, live: bool | None = None):
        """The widget in a live kernel (`live_kernel`), else the static figure of this view."""
        from IPython.display import Image, display

        if live if live is not None else live_kernel():
            display(self.widget(user, plan, sublayer))
        else:
            display(Image(self.png(user, plan, sublayer)))
            print(
                f"static view: {self.title(user, plan, sublayer)} (the widget needs a live "
                "Jupyter kernel, or IAM_WIDGETS=1)"
            )
