"""A viewer sees runs but no "Run now", no job editing, no IDE; the API refuses anyway."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import VIEWER_EMAIL, VIEWER_PASSWORD, Kiln, login, screenshot

TRIGGER = """async (jobId) => {
  const res = await fetch('/graphql', { method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      query: 'mutation($j: ID!) { triggerJobRun(jobId: $j) { run { id } errors { code } } }',
      variables: { j: jobId } }) });
  return res.json();
}"""
COUNT = "{ runs(first: 1) { totalCount } }"


def test_viewer_has_no_run_now_and_the_api_refuses(kiln: Kiln, open_page: Any) -> None:
    page = open_page()
    login(page, kiln, VIEWER_EMAIL, VIEWER_PASSWORD)
    assert "viewer" in page.inner_text("#topbar")
    assert page.locator("nav a[href='/develop']").count() == 0
    page.wait_for_selector("table.jobs")
    page.locator("table.jobs a", has_text="build").click()
    page.wait_for_selector("#job-settings")
    assert page.locator("#run-now").count() == 0
    assert page.locator("#edit-job").count() == 0
    screenshot(page, "job-as-viewer")

    page.goto(kiln.url + "/develop")
    page.wait_for_selector("main .notice:has-text('may not develop')")

    before = kiln.graphql(COUNT, token=kiln.demo["token"])["data"]["runs"]["totalCount"]
    answer = page.evaluate(TRIGGER, kiln.demo["job_id"])
    payload = answer["data"]["triggerJobRun"]
    assert payload["run"] is None
    assert payload["errors"][0]["code"] == "forbidden"
    after = kiln.graphql(COUNT, token=kiln.demo["token"])["data"]["runs"]["totalCount"]
    assert after == before
