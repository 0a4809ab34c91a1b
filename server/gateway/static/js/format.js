// Formatting of times, durations, sizes and run statuses.

import { h } from "./dom.js";

export function date(value) {
  if (!value) return "";
  return new Date(value).toLocaleString();
}

export function time(value) {
  if (!value) return "";
  return new Date(value).toLocaleTimeString([], { hour12: false });
}

export function ago(value, now = Date.now()) {
  if (!value) return "never";
  const sec = Math.round((now - new Date(value).getTime()) / 1000);
  const future = sec < 0;
  const a = Math.abs(sec);
  const text = a < 45 ? `${a}s` : a < 5400 ? `${Math.round(a / 60)}m` : a < 129600 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
  return future ? `in ${text}` : `${text} ago`;
}

export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** A run's (or step's) duration, ticking while it runs. */
export function runDuration(run, now = Date.now()) {
  if (run.durationSeconds != null) return duration(run.durationSeconds);
  if (run.startedAt && !run.finishedAt) return duration((now - new Date(run.startedAt).getTime()) / 1000);
  return "";
}

export function bytes(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const LABELS = { queued: "Queued", starting: "Starting", running: "Running", success: "Success", error: "Error", cancelled: "Cancelled" };

export function statusBadge(status) {
  if (!status) return h("span", { class: "muted" }, "—");
  return h("span", { class: `status ${status}`, "data-status": status }, LABELS[status] || status);
}

export const FINAL = new Set(["success", "error", "cancelled"]);
