"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

The dashboard is served on a free local port over a fresh store; a writer process (another
process, as a notebook would be) logs metric steps, and the page must show each new step without
a reload within a few seconds. Measured: the time from a metric row's commit to its point in the
page's curve. A killed writer must then read "interrupted". Nothing may be fetched from outside the
server (no CDN). Artifacts: test-artifacts/dashboard.png, test-artifacts/dashboard_latency.json.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium); the browser test needs it")

# Logs steps 0..4 at once, then one step per line read on stdin; prints each commit's time.
WRITER = textwrap.dedent(
    """
    import sys, time
    from workbench.runs import RunStore
    run = RunStore(sys.argv[1]).start_run("probe", "live-probe", {"lr": 3e-4})
    def log(step):
        run.log({"loss": 3.0 / (step + 1)}, step=step)
        print(time.time(), flush=True)
    for step in range(5):
        log(step)
    for step, _ in enumerate(sys.stdin, start=5):
        log(step)
    """
)

# The curve's points per trace name, found through Panel's shadow roots.
TRACES = """
() => {
  const plots = [];
  const walk = root => root.querySelectorAll('*').forEach(el => {
    if (el.classList && el.classList.contains('js-plotly-plot')) plots.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  const traces = {};
  plots.forEach(p => (p.data || []).forEach(t => { traces[t.name] = (t.x || []).length; }));
  return traces;
}
"""


@pytest.fixture
def dashboard(tmp_path, start_server):
    """A dashboard server over a fresh store, and the store's path; stopped after the test."""
    from workbench.dashboard import free_port
    from workbench.runs import RunStore

    store = RunStore(tmp_path / "runs.db")
    with store.start_run("probe", "baseline", {"lr": 1e-3}) as run:  # a finished run with an artifact, to compare against
        for step in range(5):
            run.log({"loss": 4.0 / (step + 1)}, step=step)
        run.log_artifact("similarity.npy", np.eye(6) * 0.5 + 0.5)
    port = free_port(preferred=0)
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path)}
    url = f"http://127.0.0.1:{port}/dashboard_app"
    server, html = start_server([sys.executable, "-m", "workbench", "dashboard", "--port", str(port)], url, env, "the dashboard")
    yield url, html, store
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_dashboard_shows_runs_and_curves_grow_live(dashboard):
    playwright = pytest.importorskip("playwright.sync_api")
    url, html, store = dashboard
    assert "cdn." not in html and "https://" not in html.replace("https://github.com", "")  # scripts and styles are local

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        writer.stdout.readline()
    requests, latencies = [], []
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url)
            # the runs table lists both runs; the curves show both runs' five logged steps
            page.locator(".tabulator-row", has_text="live-probe").first.wait_for(timeout=60_000)
            page.locator(".tabulator-row", has_text="baseline").first.wait_for(timeout=10_000)
            traces = page.wait_for_function(f"() => {{ const t = ({TRACES})(); return t['#2 live-probe'] === 5 && t['#1 baseline'] === 5 && t; }}", timeout=30_000).json_value()
            assert traces["#2 live-probe"] == 5
            # another process logs new steps: each shows up in the page without a reload
            for step in range(5, 10):
                time.sleep(0.37 * step % 1.0)  # commit at different phases of the refresh period
                writer.stdin.write("\n")
                writer.stdin.flush()
                committed = float(writer.stdout.readline())
                page.wait_for_function(f"() => ({TRACES})()['#2 live-probe'] === {step + 1}", timeout=10_000, polling=20)
                latencies.append(time.time() - committed)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            # a writer that dies without finishing reads "interrupted"
            writer.kill()
            writer.wait()  # reaped: a zombie would still count as alive
            page.locator(".tabulator-row", has_text="live-probe").filter(has_text="interrupted").first.wait_for(timeout=20_000)
            browser.close()
    finally:
        writer.kill()
    foreign = [u for u in requests if not u.startswith(url.rsplit("/", 1)[0]) and not u.startswith(("data:", "blob:", "ws://127.0.0.1"))]
    assert not foreign, foreign  # nothing from a CDN: the dashboard works offline
    (ARTIFACTS / "dashboard_latency.json").write_text(json.dumps({
        "latencies_s": latencies, "median_s": float(np.median(latencies)), "max_s": max(latencies),
        "refresh_period_s": 1.0, "browser": "chromium (headless)", "cpus": os.cpu_count(),
    }, indent=1))
    print(f"dashboard refresh latency: median {np.median(latencies):.2f} s, max {max(latencies):.2f} s over {len(latencies)} steps")
    assert max(latencies) < 10

