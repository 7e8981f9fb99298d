// DOM helpers shared by every page: elements built with properties and text, never from HTML strings.
import { ApiError } from "./api.js";
import { t } from "./i18n.js";

// h("div", {class: "x", onclick: f, "data-testid": "y"}, "text", child, ...): the DOM, never HTML strings
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

export function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 2500);
}

export function errorBox(err) {
  const text = err instanceof ApiError && err.status === 404 && /store/.test(err.message)
    ? t("No store is configured (store.url): keys and usage need one.") : err.message || String(err);
  return h("div", { class: "error", "data-testid": "error" }, text);
}


export const num = (v) => (v == null ? "—" : Number(v).toLocaleString());
export const ms = (v) => (v == null ? "—" : `${Number(v) < 10 ? Number(v).toFixed(1) : Math.round(v).toLocaleString()} ms`);
export const money = (v) => (v == null ? "—" : Number(v).toLocaleString(undefined, { maximumFractionDigits: 4 }));
export const when = (ts) => (ts == null ? "—" : new Date(ts * 1000).toLocaleString());

export function select(options, value, props = {}) {
  return h("select", props, ...options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

export function table(columns, rows, { testid, onrow } = {}) {
  const head = h("tr", {}, ...columns.map((c) => h("th", { class: c.num ? "num" : "" }, t(c.label))));
  const body = rows.map((r) => h("tr", {
    class: onrow ? "click" : "", tabindex: onrow ? "0" : undefined, onclick: onrow && (() => onrow(r)),
    onkeydown: onrow && ((e) => { if (e.key === "Enter") onrow(r); }),
  },
    ...columns.map((c) => h("td", { class: c.num ? "num" : c.wrap ? "wrap" : "" }, c.get(r)))));
  const el = h("div", { class: "scroll" }, h("table", { "data-testid": testid }, h("thead", {}, head), h("tbody", {}, ...body)));
  if (!rows.length) el.append(h("p", { class: "muted" }, t("No data yet.")));
  return el;
}

// a page section cleared for a new render; a render that finds it cleared again since it began stops (a Refresh
// clicked twice must not draw the page twice)
export function clear(el) { el.replaceChildren(); el.dataset.gen = String(Number(el.dataset.gen || 0) + 1); return el; }
export const current = (el) => el.dataset.gen || "0";
