// The console's pages but keys (keys.js): overview, models, usage, request log, playground.
import { get, getText, send, streamChat } from "./api.js";
import { bars } from "./charts.js";
import { clear, current, errorBox, h, money, ms, num, select, table, toast, when } from "./dom.js";
import { t } from "./i18n.js";
import { keysPage } from "./keys.js";

const HOUR = 3600, DAY = 86400;
const now = () => Date.now() / 1000;
const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(1)}%` : "—");

const USAGE_COLUMNS = [
  { label: "Requests", get: (r) => num(r.requests), num: true },
  { label: "Errors", get: (r) => num(r.errors), num: true },
  { label: "p50 latency", get: (r) => ms(r.p50_ms), num: true },
  { label: "p95 latency", get: (r) => ms(r.p95_ms), num: true },
  { label: "TTFT p50", get: (r) => ms(r.ttft_p50_ms), num: true },
  { label: "Tokens", get: (r) => num(r.total_tokens), num: true },
  { label: "Cost", get: (r) => money(r.cost), num: true },
];
const groupName = (r) => r.key_name || r.group || "(none)";

function seriesChart(series, bucket) {
  const points = new Map();
  for (const s of series || []) for (const p of s.points) {
    const cur = points.get(p.t) || { t: p.t, values: [0, 0] };
    cur.values[0] += p.requests || 0;
    cur.values[1] += p.errors || 0;
    points.set(p.t, cur);
  }
  const sorted = [...points.values()].sort((a, b) => a.t - b.t);
  const label = (ts) => { const d = new Date(ts * 1000); return bucket === "hour" ? `${d.getHours()}:00` : `${d.getMonth() + 1}/${d.getDate()}`; };
  return bars(sorted, { series: [t("requests"), t("errors")], label, format: (v) => num(v) });
}

// -- overview ---------------------------------------------------------------------------------------------
async function overview(body) {
  const range = Number(new URLSearchParams(location.hash.split("?")[1]).get("range")) || HOUR;
  const picker = select([[String(HOUR), t("Last hour")], [String(DAY), t("Last day")]], String(range), {
    "data-testid": "overview-range", onchange: (e) => { location.hash = `#/overview?range=${e.target.value}`; },
  });
  body.append(h("div", { class: "row" }, picker, h("button", { class: "ghost", onclick: () => overview(clear(body)) }, t("Refresh"))));
  const since = Math.floor(now() - range);
  const gen = current(body);
  const deployments = await get("/admin/deployments");
  const inFlight = deployments.data.reduce((n, d) => n + (d.in_flight || 0), 0);
  let byModel = null, byDep = null, series = null, problem = null;
  try {
    [byModel, byDep, series] = await Promise.all([
      get("/admin/usage", { group_by: "model", since }),
      get("/admin/usage", { group_by: "deployment", since }),
      get("/admin/usage/series", { bucket: "hour", since }),
    ]);
  } catch (err) { problem = err; }
  if (current(body) !== gen) return;
  const rows = byModel ? byModel.data : [];
  const total = (f) => rows.reduce((n, r) => n + (r[f] || 0), 0);
  const card = (label, value, id) => h("div", { class: "card", "data-testid": `card-${id}` },
    h("div", { class: "label" }, t(label)), h("div", { class: "value" }, value));
  body.append(h("div", { class: "cards" },
    card("Requests", num(total("requests")), "requests"),
    card("Error rate", pct(total("errors"), total("requests")), "errors"),
    card("Tokens", num(total("total_tokens")), "tokens"),
    card("Cost", money(total("cost")), "cost"),
    card("In flight", num(inFlight), "inflight")));
  if (problem) { body.append(errorBox(problem)); return; }
  body.append(h("div", { class: "panel" }, h("h2", {}, t("Requests per hour")), seriesChart(series.series, "hour")));
  body.append(h("h2", {}, t("By model")),
    table([{ label: "Model", get: groupName }, ...USAGE_COLUMNS], byModel.data, { testid: "overview-models" }));
  body.append(h("h2", {}, t("By deployment")),
    table([{ label: "Deployment", get: groupName }, ...USAGE_COLUMNS], byDep.data, { testid: "overview-deployments" }));
}



// -- models and deployments ---------------------------------------------------------------------------------
async function models(body) {
  const gen = current(body);
  const data = (await get("/admin/deployments")).data;
  if (current(body) !== gen) return;
  const state = (d) => d.disabled ? h("span", { class: "chip bad" }, t("disabled"))
    : d.cooling ? h("span", { class: "chip warn" }, t("cooling")) : h("span", { class: "chip ok" }, t("enabled"));
  const circuit = (d) => { const s = (d.circuit && d.circuit.state) || "closed"; return h("span", { class: `chip ${s === "closed" ? "ok" : s === "open" ? "bad" : "warn"}` }, s); };
  const act = (d) => {
    if (!d.id) return "";
    const action = d.disabled ? "enable" : "disable";
    return h("button", {
      class: d.disabled ? "" : "ghost", "data-testid": `${action}-${d.deployment}`,
      onclick: async (e) => {
        e.target.disabled = true;
        let failed = null;
        try { await send("POST", `/admin/deployments/${encodeURIComponent(d.id)}/${action}`); toast(`${d.deployment}: ${t(action === "enable" ? "enabled" : "disabled")}`); }
        catch (err) { failed = err; }
        await models(clear(body));
        if (failed) body.prepend(errorBox(failed)); // (after the new table: shown, not wiped by it)
      },
    }, t(action === "enable" ? "Enable" : "Disable"));
  };
  body.append(h("div", { class: "row" }, h("button", { class: "ghost", onclick: () => models(clear(body)) }, t("Refresh"))));
  body.append(h("div", { class: "panel" }, table([
    { label: "Model", get: (d) => d.model },
    { label: "Deployment", get: (d) => d.deployment },
    { label: "Provider", get: (d) => d.provider },
    { label: "State", get: state },
    { label: "Circuit", get: circuit },
    { label: "In flight", get: (d) => num(d.in_flight), num: true },
    { label: "TTFT p50", get: (d) => ms(d.ewma_ttft == null ? null : d.ewma_ttft * 1000), num: true },
    { label: "Latency", get: (d) => ms(d.ewma_total == null ? null : d.ewma_total * 1000), num: true },
    { label: "Requests", get: (d) => num(d.requests), num: true },
    { label: "Failures", get: (d) => num(d.failures), num: true },
    { label: "Recent errors", get: (d) => num(d.recent_errors), num: true },
    { label: "", get: act },
  ], data, { testid: "deployments" })));
}

// -- usage ----------------------------------------------------------------------------------------------------
async function usage(body) {
  const q = new URLSearchParams(location.hash.split("?")[1]);
  const group = q.get("group_by") || "model", range = Number(q.get("range")) || 7 * DAY;
  const go = (g, r) => { location.hash = `#/usage?group_by=${g}&range=${r}`; };
  const groupSel = select(["key", "model", "deployment", "endpoint", "day"].map((g) => [g, t({ key: "Key", model: "Model", deployment: "Deployment", endpoint: "Endpoint", day: "Day" }[g])]), group,
    { "data-testid": "usage-group", onchange: (e) => go(e.target.value, range) });
  const rangeSel = select([[String(DAY), t("Last day")], [String(7 * DAY), t("Last 7 days")], [String(30 * DAY), t("Last 30 days")]], String(range),
    { "data-testid": "usage-range", onchange: (e) => go(group, e.target.value) });
  const since = Math.floor(now() - range);
  const bucket = range <= DAY ? "hour" : "day";
  const exportCsv = async () => {
    let text;
    try { text = await getText("/admin/usage", { group_by: group, since, format: "csv" }); }
    catch (err) { body.append(errorBox(err)); return; }
    const href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    const a = h("a", { href, download: `modelway-usage-${group}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 1000);
  };
  body.append(h("div", { class: "row" }, h("label", {}, t("Group by"), groupSel), h("label", {}, t("Range"), rangeSel),
    h("span", { class: "spacer" }), h("button", { class: "ghost", onclick: exportCsv, "data-testid": "usage-csv" }, t("Export CSV"))));
  const [rows, series] = await Promise.all([
    get("/admin/usage", { group_by: group, since }),
    get("/admin/usage/series", { bucket, since, group_by: group === "day" ? undefined : group }),
  ]);
  body.append(h("div", { class: "panel", "data-testid": "usage-chart" },
    h("h2", {}, t(bucket === "hour" ? "Requests per hour" : "Requests per day")), seriesChart(series.series, bucket)));
  body.append(h("div", { class: "panel" }, table([{ label: "Group", get: groupName }, ...USAGE_COLUMNS], rows.data, { testid: "usage-table" })));
}

// -- request log ----------------------------------------------------------------------------------------------
async function requests(body) {
  const filters = { key_id: "", model: "", status: "" };
  let keys = [];
  try { keys = (await get("/admin/keys", { include_revoked: "true" })).data; } catch { /* no store: the list says so */ }
  const keySel = select([["", t("any")], ...keys.map((k) => [k.id, k.name])], "", { "data-testid": "requests-key" });
  const modelIn = h("input", { placeholder: t("Model"), "data-testid": "requests-model" });
  const statusSel = select([["", t("any")], ["2xx", "2xx"], ["4xx", "4xx"], ["5xx", "5xx"]], "", { "data-testid": "requests-status" });
  const list = h("div");
  let tbody = null;
  const more = h("button", { class: "ghost", "data-testid": "requests-more" }, t("Load more"));
  let before = null;
  const columns = [
    { label: "Time", get: (r) => when(r.ts) },
    { label: "Status", get: (r) => h("span", { class: `chip ${r.status < 400 ? "ok" : r.status < 500 ? "warn" : "bad"}` }, r.status) },
    { label: "Key", get: (r) => r.key_name || r.key_id || "—" },
    { label: "Model", get: (r) => r.model || "—" },
    { label: "Deployment", get: (r) => r.deployment || "(none)" },
    { label: "Endpoint", get: (r) => r.endpoint || "—" },
    { label: "Latency", get: (r) => ms(r.latency_ms), num: true },
    { label: "TTFT p50", get: (r) => ms(r.ttft_ms), num: true },
    { label: "Tokens", get: (r) => num(r.total_tokens), num: true },
    { label: "Cost", get: (r) => money(r.cost), num: true },
    { label: "Error", get: (r) => r.error || "", wrap: true },
  ];
  const load = async (reset) => {
    if (reset) { before = null; tbody = null; list.replaceChildren(); }
    const page = await get("/admin/usage/records", { limit: 50, before, ...filters });
    const rows = page.data;
    before = page.next_before ?? (rows.length ? rows[rows.length - 1].id : null);
    more.hidden = page.has_more === undefined ? rows.length < 50 : !page.has_more;
    if (tbody === null) {
      const made = table(columns, rows, { testid: "requests-table", onrow: detail });
      tbody = made.querySelector("tbody");
      list.append(made);
    } else {  // the next page: more rows in the same table
      tbody.append(...table(columns, rows, { onrow: detail }).querySelectorAll("tbody tr"));
    }
  };
  const apply = () => { filters.key_id = keySel.value; filters.model = modelIn.value.trim(); filters.status = statusSel.value; return load(true); };
  more.addEventListener("click", () => load(false).catch((err) => list.append(errorBox(err))));
  body.append(h("div", { class: "row" }, h("label", {}, t("Key"), keySel), h("label", {}, t("Model"), modelIn),
    h("label", {}, t("Status class"), statusSel), h("button", { onclick: () => apply().catch((err) => list.append(errorBox(err))), "data-testid": "requests-apply" }, t("Apply"))));
  body.append(h("div", { class: "panel" }, list, more));
  await load(true);
}

// a kept body as JSON laid out when it parses (a body cut at max_body_bytes does not: it is shown as it is)
function bodyText(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

// the request's and the answer's bodies of a record (request_log.bodies), or why there are none
function bodies(record) {
  const { request_body: request, response_body: response } = record;
  if (request == null && response == null) {
    return [h("p", { class: "muted", "data-testid": "record-no-bodies" },
      t("No body was logged: bodies are logged only when request_log.bodies is on."))];
  }
  const block = (label, text, id, why) => [h("h3", {}, t(label)), text == null
    ? h("p", { class: "muted", "data-testid": `${id}-none` }, t(why))
    : h("pre", { class: "body", "data-testid": id }, bodyText(text))];
  return [
    ...block("Request body", request, "record-request-body", "The request had no body."),
    ...block("Response body", response, "record-response-body",
      record.stream ? "A streamed answer's body is not logged." : "Only a whole successful answer's body is logged."),
  ];
}

async function detail(row) {
  let record = row;
  if (row.record_id) {
    try { record = await get(`/admin/usage/records/${encodeURIComponent(row.record_id)}`); } catch { /* the row is what we have */ }
  }
  const { request_body: _request, response_body: _response, ...fields } = record;
  const dialog = h("dialog", { "data-testid": "record" },
    h("h2", {}, `${t("Record")} ${record.request_id || ""}`),
    h("pre", {}, JSON.stringify(fields, null, 2)),
    ...bodies(record),
    h("button", { onclick: () => dialog.close(), "data-testid": "record-close" }, t("Close")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// -- playground ---------------------------------------------------------------------------------------------
async function playground(body) {
  const modelsList = (await get("/v1/models")).data.map((m) => m.id);
  const model = select(modelsList.map((m) => [m, m]), modelsList[0], { "data-testid": "play-model" });
  const system = h("textarea", { placeholder: t("System prompt"), rows: 2, "data-testid": "play-system" });
  const message = h("textarea", { placeholder: t("Message"), "data-testid": "play-message" }, "Say hello in one sentence.");
  const answer = h("div", { class: "answer", "data-testid": "play-answer" });
  const stats = h("div", { class: "cards", "data-testid": "play-stats" });
  const error = h("div");
  let controller = null;
  const stop = h("button", { class: "ghost", disabled: true, onclick: () => controller && controller.abort() }, t("Stop"));
  const go = h("button", { "data-testid": "play-send" }, t("Send"));
  go.addEventListener("click", async () => {
    answer.textContent = ""; stats.replaceChildren(); error.replaceChildren();
    controller = new AbortController();
    go.disabled = true; stop.disabled = false;
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    messages.push({ role: "user", content: message.value });
    try {
      const r = await streamChat({ model: model.value, messages }, (text) => answer.append(text), controller.signal);
      const card = (label, value, id) => h("div", { class: "card", "data-testid": `play-${id}` }, h("div", { class: "label" }, t(label)), h("div", { class: "value" }, value));
      stats.append(card("Time to first token", ms(r.ttft), "ttft"), card("Total time", ms(r.total), "total"),
        card("Prompt tokens", num(r.usage && r.usage.prompt_tokens), "prompt"),
        card("Completion tokens", num(r.usage && r.usage.completion_tokens), "completion"));
    } catch (err) {
      if (err.name !== "AbortError") error.append(errorBox(err));
    } finally { go.disabled = false; stop.disabled = true; }
  });
  body.append(h("div", { class: "panel" }, h("div", { class: "row" }, h("label", {}, t("Model"), model)), system, message,
    h("div", { class: "row" }, go, stop)), error, answer, stats);
}

export const PAGES = { overview, models, keys: keysPage, usage, requests, playground };
