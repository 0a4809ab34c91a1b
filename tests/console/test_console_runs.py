"""Log in, trigger the demo job, watch its log stream live before the run finishes, see success."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Kiln, login_demo, screenshot

# Records, in the page, what the status badge said when the first log row was rendered.
WATCH_FIRST_LINE = """() => {
  window.__firstLine = null;
  const obs = new MutationObserver(() => {
    if (window.__firstLine || !document.querySelector('.logline')) return;
    const badge = document.querySelector('#run-status [data-status]');
    window.__firstLine = { status: badge ? badge.dataset.status : null,
                           seq: document.querySelector('.logline').dataset.seq };
    obs.disconnect();
  });
  obs.observe(document.body, { childList: true, subtree: true });
}"""


def test_trigger_and_watch_the_demo_job(kiln: Kiln, open_page: Any) -> None:
    page = open_page()
    login_demo(page, kiln)
    page.wait_for_selector("table.jobs")
    row = page.locator("table.jobs tbody tr", has_text="build")
    assert "No schedule" in row.inner_text()
    screenshot(page, "jobs")

    # a second browser watches the runs list: the new run must appear there live
    watcher = open_page()
    login_demo(watcher, kiln, "/runs")
    watcher.wait_for_selector("table.runs")

    row.locator("a", has_text="build").click()
    page.wait_for_selector("#run-now")
    page.wait_for_selector("#job-settings")
    screenshot(page, "job")
    page.evaluate(WATCH_FIRST_LINE)
    page.click("#run-now")
    page.wait_for_url("**/runs/*")
    run_id = page.url.rstrip("/").rsplit("/", 1)[1]

    page.wait_for_selector(".logline", timeout=120_000)
    first = page.evaluate("() => window.__firstLine")
    assert first is not None
    assert first["status"] in ("queued", "starting", "running"), first  # lines before the end
    page.wait_for_selector("#run-status [data-status=success]", timeout=240_000)
    page.wait_for_selector("#log-state:has-text('Complete')", timeout=60_000)

    steps = page.locator(".steps li button[data-step]:not([data-step=all])")
    assert steps.count() == 2
    for i in range(2):
        assert steps.nth(i).locator("[data-status=success]").count() == 1
    page.wait_for_selector("#artifacts li code:text-is('manifest.json')")
    total = int(page.get_attribute(".logview", "data-count") or 0)
    assert total > 20
    screenshot(page, "run")

    # one step's log, search, level filter
    steps.nth(1).click()
    page.wait_for_selector(".steps button[data-step='2'][aria-pressed=true]")
    page.fill("#log-search", "PASS")
    page.wait_for_selector(".logline mark")
    shown = int(page.get_attribute(".logview", "data-count") or 0)
    assert 0 < shown < total
    page.select_option("#log-level", "3")
    page.wait_for_selector(".logview[data-count='0']")
    page.select_option("#log-level", "0")
    page.fill("#log-search", "")
    page.click(".steps button[data-step=all]")
    page.wait_for_selector(f".logview[data-count='{total}']")

    # the download link serves the whole log with the browser's session cookie
    href = page.get_attribute("#download-log", "href")
    assert href == f"/runs/{run_id}/logs.txt"
    resp = page.request.get(kiln.url + href)
    assert resp.status == 200 and "PASS" in resp.text()

    # the watcher saw the run appear and finish without reloading
    watcher.wait_for_selector(f"tr[data-run='{run_id}'] [data-status=success]", timeout=60_000)
    screenshot(watcher, "runs")
    # and the jobs list shows it as the last run
    page.click("nav a[href='/jobs']")
    page.wait_for_selector("table.jobs .last-run [data-status=success]")
