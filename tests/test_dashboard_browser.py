"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

The dashboard is served on a free local port over a fresh store; a writer process (another
process, as a notebook would be) logs metric steps, and the page must show each new step without
a reload within a few seconds. Measured: the time from a metric row's commit to its point in the
page's curve. A killed writer must then read "interrupted". Nothing may be fetched from outside the
server (no CDN). Then, as a W&B or MLflow user compares runs: filter by kind -> the curves follow,
identical runs stay distinguishable; choose a baseline; a sweep's parallel coordinates; a failed
run's page by its address; a reload leaves no traceback in the server's log.
Artifacts: test-artifacts/dashboard*.png, test-artifacts/dashboard_latency.json.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # skipped without chromium (conftest)

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
    with store.start_run(
        "probe", "baseline", {"lr": 1e-3}
    ) as run:  # a finished run with an artifact, to compare against
        for step in range(5):
            run.log({"loss": 4.0 / (step + 1)}, step=step)
        run.log_artifact("similarity.npy", np.eye(6) * 0.5 + 0.5)
    port = free_port(preferred=0)
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path)}
    url = f"http://127.0.0.1:{port}/dashboard_app"
    server, html = start_server(
        [sys.executable, "-m", "workbench", "dashboard", "--port", str(port)], url, env, "the dashboard"
    )
    output = []

    def stop() -> str:
        """Stop the server (once) and return everything it printed."""
        if not output:
            server.send_signal(signal.SIGINT)
            try:
                output.append(server.communicate(timeout=20)[0])
            except subprocess.TimeoutExpired:
                server.kill()
                output.append(server.communicate()[0])
        return output[0]

    yield url, html, store, stop
    stop()


def test_dashboard_shows_runs_and_curves_grow_live(dashboard, chromium, artifacts):
    playwright = pytest.importorskip("playwright.sync_api")
    url, html, store, _ = dashboard
    assert "cdn." not in html and "https://" not in html.replace(
        "https://github.com", ""
    )  # scripts and styles are local

    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    for _ in range(5):
        writer.stdout.readline()
    requests, latencies = [], []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url)
            # the runs table lists both runs; the curves show both runs' five logged steps
            page.locator(".tabulator-row", has_text="live-probe").first.wait_for(timeout=60_000)
            page.locator(".tabulator-row", has_text="baseline").first.wait_for(timeout=30_000)
            traces = page.wait_for_function(
                f"() => {{ const t = ({TRACES})(); return t['#2 live-probe'] === 5 && t['#1 baseline'] === 5 && t; }}",
                timeout=30_000,
            ).json_value()
            assert traces["#2 live-probe"] == 5
            # another process logs new steps: each shows up in the page without a reload
            for step in range(5, 10):
                time.sleep(0.37 * step % 1.0)  # commit at different phases of the refresh period
                writer.stdin.write("\n")
                writer.stdin.flush()
                committed = float(writer.stdout.readline())
                page.wait_for_function(
                    f"() => ({TRACES})()['#2 live-probe'] === {step + 1}", timeout=30_000, polling=20
                )
                latencies.append(time.time() - committed)
            page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
            # a writer that dies without finishing reads "interrupted"
            writer.kill()
            writer.wait()  # reaped: a zombie would still count as alive
            page.locator(".tabulator-row", has_text="live-probe").filter(has_text="interrupted").first.wait_for(
                timeout=30_000
            )
            browser.close()
    finally:
        writer.kill()
    foreign = [
        u
        for u in requests
        if not u.startswith(url.rsplit("/", 1)[0]) and not u.startswith(("data:", "blob:", "ws://127.0.0.1"))
    ]
    assert not foreign, foreign  # nothing from a CDN: the dashboard works offline
    (artifacts / "dashboard_latency.json").write_text(
        json.dumps(
            {
                "latencies_s": latencies,
                "median_s": float(np.median(latencies)),
                "max_s": max(latencies),
                "refresh_period_s": 1.0,
                "browser": "chromium (headless)",
                "cpus": os.cpu_count(),
            },
            indent=1,
        )
    )
    print(
        f"dashboard refresh latency: median {np.median(latencies):.2f} s, max {max(latencies):.2f} s "
        f"over {len(latencies)} steps"
    )
    assert max(latencies) < 10


# -- comparing runs as a W&B or MLflow user would ------------------------------------------------------

ECHO = ("echoatt", "ppl")  # a kind and its declared headline metric


def populate(store) -> dict[str, int]:
    """An EchoAtt-like experiment (a reference teacher, two students logging identical numbers, one
    failed arm), a run of another kind, and a CLI sweep with its bookkeeping runs."""
    from workbench.runs import RunKind

    echo, tour = RunKind(*ECHO, goal="min"), RunKind("tour", "entropy", goal="max")
    ids = {}

    def run(kind, name, params, losses, summary, sweep=None, reference=False, error=None):
        handle = store.start_run(kind, name, params, sweep=sweep)
        for step, loss in enumerate(losses):
            handle.log({"loss": loss}, step=10 * step)
        if reference:
            handle.mark_reference()
        handle.finish("failed" if error else "finished", summary=summary, error=error)
        ids[name] = handle.id

    curve = [4.0, 3.1, 2.7, 2.5, 2.4]
    run(tour, "tour layer 5", {"layer": 5}, [5.0, 4.0, 3.6], {"entropy": 2.1})
    run(
        echo,
        "teacher",
        {"arm": "teacher"},
        [2.3] * 5,
        {"ppl": 15.6, "world_size": 1},
        "echoatt-smoke-1",
        reference=True,
    )
    run(echo, "student seed 0", {"arm": "student", "seed": 0}, curve, {"ppl": 19.2, "world_size": 1}, "echoatt-smoke-1")
    run(echo, "student seed 1", {"arm": "student", "seed": 1}, curve, {"ppl": 19.2, "world_size": 1}, "echoatt-smoke-1")
    executed = store.path.parent / "notebooks" / "02_echoatt-smoke.ipynb"  # as `workbench run` leaves it
    executed.parent.mkdir(exist_ok=True)
    executed.write_text("{}")
    executed.with_suffix(".html").write_text("<html><body>the executed notebook, as HTML</body></html>")
    os.environ["WORKBENCH_NOTEBOOK"] = str(executed)  # what run_notebook tells the kernel: its runs link to the copy
    try:
        run(
            echo,
            "student n=12",
            {"arm": "student", "seed": 0},
            [c + 0.3 for c in curve],
            {"ppl": 23.0},
            "echoatt-smoke-1",
            error="IndexError: list index out of range (cell 7)",
        )
    finally:
        del os.environ["WORKBENCH_NOTEBOOK"]
    sweep = "00_tour-20261130-120000-ab12"
    store.start_run("sweep", "00_tour x 3 points", {"axes": {"layer": [5, 15, 25]}}, sweep=sweep).finish()
    for index, layer in enumerate([5, 15, 25]):
        point = store.start_run("sweep_point", f"00_tour layer={layer}", {"layer": layer}, sweep=f"{sweep}/{index}")
        inner = store.start_run(tour, "tour", {"layer": layer}, sweep=f"{sweep}/{index}")
        inner.log({"entropy": 1.0 + 0.05 * layer}, step=0)
        inner.finish(summary={"entropy": 1.0 + 0.05 * layer})
        point.finish(summary={"entropy": 1.0 + 0.05 * layer, "load_s": 3.2})
    return ids


PLOTS = """
() => {
  const plots = [];
  const walk = root => root.querySelectorAll('*').forEach(el => {
    if (el.classList && el.classList.contains('js-plotly-plot')) plots.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return plots.filter(p => p.offsetParent !== null).map(p => (p.data || []).map(t => ({
    type: t.type || 'scatter', name: t.name || '', dash: (t.line || {}).dash || '', color: (t.line || {}).color || '',
    labels: (t.dimensions || []).map(d => d.label)})));
}
"""


# Background colours of the visible compare table's cells, counted: {css colour: cells}.
COLOURED = """
() => {
  const cells = [];
  const walk = root => root.querySelectorAll('*').forEach(el => {
    if (el.tagName === 'TD' && el.closest('table.frame') && el.offsetParent !== null) cells.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  const counts = {};
  cells.forEach(td => { const c = getComputedStyle(td).backgroundColor; counts[c] = (counts[c] || 0) + 1; });
  return counts;
}
"""


def test_filter_baseline_sweep_and_run_page_in_the_browser(dashboard, chromium, artifacts):
    playwright = pytest.importorskip("playwright.sync_api")
    url, _, store, stop = dashboard
    ids = populate(store)
    students = {f"#{ids[n]} {n}" for n in ("student seed 0", "student seed 1", "student n=12")}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url)
        page.locator(".tabulator-row", has_text="student n=12").first.wait_for(timeout=60_000)
        runs_table = page.locator(".tabulator").first
        assert (
            runs_table.locator(".tabulator-row", has_text="sweep_point").count() == 0
        )  # bookkeeping hidden by default
        assert (
            page.locator(".tabulator-col-title", has_text="params.arm").count()
            and page.locator(".tabulator-col-title", has_text="metrics.ppl").count()
        )

        # filter kind = echoatt: the curves show exactly its four runs, the two identical students in different dashes
        choices = page.locator(".bk-input-group", has_text="kind").locator("input.choices__input--cloned").first
        choices.click()
        choices.type("echoatt")
        page.keyboard.press("Enter")
        curves = page.wait_for_function(
            f"() => {{ const t = ({PLOTS})()[0] || []; "
            "return t.length === 4 && !t.some(x => x.name.includes('tour')) && t; }",
            timeout=30_000,
        ).json_value()
        assert {t["name"] for t in curves} == students | {f"#{ids['teacher']} teacher"}
        twins = [
            t
            for t in curves
            if t["name"].startswith(tuple(f"#{ids[n]} " for n in ("student seed 0", "student seed 1")))
        ]
        assert len({(t["dash"], t["color"]) for t in twins}) == 2  # identical numbers, still two distinguishable lines
        page.keyboard.press("Escape")  # close the kind menu
        page.screenshot(path=str(artifacts / "dashboard_filtered_curves.png"), full_page=True)
        # grouped by everything but the seed: the two students are one line in a min-max band
        page.locator(".bk-input-group", has_text="group").locator("select").select_option(
            label="runs that differ only in the seed"
        )
        grouped = page.wait_for_function(
            f"() => {{ const t = ({PLOTS})()[0] || []; return t.some(x => x.name.includes('(3 runs)')) && t; }}",
            timeout=30_000,
        ).json_value()
        assert {t["name"] for t in grouped} >= {"arm=student (3 runs)", "arm=teacher (1 runs)"}  # seeds pooled
        page.screenshot(path=str(artifacts / "dashboard_grouped_curves.png"), full_page=True)

        # compare: the teacher (the experiment's reference) is the default baseline; the user picks another
        page.locator(".bk-tab", has_text="Compare").click()
        page.locator("table.frame td", has_text=f"#{ids['teacher']} teacher (baseline)").first.wait_for(
            timeout=30_000
        )
        colours = page.evaluate(COLOURED)  # the students are worse than the teacher: red cells
        assert colours.get("rgb(248, 215, 215)", 0) >= 3, colours
        page.locator(".bk-input-group", has_text="baseline run").locator("select").select_option(
            label=f"#{ids['student seed 0']} student seed 0"
        )
        page.locator(
            "table.frame td", has_text=f"#{ids['student seed 0']} student seed 0 (baseline)"
        ).first.wait_for(timeout=30_000)
        assert page.get_by_text("world_size").count() == 0  # a setting, not a metric
        page.screenshot(path=str(artifacts / "dashboard_compare_baseline.png"), full_page=True)

        # sweeps: the newest sweep selected, its metric the kind's headline, parallel coordinates drawn
        page.locator(".bk-tab", has_text="Sweeps").click()
        sweep = page.wait_for_function(
            f"() => ({PLOTS})().find(p => p.length && p[0].type === 'parcoords')", timeout=30_000
        ).json_value()
        assert sweep[0]["labels"] == ["arm", "seed", "ppl"]
        page.screenshot(path=str(artifacts / "dashboard_sweep.png"), full_page=True)
        page.locator(".choices__button").first.click()  # the kind filter off: the CLI sweep is the newest
        page.get_by_text("show sweep bookkeeping runs").click()  # its points, with their notebooks' numbers
        page.locator(".bk-input-group").filter(has=page.locator("label", has_text=re.compile("^sweep$"))).locator(
            "select"
        ).select_option(label="00_tour-20261130-120000-ab12")
        page.wait_for_function(
            f"() => ({PLOTS})().some(p => p.length && p[0].type === 'parcoords' "
            "&& p[0].labels.join() === 'layer,entropy')",
            timeout=30_000,
        )

        # the failed run's page, by address: its error, its parameters, where and with what it ran
        page.goto(f"{url}?run={ids['student n=12']}")
        page.get_by_text("IndexError: list index out of range (cell 7)").first.wait_for(timeout=60_000)
        for text in ("git commit", "device", "version of torch", "executed notebook: 02_echoatt-smoke.ipynb"):
            assert page.get_by_text(text).count(), text
        page.screenshot(path=str(artifacts / "dashboard_run_page.png"), full_page=True)
        link = page.get_by_text("HTML copy: 02_echoatt-smoke.html").first.get_attribute("href")
        assert link == "/notebooks/02_echoatt-smoke.html"
        copy = page.request.get(url.rsplit("/", 1)[0] + link)  # served by the dashboard itself
        assert copy.ok and "the executed notebook, as HTML" in copy.text()
        page.reload()  # a reload while the page updates itself every second: no traceback in the server's log
        page.get_by_text("IndexError: list index out of range (cell 7)").first.wait_for(timeout=60_000)
        page.close()
        browser.close()
    time.sleep(2)  # the server notices the closed connections
    printed = stop()
    assert "WebSocketClosedError" not in printed and "Traceback" not in printed, printed[-3000:]
