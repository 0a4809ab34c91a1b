"""Account and project switchers: what a member sees follows the account and project picked."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Kiln, login, screenshot
from tests.kiln_process import run_kiln

EMAIL = "multi@example.com"
PASSWORD = "multi-password-123"
ADD = """mutation($email: String!) { addMember(input: { email: $email, role: developer }) {
  membership { id } errors { code message } } }"""
PROJECT = """mutation { createProject(input: {
  name: "empty", repositoryUrl: "https://git.example.invalid/empty.git" }) {
  project { id } errors { code message } } }"""


def test_switch_account_and_project(kiln: Kiln, open_page: Any) -> None:
    for args in (
        ["admin", "create-account", "second"],
        [
            "admin",
            "create-user",
            EMAIL,
            "--account",
            "second",
            "--role",
            "viewer",
            "--password-stdin",
        ],
    ):
        out = run_kiln(args, env=kiln.env, input=PASSWORD + "\n")
        assert out.returncode == 0, out.stderr
    token = kiln.demo["token"]
    assert kiln.graphql(ADD, {"email": EMAIL}, token=token)["data"]["addMember"]["errors"] == []
    made = kiln.graphql(PROJECT, token=token)["data"]["createProject"]
    assert made["errors"] == [], made

    page = open_page()
    login(page, kiln, EMAIL, PASSWORD)
    page.wait_for_selector("#account-switcher")
    options = page.locator("#account-switcher option").all_inner_texts()
    assert sorted(options) == ["demo (developer)", "second (viewer)"]

    page.select_option("#account-switcher", label="demo (developer)")
    page.wait_for_selector("#topbar .who:has-text('developer')")
    page.wait_for_selector("table.jobs a:has-text('build')")
    assert page.locator("nav a[href='/develop']").count() == 1
    projects = page.locator("#project-switcher option").all_inner_texts()
    assert projects == ["shop", "empty"]

    page.select_option("#project-switcher", label="empty")
    page.wait_for_selector("main .empty:has-text('No jobs in empty')")
    page.click("nav a[href='/runs']")
    page.wait_for_selector("main p:has-text('0 runs in empty')")
    page.select_option("#project-switcher", label="shop")
    page.wait_for_selector("table.runs")
    screenshot(page, "runs-multi-account")

    page.select_option("#account-switcher", label="second (viewer)")
    page.wait_for_selector("#topbar .who:has-text('viewer')")
    page.wait_for_selector("main p:has-text('0 runs')")
    assert page.locator("nav a[href='/develop']").count() == 0
    page.click("nav a[href='/jobs']")
    page.wait_for_selector("main .empty:has-text('No projects yet')")

    # the choice survives a reload
    page.reload()
    page.wait_for_selector("#topbar .who:has-text('viewer')")

    page.click("#logout")
    page.wait_for_selector("#email")
    assert page.url.endswith("/login")
