"""The virtualized log view holds 100,000 lines with a few dozen DOM rows and scrolls smoothly."""

from __future__ import annotations

from typing import Any

from tests.console.conftest import Kiln, login_demo

BIG_LOG = """async () => {
  const { LogView } = await import('/static/js/logview.js');
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const view = new LogView({ label: 'big log' });
  document.querySelector('#main').append(view.wrap);
  const t0 = performance.now();
  for (let b = 0; b < 100; b++) {           // as a stream delivers it: 100 batches of 1,000
    const lines = [];
    for (let i = 1; i <= 1000; i++) {
      const seq = b * 1000 + i;
      lines.push({ seq, step: 1 + (seq % 2), ts: '2026-01-01T00:00:00Z',
                   level: seq % 100 === 0 ? 'warn' : 'info',
                   message: `line ${seq} of the big log` });
    }
    view.append(lines);
  }
  const appendMs = performance.now() - t0;
  await frame(); await frame();
  const height = view.spacer.getBoundingClientRect().height;
  const atEnd = [...view.rowsEl.children].map((r) => Number(r.dataset.seq));
  view.el.scrollTop = 50000 * view.lineHeight;
  await frame(); await frame();
  const middle = [...view.rowsEl.children].map((r) => Number(r.dataset.seq));
  const t1 = performance.now();
  let worst = 0;
  for (let k = 0; k < 60; k++) {
    const f0 = performance.now();
    view.el.scrollTop += 700;
    await frame();
    worst = Math.max(worst, performance.now() - f0);
  }
  const scrollMs = performance.now() - t1;
  const t2 = performance.now();
  view.setFilter({ text: 'line 9999 ' });
  const filterMs = performance.now() - t2;
  const matches = view.shownCount;
  view.setFilter({ text: '', minLevel: 2 });
  const warnings = view.shownCount;
  const rows = document.querySelectorAll('.logline').length;
  return { appendMs, atEnd, middle, scrollMs, worst, filterMs, matches, warnings, rows,
           count: view.lines.length, height };
}"""


def test_hundred_thousand_lines_stay_smooth(kiln: Kiln, open_page: Any) -> None:
    page = open_page()
    login_demo(page, kiln, "/runs")
    page.wait_for_selector("table.runs")
    r = page.evaluate(BIG_LOG)
    assert r["count"] == 100_000
    assert r["height"] >= 100_000 * 17
    assert len(r["atEnd"]) < 150 and r["atEnd"][-1] == 100_000  # follows the tail
    assert len(r["middle"]) < 150 and min(r["middle"]) <= 50_000 <= max(r["middle"])
    assert r["rows"] < 150  # the DOM holds what is in sight, not the log
    assert r["appendMs"] < 3000, r
    assert r["filterMs"] < 1500, r
    assert r["worst"] < 250 and r["scrollMs"] / 60 < 60, r  # frames while scrolling
    assert r["matches"] == 1  # "line 9999 " (with the space) is one line
    assert r["warnings"] == 1000
