// Cron expressions in words ("Every day at 06:00"); the raw expression when it is unusual.

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];
const MACROS = {
  "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
};

const num = (v) => /^\d+$/.test(v);
const pad = (n) => String(n).padStart(2, "0");

function list(values, names) {
  const words = values.map((v) => (names ? names[Number(v) % names.length] : v));
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words.at(-1)}` : words[0];
}

function daysPart(dow) {
  if (dow === "*") return "";
  if (dow === "1-5" || dow === "MON-FRI") return " on weekdays";
  if (dow === "0,6" || dow === "6,0" || dow === "SAT,SUN") return " on weekends";
  const parts = dow.split(",");
  if (parts.every(num)) return ` on ${list(parts, DAYS)}`;
  const range = dow.match(/^(\d)-(\d)$/);
  if (range) return ` from ${DAYS[Number(range[1]) % 7]} to ${DAYS[Number(range[2]) % 7]}`;
  return null;
}

function datePart(dom, month) {
  let out = "";
  if (dom !== "*") {
    if (!dom.split(",").every(num)) return null;
    out += ` on day ${list(dom.split(","))} of the month`;
  }
  if (month !== "*") {
    if (!month.split(",").every(num)) return null;
    out += ` in ${list(month.split(",").map((m) => Number(m) - 1), MONTHS)}`;
  }
  return out;
}

/** "0 6 * * 1-5" → "At 06:00 on weekdays". Unknown shapes come back as "cron: <expr>". */
export function describeCron(expr, timezone) {
  if (!expr) return "No schedule";
  const tz = timezone && timezone !== "UTC" ? ` (${timezone})` : " (UTC)";
  const raw = expr.trim();
  const fields = (MACROS[raw] || raw).split(/\s+/);
  if (fields.length !== 5) return `cron: ${raw}`;
  const [min, hour, dom, month, dow] = fields;
  const days = daysPart(dow);
  const dates = datePart(dom, month);
  if (days == null || dates == null) return `cron: ${raw}${tz}`;
  const when = `${dates}${days}`;
  let base = null;
  if (min === "*" && hour === "*") base = "Every minute";
  else if (/^\*\/\d+$/.test(min) && hour === "*") base = `Every ${min.slice(2)} minutes`;
  else if (num(min) && hour === "*") base = Number(min) === 0 ? "Every hour" : `Every hour at minute ${min}`;
  else if (num(min) && /^\*\/\d+$/.test(hour)) base = `Every ${hour.slice(2)} hours at minute ${min}`;
  else if (num(min) && hour.split(",").every(num)) {
    const times = hour.split(",").map((x) => `${pad(x)}:${pad(min)}`);
    base = `At ${list(times)}`;
    if (!when) return `${base} every day${tz}`;
  }
  if (base == null) return `cron: ${raw}${tz}`;
  return `${base}${when}${tz}`;
}
