// Lineage of the current model (dbt.lineage nodes and edges) as a layered SVG graph.

import { h, s } from "../dom.js";

const W = 150;
const H = 26;
const GAP_X = 40;
const GAP_Y = 10;

/** Depth of every node: the longest path from a root, so edges always go left to right. */
function layers(nodes, edges) {
  const parents = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) if (parents.has(e.to) && parents.has(e.from)) parents.get(e.to).push(e.from);
  const depth = new Map();
  const visit = (id, stack = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (stack.has(id)) return 0; // a cycle (should not happen in dbt): cut it
    stack.add(id);
    const d = Math.max(-1, ...parents.get(id).map((p) => visit(p, stack))) + 1;
    stack.delete(id);
    depth.set(id, d);
    return d;
  };
  for (const n of nodes) visit(n.id);
  return depth;
}

export function lineageGraph({ nodes, edges }, { current = null, onOpen = null } = {}) {
  if (!nodes.length) return h("p", { class: "muted" }, "No lineage for this file.");
  const depth = layers(nodes, edges);
  const columns = [];
  for (const n of nodes) (columns[depth.get(n.id)] ||= []).push(n);
  const pos = new Map();
  columns.forEach((col, x) => {
    col.sort((a, b) => a.name.localeCompare(b.name));
    col.forEach((n, y) => pos.set(n.id, { x: x * (W + GAP_X), y: y * (H + GAP_Y) }));
  });
  const width = columns.length * (W + GAP_X) - GAP_X;
  const height = Math.max(...columns.map((c) => c.length)) * (H + GAP_Y) - GAP_Y;
  const svg = s("svg", { viewBox: `-2 -2 ${width + 4} ${height + 4}`, width: width + 4, height: height + 4, role: "img",
    "aria-label": `Lineage: ${nodes.length} nodes, ${edges.length} edges` });
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  for (const n of nodes) {
    const p = pos.get(n.id);
    const label = n.name.length > 22 ? n.name.slice(0, 21) + "…" : n.name;
    const box = [
      s("title", {}, `${n.resourceType}: ${n.id}`),
      s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 4 }),
      s("text", { x: p.x + 8, y: p.y + H / 2 + 4 }, label),
    ];
    const cls = `node ${n.resourceType}${n.id === current ? " current" : ""}`;
    if (onOpen && n.path && n.resourceType !== "source") {
      const link = s("a", { href: "#", role: "button", "aria-label": `Open ${n.name}` }, box);
      link.addEventListener("click", (ev) => { ev.preventDefault(); onOpen(n); });
      svg.append(s("g", { class: cls, "data-node": n.id }, link));
    } else {
      svg.append(s("g", { class: cls, "data-node": n.id }, box));
    }
  }
  return svg;
}
