"""Notebook widgets in a live JupyterLab, driven by Playwright through Debian's chromium.

A JupyterLab server on a free local port opens a one-cell notebook and runs it:

- the attention explorer (notebook 01): SmolLM2-135M analysed on two short texts, shown by `Explorer`.
  The page must render the widgets and three plotly figures, and moving a slider (typed into its
  readout, as a user can) must redraw the figures without running the model again: the threshold
  changes the red group boxes on the heatmap, layer b and the head menu change the maps shown.
- the unmasking view (notebook 05's "Watch one sample being written"): a tiny MDM and a tiny ARM,
  trained for seconds, write one sample; the view must be readable as drawn in the page (its height,
  every cell's text size, the prompt at step 0, whole model buttons, cells coloured apart by p) and
  follow its slider and buttons.

Artifacts: test-artifacts/lab_explorer.png, test-artifacts/lab_unmasking.png.
"""

import os
import sys

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # skipped without chromium (conftest)

EXPLORE = """\
from workbench import models
from workbench.attention.analysis import analyze, text_blocks
from workbench.attention.explorer import Explorer, View

model, tokenizer = models.load_model(dtype="float32")
result = analyze(model, tokenizer, text_blocks(tokenizer, "python-docs", 2, 48), drop_sink="both",
                 keep_maps_for=range(30), map_tokens=16, seq_len=48, batch_size=2, progress=False)
Explorer(result, View("cosine", "dropped", first=4, second=5, head=None, threshold=0.5))"""

# Every plotly graph in the page, in order: its red boxes and its subplot titles.
PLOTS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => ({
  shapes: ((p.layout || {}).shapes || []).length,
  titles: ((p.layout || {}).annotations || []).map(a => a.text),
}))
"""


@pytest.fixture
def lab_with(tmp_path, start_server):
    """`lab_with(name, source)`: a JupyterLab server over a folder holding one notebook of one code cell;
    the notebook's URL. The server stops with the test."""
    from workbench.dashboard import free_port

    servers = []

    def start(name: str, source: str) -> str:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
        port = free_port(preferred=0)
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
            "WORKBENCH_HOME": str(tmp_path / "home"),
        }
        server, _ = start_server(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--IdentityProvider.token=",
                "--allow-root",
                "--ServerApp.password=",
                f"--ServerApp.root_dir={tmp_path}",
                "--LabApp.expose_app_in_browser=True",
            ],
            f"http://127.0.0.1:{port}/api/status",
            env,
            "JupyterLab",
        )
        servers.append(server)
        return f"http://127.0.0.1:{port}/lab/tree/{name}.ipynb"

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def lab(lab_with):
    """A JupyterLab server over a folder holding the explorer notebook; its notebook URL."""
    return lab_with("explore", EXPLORE)


def run_all_cells(page, url: str) -> None:
    """Open the notebook at `url`, wait for its kernel, and run every cell (as Run > Run All Cells)."""
    page.goto(url)
    page.wait_for_function(
        """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session
                             && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""",
        timeout=120_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def set_slider(page, label: str, value: str) -> None:
    """Type a value into an ipywidgets slider's readout, as a user can, and commit it with Enter."""
    readout = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).locator(
        ".widget-readout"
    )
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def test_explorer_widgets_redraw_the_figures_in_jupyterlab(lab, chromium, artifacts):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        run_all_cells(page, lab)
        status = page.locator(".widget-html", has_text="layers share attention")
        status.wait_for(timeout=180_000)
        page.wait_for_function(f"() => ({PLOTS})().length === 3", timeout=60_000)
        first = status.inner_text()
        plots = page.evaluate(PLOTS)
        groups = eval(first.split("groups ")[1])  # noqa: S307 - the status line prints a list of lists
        assert (
            "threshold 0.50" in first and plots[0]["shapes"] == len(groups) > 0
        )  # one red box per group on the heatmap
        assert plots[2]["titles"] == ["layer 4, mean over heads", "layer 5, mean over heads"]

        set_slider(page, "threshold", "1")
        page.locator(".widget-html", has_text="threshold 1.00").wait_for(timeout=30_000)
        assert "0 layers share attention, groups []" in status.inner_text()
        page.wait_for_function(f"() => ({PLOTS})()[0].shapes === 0", timeout=30_000)  # the heatmap redrew without boxes

        set_slider(page, "layer b", "9")
        page.wait_for_function(f"() => ({PLOTS})()[2].titles[1] === 'layer 9, mean over heads'", timeout=30_000)
        page.locator(".widget-dropdown", has=page.locator(".widget-label", has_text="head")).locator(
            "select"
        ).select_option(label="2")
        page.wait_for_function(
            f"() => ({PLOTS})()[2].titles.join() === 'layer 4, head 2,layer 9, head 2'", timeout=30_000
        )
        assert (
            page.evaluate(PLOTS)[1]["titles"] == []
            and page.locator(".jp-OutputArea-output pre", has_text="Traceback").count() == 0
        )
        page.screenshot(path=str(artifacts / "lab_explorer.png"), full_page=True)
        browser.close()


# A tiny MDM and ARM (SIZES["t2"], 2.4M parameters with the embedding) trained for a few seconds on python-docs,
# so that their choices differ in probability (untrained, every p is ~1/vocabulary), then notebook 05's view.
UNMASK = """\
import torch
from workbench import data
from workbench.diffusion import mdm
from workbench.diffusion.profile import SIZES
from workbench.diffusion.samplers import SamplerConfig, autoregressive_generate, diffusion_generate
from workbench.diffusion.view import UnmaskingView
from workbench.models import load_tokenizer, tiny_llama
from workbench.train import TrainConfig, causal_lm_loss, train

tokenizer = load_tokenizer()
splits = data.token_splits("python-docs", tokenizer)
config = TrainConfig(steps=40, lr=3e-3, warmup_steps=5, checkpoint=False, compile=False, log_every=40)
mdm_model, _ = mdm.masked_diffusion_llama(len(tokenizer), **SIZES["t2"])
arm_model, _ = tiny_llama(vocab_size=len(tokenizer), **SIZES["t2"])
blocks = data.batches(splits.train, 8, 33, seed=0)
train(mdm_model, (b[:, :-1] for b in blocks), config, loss_fn=mdm.diffusion_loss, progress=False)
train(arm_model, data.batches(splits.train, 8, 33, seed=0), config, loss_fn=causal_lm_loss, progress=False)
prompt, generator = data.blocks(splits.val, 32)[:1, :8], torch.Generator().manual_seed(0)
traces = {
    "MDM t2, 8 steps": diffusion_generate(mdm.denoiser(mdm_model.eval()), prompt, 16, len(tokenizer),
                                          SamplerConfig(steps=8), generator, trace=True),
    "ARM t2, left to right": autoregressive_generate(arm_model.eval(), prompt, 16, 1.0, generator, trace=True),
}
view = UnmaskingView(traces, tokenizer, prompt_len=8)
display(view.widget)"""

# The view's figure as drawn: its size, and per token cell its text, the text's size on screen, and where
# the cell's colour shows (beside the text, clear of the red revealed-now square).
GRID = """
() => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const gd = plots[plots.length - 1], box = gd.getBoundingClientRect(), full = gd._fullLayout;
  const cols = full.xaxis.range[1] - full.xaxis.range[0], rows = full.yaxis.range[0] - full.yaxis.range[1];
  const cellW = full.xaxis._length / cols, cellH = full.yaxis._length / rows;
  const cells = Array.from(gd.querySelectorAll('.textpoint text')).map(t => {
    const r = t.getBoundingClientRect();
    const px = parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    return {text: t.textContent, px: px, width: r.width, x: cx + 0.3 * cellW, y: cy + 0.42 * cellH};
  });
  return {width: box.width, height: box.height, asked: full.height, cellWidth: cellW, cells: cells};
}
"""


def cell_colours(page, grid: dict) -> list[tuple[int, int, int]]:
    """The colour drawn at each cell's sample point, read from a screenshot of the page."""
    import io

    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    return [shot.getpixel((round(cell["x"]), round(cell["y"]))) for cell in grid["cells"]]


def test_unmasking_view_is_readable_and_steps_in_jupyterlab(lab_with, chromium, artifacts):
    from playwright.sync_api import sync_playwright

    from workbench.diffusion.view import MASK

    prompt_len, length = 8, 24
    url = lab_with("unmasking", UNMASK)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        run_all_cells(page, url)
        status = page.locator(".widget-html", has_text="still masked")
        status.wait_for(timeout=180_000)
        page.wait_for_function(f"() => ({GRID})().cells.length === {length}", timeout=60_000)
        assert status.inner_text().startswith("MDM t2, 8 steps, step 0/8"), status.inner_text()
        grid = page.evaluate(GRID)
        assert grid["height"] >= 250 and grid["height"] >= 0.95 * grid["asked"], grid["height"]  # not a ~90 px strip
        small = [(cell["text"], round(cell["px"], 1)) for cell in grid["cells"] if cell["px"] < 12]
        assert not small, small  # every cell's text at 12 px or more on the screen
        texts = [cell["text"] for cell in grid["cells"]]
        assert all(t and t != MASK for t in texts[:prompt_len]) and texts[prompt_len:] == [MASK] * (length - prompt_len)
        buttons = page.locator(".widget-toggle-button")
        assert buttons.all_inner_texts() == ["MDM t2, 8 steps", "ARM t2, left to right"]
        for button in buttons.all():  # the whole name shows: no text clipped or cut by an ellipsis
            assert button.evaluate("b => b.scrollWidth <= b.clientWidth"), button.inner_text()

        set_slider(page, "step", "8")
        page.locator(".widget-html", has_text="step 8/8").wait_for(timeout=30_000)
        page.wait_for_function(f"() => !({GRID})().cells.some(c => c.text === '{MASK}')", timeout=30_000)
        final = page.evaluate(GRID)
        room = final["cellWidth"] - 4  # the cell less its gaps
        wide = [(cell["text"], round(cell["width"])) for cell in final["cells"] if cell["width"] > room]
        assert not wide, (wide, final["cellWidth"])  # every token's text inside its cell, clear of its neighbours
        colours = cell_colours(page, final)
        assert set(colours[:prompt_len]) == {(224, 224, 224)}, colours[:prompt_len]  # the prompt's grey
        written = set(colours[prompt_len:])
        assert len(written) >= 3 and (224, 224, 224) not in written, written  # coloured apart by p

        set_slider(page, "step", "4")
        page.locator(".widget-html", has_text="step 4/8").wait_for(timeout=30_000)
        page.wait_for_function(f"() => ({GRID})().cells.filter(c => c.text === '{MASK}').length === 8", timeout=30_000)
        buttons.nth(1).click()  # the ARM: its own steps, one token each
        page.locator(".widget-html", has_text="ARM t2, left to right, step").wait_for(timeout=30_000)
        assert "/16: " in status.inner_text(), status.inner_text()
        buttons.nth(0).click()
        page.locator(".widget-html", has_text="MDM t2, 8 steps, step").wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts / "lab_unmasking.png"), full_page=True)
        browser.close()
