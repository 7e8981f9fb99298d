// Small SVG charts: grouped bars over time. No library: the console must work offline and ship no build.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function nice(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (max <= m * p) return m * p;
  return 10 * p;
}

// points: [{t, values: [a, b]}], labels: x labels; series names for the legend
export function bars(points, { series = [], label = (t) => t, format = (v) => String(v) } = {}) {
  const W = 720, H = 180, left = 44, bottom = 22, top = 8;
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const max = nice(Math.max(0, ...points.flatMap((p) => p.values)));
  for (let i = 0; i <= 4; i++) {
    const y = top + ((H - top - bottom) * i) / 4;
    svg.append(el("line", { class: "grid", x1: left, x2: W, y1: y, y2: y }));
    svg.append(el("text", { x: left - 6, y: y + 3, "text-anchor": "end" }, format((max * (4 - i)) / 4)));
  }
  const n = Math.max(points.length, 1), slot = (W - left) / n, k = Math.max(1, points[0] ? points[0].values.length : 1);
  const bw = Math.max(1, (slot * 0.7) / k);
  points.forEach((p, i) => {
    p.values.forEach((v, j) => {
      const h = ((H - top - bottom) * v) / max;
      const x = left + i * slot + slot * 0.15 + j * bw;
      const r = el("rect", { class: `s${j}`, x, y: H - bottom - h, width: bw, height: Math.max(0, h) });
      r.append(el("title", {}, `${label(p.t)}: ${series[j] || ""} ${format(v)}`));
      svg.append(r);
    });
    if (n <= 12 || i % Math.ceil(n / 12) === 0) {
      svg.append(el("text", { x: left + i * slot + slot / 2, y: H - 6, "text-anchor": "middle" }, label(p.t)));
    }
  });
  const wrap = document.createElement("div");
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((name, j) => {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = j ? "var(--bad)" : "var(--accent)";
    item.append(sw, name);
    legend.append(item);
  });
  wrap.append(svg, legend);
  wrap.dataset.points = String(points.length);
  return wrap;
}
