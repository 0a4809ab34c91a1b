"""Job settings (edit steps, cron, timeout), cancel, and rerun from failure in the browser."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Kiln, login_demo, screenshot

CREATE_JOB = """mutation($env: ID!) { createJob(input: { environmentId: $env, name: "broken",
  steps: ["dbt run-operation no_such_macro"] }) {
  job { id databaseId } errors { code message } } }"""
JOB = "query($id: ID!) { job(id: $id) { steps timeoutSeconds schedule { cron timezone } } }"


def edit(page: Any, **fields: str) -> None:
    page.click("#edit-job")
    page.wait_for_selector("#job-settings-form")
    for name, value in fields.items():
        page.fill(f"#job-{name}", value)


def test_edit_settings_as_an_owner(kiln: Kiln, open_page: Any) -> None:
    page = open_page()
    login_demo(page, kiln, f"/jobs/{kiln.demo['job_pk']}")
    page.wait_for_selector("#job-settings")

    # a bad cron is refused with the API's message, nothing changes
    edit(page, cron="not a cron")
    page.click("#job-settings-form button[type=submit]")
    page.wait_for_selector("#job-settings-form .error:not(:empty)")

    page.fill("#job-cron", "0 6 * * 1-5")
    page.wait_for_selector("#job-settings-form .hint:has-text('At 06:00 on weekdays')")
    page.fill("#job-timeout", "900")
    page.fill("#job-steps", "dbt build\ndbt test")
    page.click("#job-settings-form button[type=submit]")
    page.wait_for_selector("#job-settings dd:has-text('At 06:00 on weekdays (UTC)')")
    assert "15m 0s" in page.inner_text("#job-settings")
    assert "dbt test" in page.inner_text("#job-settings")
    screenshot(page, "job-settings")
    job = kiln.graphql(JOB, {"id": kiln.demo["job_id"]}, token=kiln.demo["token"])["data"]["job"]
    assert job == {
        "steps": ["dbt build", "dbt test"],
        "timeoutSeconds": 900,
        "schedule": {"cron": "0 6 * * 1-5", "timezone": "UTC"},
    }
    page.click("nav a[href='/jobs']")
    page.wait_for_selector("table.jobs td:has-text('At 06:00 on weekdays')")

    # and back as it was
    page.goto(f"{kiln.url}/jobs/{kiln.demo['job_pk']}")
    page.wait_for_selector("#job-settings")
    edit(page, cron="", timeout="0", steps="dbt build")
    page.click("#job-settings-form button[type=submit]")
    page.wait_for_selector("#job-settings dd:has-text('No schedule')")
    job = kiln.graphql(JOB, {"id": kiln.demo["job_id"]}, token=kiln.demo["token"])["data"]["job"]
    assert job["schedule"]["cron"] is None and job["steps"] == ["dbt build"]


def test_cancel_a_running_run(kiln: Kiln, open_page: Any) -> None:
    page = open_page()
    login_demo(page, kiln, f"/jobs/{kiln.demo['job_pk']}")
    page.click("#run-now")
    page.wait_for_url("**/runs/*")
    page.wait_for_selector("#run-status [data-status=running]", timeout=120_000)
    page.click("#cancel-run")
    page.wait_for_selector("#run-status [data-status=cancelled]", timeout=120_000)
    page.wait_for_selector("#run-actions")
    assert page.locator("#cancel-run").count() == 0


def test_rerun_from_failure(kiln: Kiln, open_page: Any) -> None:
    made = kiln.graphql(CREATE_JOB, {"env": kiln.demo["environment_id"]}, token=kiln.demo["token"])[
        "data"
    ]["createJob"]
    assert made["errors"] == []
    page = open_page()
    login_demo(page, kiln, f"/jobs/{made['job']['databaseId']}")
    page.click("#run-now")
    page.wait_for_url("**/runs/*")
    failed = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#run-status [data-status=error]", timeout=180_000)
    page.wait_for_selector("#run-message:has-text('no_such_macro')")
    screenshot(page, "run-error")
    page.click("#rerun")
    page.wait_for_url(lambda url: not url.endswith(f"/runs/{failed}"))
    page.wait_for_selector(".facts dd:has-text('Rerun from failure')")
    page.wait_for_selector(".facts dd:has-text('retry')")
    page.wait_for_selector("#run-status [data-status=error]", timeout=180_000)
