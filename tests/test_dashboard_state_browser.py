"""The dashboard's views never disagree, in a real browser (Debian's chromium, headless, Playwright).

Three kinds of runs (two experiments with sweep ids, a few loose runs) and a writer process that
keeps logging to a running run, so the page is refreshed every second while the user acts. The
test changes the kind filter, the filter expression and the ticks many times in a row, some of
them in bursts faster than a refresh, and reloads the page; after every step it waits until the
table's marked rows ("●": the runs every tab draws) are the runs `state.derive` names for that
filter and those ticks, and then that Curves' legend and Compare's rows name exactly those runs.
The page may log no error to its console. Screenshots of every tab: test-artifacts/dashboard_tab_*.png.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from test_dashboard import stored_card

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # skipped without chromium (conftest)

WRITER = textwrap.dedent(
    """
    import sys, time
    from workbench.runs import RunStore
    run = RunStore(sys.argv[1]).start_run("diffusion", "live mdm", {"lr": 1e-3, "steps": 64})
    print("started", flush=True)
    step = 0
    while True:
        run.log({"loss": 5.0 / (step + 1), "ppl": 40.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(0.3)
    """
)

# What the page shows, read through Panel's shadow roots: the runs table's rows, the legend of the
# visible curves figure, the run column of the visible compare table.
READ = r"""
() => {
  const all = [];
  const walk = root => root.querySelectorAll('*').forEach(el => {
      all.push(el); if (el.shadowRoot) walk(el.shadowRoot); });
  walk(document);
  const tables = all.filter(el => el.classList && el.classList.contains('tabulator'));
  const cell = (row, field) => { const c = row.querySelector(`.tabulator-cell[tabulator-field="${field}"]`);
                                 return c ? c.textContent.trim() : null; };
  const rows = tables.length ? [...tables[0].querySelectorAll('.tabulator-row')].map(r => ({
      id: cell(r, 'id'), name: cell(r, 'name'), kind: cell(r, 'kind'), view: cell(r, 'view'),
      ticked: cell(r, 'tick') === '☑'})) : [];
  const visible = el => el.offsetParent !== null;
  const plots = all.filter(el => el.classList && el.classList.contains('js-plotly-plot') && visible(el));
  const legends = plots.map(p => {
      const names = [];
      (p.data || []).forEach(t => {
          if (t.type === 'bar') (t.x || []).forEach(x => names.push(String(x)));
          else if (t.showlegend !== false && t.name) names.push(t.name); });
      return [...new Set(names)]; });
  const frames = all.filter(el => el.tagName === 'TABLE' && el.classList.contains('frame') && visible(el));
  const compare = frames.find(t => (t.querySelector('th') || {}).textContent === 'run');
  const runs = compare ? [...compare.querySelectorAll('tbody tr')].map(
      r => r.querySelector('td').textContent.trim().replace(/ \(baseline\)$/, '')) : null;
  return {rows, legend: legends[0] || [], legends, compare: runs};
}
"""


def populate(store) -> dict[str, int]:
    """Two experiments (echoatt with a reference, recursive), three loose diffusion runs."""
    from workbench.runs import RunKind

    ids = {}

    def run(kind, name, params, summary, sweep=None, reference=False):
        handle = store.start_run(kind, name, params, sweep=sweep)
        for step in range(4):
            handle.log({"loss": summary["ppl"] / 10 + 1.0 / (step + 1)}, step=10 * step)
        if reference:
            handle.mark_reference()
        handle.finish(summary=summary)
        ids[name] = handle.id

    echo, recursive = RunKind("echoatt", "ppl"), RunKind("recursive", "ppl")
    run(echo, "teacher", {"arm": "teacher", "lr": 3e-4}, {"ppl": 15.0}, "echoatt-1", reference=True)
    for seed in (0, 1):
        params = {"arm": "student", "seed": seed, "lr": 3e-4}
        run(echo, f"student seed {seed}", params, {"ppl": 19.0 + seed}, "echoatt-1")
    run(echo, "student n=12", {"arm": "student n=12", "lr": 3e-3}, {"ppl": 23.0}, "echoatt-1")
    for loops in (1, 2, 3):
        run(recursive, f"loops {loops}", {"loops": loops, "lr": 1e-3 * loops}, {"ppl": 30.0 - loops}, "recursive-1")
    for lr in (1e-4, 1e-3, 1e-2):
        run("diffusion", f"mdm lr {lr:g}", {"lr": lr, "steps": 64}, {"ppl": 50.0 + 1e3 * lr})
    return ids


def expected(store, kinds=(), expression="", ticks=()) -> set[str]:
    """The runs every view must name: what the dashboard's one source of truth derives."""
    from workbench.dashboard.state import Filter, StoreFeed, derive
    from workbench.dashboard.views import label

    feed = StoreFeed(store)
    feed.poll()
    snapshot = derive(feed, Filter(kinds=tuple(kinds), expression=expression), list(ticks), None)
    runs = feed.runs.set_index("id")
    return {label({"id": i, "name": runs.loc[i, "name"]}) for i in snapshot.chosen}


def test_table_curves_and_compare_name_the_same_runs_through_filters_ticks_and_reloads(
    tmp_path, start_server, chromium, artifacts
):
    playwright = pytest.importorskip("playwright.sync_api")
    from workbench.dashboard import free_port
    from workbench.runs import RunStore

    store = RunStore(tmp_path / "runs.db")
    ids = populate(store)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "started"
    port = free_port(preferred=0)
    url = f"http://127.0.0.1:{port}/dashboard_app"
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path)}
    server, _ = start_server(
        [sys.executable, "-m", "workbench", "dashboard", "--port", str(port)], url, env, "the dashboard"
    )
    errors, steps = [], []

    state = {"kinds": [], "expression": "", "ticks": []}
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"{e.message} at {(e.stack or '').splitlines()[1:4]}"))

            def read() -> dict:
                return page.evaluate(READ)

            def agree(what: str) -> None:
                errors.extend(f"(before: {what})" for _ in range(bool(errors) and not errors[-1].startswith("(")))
                """Wait until the table marks the expected runs, then until Curves and Compare name them too."""
                want = expected(store, state["kinds"], state["expression"], state["ticks"])
                started = time.monotonic()
                for tab, key in (("Curves", "legend"), ("Compare", "compare"), ("Curves", "legend")):
                    page.locator(".bk-tab", has_text=tab).first.click()
                    deadline = time.monotonic() + 30
                    while True:
                        seen = read()
                        marked = {f"#{r['id']} {r['name']}" for r in seen["rows"] if r["view"]}
                        kinds = {r["kind"] for r in seen["rows"]}
                        ok = marked == want and set(seen[key] or []) == want and len(seen[key] or []) == len(want)
                        ok &= not state["kinds"] or kinds <= set(state["kinds"])  # the chip and the rows agree
                        ticked = {int(r["id"]) for r in seen["rows"] if r["ticked"]}
                        ok &= ticked == {int(r["id"]) for r in seen["rows"]} & set(state["ticks"])
                        if ok:
                            break
                        if time.monotonic() > deadline:
                            pytest.fail(
                                f"{what}: views disagree on the {tab} tab: want {sorted(want)}, table marks "
                                f"{sorted(marked)} (kinds {sorted(kinds)}), {key} {seen[key]}"
                            )
                        time.sleep(0.1)
                took = round(time.monotonic() - started, 2)
                steps.append({"step": what, "runs": sorted(want), "agreed_after_s": took})

            def kind(name: str, on: bool) -> None:
                if on:
                    box = page.locator(".bk-input-group", has_text="kind").locator("input.choices__input--cloned").first
                    box.click()
                    box.type(name)
                    page.keyboard.press("Enter")
                    page.keyboard.press("Escape")
                    state["kinds"].append(name)
                else:
                    page.locator(".choices__item", has_text=name).locator(".choices__button").first.click()
                    state["kinds"].remove(name)

            def expression(text: str) -> None:
                box = page.locator(".bk-input-group", has_text="filter expression").locator("input").first
                box.fill(text)
                box.press("Enter")
                state["expression"] = text

            def tick(name: str) -> None:
                run_id = ids[name]
                row = (
                    page.locator(".tabulator")
                    .first.locator(".tabulator-row")
                    .filter(has=page.locator(f'a[href="?run={run_id}"]'))
                )
                row.locator('.tabulator-cell[tabulator-field="tick"]').first.click()
                ticks = state["ticks"]
                ticks.remove(run_id) if run_id in ticks else ticks.append(run_id)

            page.goto(url)
            page.locator(".tabulator-row", has_text="live mdm").first.wait_for(timeout=60_000)
            agree("first view: the newest experiment (the running diffusion runs)")
            kind("echoatt", True)
            agree("kind echoatt")
            tick("student seed 0")
            tick("student n=12")
            agree("two echoatt runs ticked")
            kind("recursive", True)
            agree("kinds echoatt and recursive: the ticks stay")
            kind("echoatt", False)
            agree("kind recursive only: the ticks are hidden, the newest recursive experiment is drawn")
            tick("loops 1")
            tick("loops 3")
            tick("loops 1")  # three ticks faster than a refresh: loops 3 stays
            agree("a burst of ticks")
            kind("recursive", False)
            expression("params.lr >= 1e-3")
            agree("no kind, an expression: the ticks it still shows")
            expression('params.lr >= 1e-3 and kind == "diffusion"')
            tick("mdm lr 0.01")
            kind("diffusion", True)
            agree("a burst: expression, tick, kind")
            page.reload()
            state.update(kinds=[], expression="", ticks=[])
            page.locator(".tabulator-row", has_text="live mdm").first.wait_for(timeout=60_000)
            agree("after a reload: a fresh session")
            for name in ("teacher", "loops 2", "mdm lr 0.0001"):
                tick(name)
            agree("three kinds ticked after the reload")
            expression("metrics.ppl < 25")
            agree("an expression over metrics hides some ticks")
            # model cards land while the page is open: the Frontier tab draws them with notebook 08's figure
            for idea, arm, size, ppl in (
                ("echoatt", "teacher", 1000, 20.0),
                ("echoatt", "student", 600, 24.0),
                ("recursive", "relaxed", 500, 22.0),
            ):
                stored_card(store, idea, arm, size, ppl)
            page.locator(".bk-tab", has_text="Frontier").first.click()
            page.wait_for_function(
                f"() => ({READ})().legends.some(p => ['echoatt', 'recursive', 'Pareto frontier']"
                ".every(n => p.includes(n)))",
                timeout=30_000,
            )
            widths = {}
            for index, tab in enumerate(("Curves", "Compare", "Sweeps", "Run", "Frontier")):
                page.locator(".bk-tab", has_text=tab).first.click()
                time.sleep(1.5)
                page.screenshot(path=str(artifacts / f"dashboard_tab_{index}_{tab.lower()}.png"), full_page=True)
                widths[tab] = page.evaluate("() => document.documentElement.scrollWidth")
            browser.close()
    finally:
        writer.kill()
        server.terminate()
        server.communicate(timeout=30)
    report = {"steps": steps, "console_errors": errors, "page_widths_px": widths, "cpus": os.cpu_count()}
    (artifacts / "dashboard_agreement.json").write_text(json.dumps(report, indent=1))
    assert not errors, errors
    assert max(widths.values()) <= 1366, f"a tab is wider than a 1366 px laptop window: {widths}"
