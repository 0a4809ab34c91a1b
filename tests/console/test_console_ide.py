"""The browser IDE: start the session (pending → ready, live), edit a model, compile, run
`dbt build` from the command bar, preview rows, see lineage, commit; then stop."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Kiln, login_demo, screenshot

MODEL = "models/staging/stg_customers.sql"
# Records every state the session indicator shows.
WATCH_STATES = """() => {
  window.__ideStates = [];
  const seen = () => {
    const el = document.querySelector('#ide-state');
    const st = el && el.dataset.state;
    if (st && window.__ideStates.at(-1) !== st) window.__ideStates.push(st);
  };
  new MutationObserver(seen).observe(document.body,
    { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
  seen();
}"""


# Records the command bar's state when dbt's first output line is rendered.
WATCH_OUTPUT = """() => {
  window.__firstOutput = null;
  const obs = new MutationObserver(() => {
    const row = [...document.querySelectorAll('#panel-command .logline')]
      .find((r) => Number(r.dataset.seq) > 1 && !r.textContent.includes('$ dbt'));
    if (!row || window.__firstOutput) return;
    window.__firstOutput = { state: document.querySelector('#command-state').dataset.state,
                             cancel: !document.querySelector('#command-cancel').disabled };
    obs.disconnect();
  });
  obs.observe(document.querySelector('#panel-command'), { childList: true, subtree: true });
}"""


def test_develop_in_the_browser(kiln: Kiln, open_page: Any) -> None:
    page = open_page((1500, 950))
    login_demo(page, kiln)
    page.click("nav a[href='/develop']")
    page.wait_for_selector("#ide-start")
    assert page.get_attribute("#ide-state", "data-state") == "none"
    page.evaluate(WATCH_STATES)
    page.click("#ide-start")
    page.wait_for_selector("#ide-state[data-state=ready]", timeout=120_000)
    states = page.evaluate("() => window.__ideStates")
    assert states[:2] == ["none", "pending"] and states[-1] == "ready", states

    # the file tree, and a model opened in a tab
    page.wait_for_selector(".tree button.dir[data-path='models']")
    page.click(".tree button.dir[data-path='models/staging']")
    page.click(f".tree button.file[data-path='{MODEL}']")
    page.wait_for_selector(f".tabs [role=tab][data-path='{MODEL}'][aria-selected=true]")
    assert "select" in page.input_value("#editor")

    # edit with the keyboard (auto-indent, Tab) and save with Ctrl-S
    page.click("#editor")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n-- reviewed in the Kiln console\n")
    page.wait_for_selector(".tab.dirty")
    page.keyboard.press("Tab")  # Tab indents...
    assert page.input_value("#editor").endswith("console\n    ")
    page.keyboard.press("Shift+Tab")  # ...Shift-Tab outdents...
    assert page.input_value("#editor").endswith("console\n")
    page.keyboard.press("Escape")  # ...and Escape, Tab leaves the editor
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "save"
    page.click("#editor")
    page.keyboard.press("Control+s")
    page.wait_for_selector("#editor-status:has-text('Saved')")
    page.wait_for_selector(".tab:not(.dirty)")
    page.wait_for_selector("#git-files li:has-text('stg_customers.sql')")

    # compile: the compiled SQL has no Jinja left
    page.click("#compile")
    page.wait_for_selector("#compiled-sql:has-text('reviewed in the Kiln console')", timeout=120e3)
    compiled = page.inner_text("#compiled-sql")
    assert "{{" not in compiled and "select" in compiled.lower()

    # dbt build from the command bar, output streamed
    page.click("#tab-command")
    page.fill("#command", "build")
    page.evaluate(WATCH_OUTPUT)
    page.click("#command-run")
    page.wait_for_selector("#command-cancel:not([disabled])")
    page.wait_for_selector("#command-state[data-state=success]", timeout=300_000)
    first = page.evaluate("() => window.__firstOutput")
    assert first == {"state": "running", "cancel": True}, first  # streamed, not at the end
    assert page.locator("#panel-command .logline:has-text('Completed successfully')").count() == 1

    # preview the model's rows, with a row limit
    page.select_option("#preview-limit", "10")
    page.click("#preview-run")
    page.wait_for_selector("#preview-results tbody tr", timeout=120_000)
    assert page.locator("#preview-results tbody tr").count() == 10
    assert "customer_id" in page.inner_text("#preview-results thead")
    page.wait_for_selector("#lineage svg .node.current")
    assert page.locator("#lineage svg .node").count() >= 3
    screenshot(page, "ide")

    # a command can be cancelled while it runs
    page.click("#tab-command")
    page.fill("#command", "build")
    page.click("#command-run")
    page.wait_for_selector("#command-cancel:not([disabled])")
    page.wait_for_selector("#panel-command .logview:not([data-count='0']):not([data-count='1'])")
    page.click("#command-cancel")
    page.wait_for_selector("#command-state[data-state=cancelled]", timeout=60_000)

    # the diff, then commit the change
    page.click("#git-diff-btn")
    page.wait_for_selector("#git-diff:has-text('+-- reviewed in the Kiln console')")
    page.fill("#commit-message", "Review stg_customers in the console")
    page.click("#git-commit")
    page.wait_for_selector("#git-output:has-text('Committed')")
    page.wait_for_selector("#git-files li:has-text('No changes.')")

    # leaving and coming back resumes the ready session at once
    page.click("nav a[href='/jobs']")
    page.wait_for_selector("table.jobs")
    page.click("nav a[href='/develop']")
    page.wait_for_selector("#ide-state[data-state=ready]")
    page.wait_for_selector("#ide-stop")
    assert page.locator("#ide-start").is_hidden()

    page.click("#ide-stop")
    page.wait_for_selector("#ide-state[data-state=stopped]", timeout=60_000)
    page.wait_for_selector("#ide-start")
