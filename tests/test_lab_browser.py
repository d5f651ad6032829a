"""The attention explorer in a live JupyterLab, driven by Playwright through Debian's chromium.

A JupyterLab server on a free local port opens a notebook that analyses SmolLM2-135M on two short
texts and shows `Explorer`. The page must render the widgets and three plotly figures, and moving
a slider (typed into its readout, as a user can) must redraw the figures without running the model
again: the threshold changes the red group boxes on the heatmap, layer b and the head menu change
the maps shown.
Artifact: test-artifacts/lab_explorer.png.
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
def lab(tmp_path, start_server):
    """A JupyterLab server over a folder holding the explorer notebook; its notebook URL."""
    from workbench.dashboard import free_port

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(EXPLORE)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "explore.ipynb")
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
    yield f"http://127.0.0.1:{port}/lab/tree/explore.ipynb"
    server.terminate()
    server.wait(timeout=30)


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
        page.goto(lab)
        page.wait_for_function(
            """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                       const k = w && w.sessionContext && w.sessionContext.session
                                 && w.sessionContext.session.kernel;
                       return k && k.status === 'idle'; }""",
            timeout=120_000,
        )
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
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
