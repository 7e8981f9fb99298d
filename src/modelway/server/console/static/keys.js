// Keys: create (the secret shown once, with a copy button), edit limits, models, budget and expiry, revoke; spend
// against budget.
import { get, send } from "./api.js";
import { clear, errorBox, h, money, num, select, table, toast, when } from "./dom.js";
import { t } from "./i18n.js";

const DAY = 86400;

function status(k) {
  const now = Date.now() / 1000;
  if (k.revoked_at) return h("span", { class: "chip bad" }, t("revoked"));
  if (k.expires_at && k.expires_at <= now) return h("span", { class: "chip warn" }, t("expired"));
  return h("span", { class: "chip ok" }, t("active"));
}

function spendBar(k) {
  if (k.spend == null) return "—";
  if (!k.budget) return money(k.spend);
  const share = Math.min(1, k.spend / k.budget);
  const bar = h("div", { class: `bar${k.spend >= k.budget ? " over" : ""}`, title: `${money(k.spend)} / ${money(k.budget)}` }, h("span"));
  bar.firstChild.style.width = `${(100 * share).toFixed(1)}%`;
  return h("div", { class: "row", "data-testid": `spend-${k.name}` }, bar, `${money(k.spend)} / ${money(k.budget)}`);
}

// the form of a key's fields, filled with `k` when editing
function keyForm(k, onsave, oncancel) {
  const v = (x) => (x == null ? "" : String(x));
  // (numbers: any fraction, never negative; a number input's default step of 1 would refuse a budget of 0.5)
  const field = (name, label, value, type = "text") => h("label", {}, t(label), h("input", {
    name, type, value: v(value), "data-testid": `key-${name}`, step: type === "number" ? "any" : undefined, min: type === "number" ? "0" : undefined,
  }));
  const shownDays = k && k.expires_at ? ((k.expires_at - Date.now() / 1000) / DAY).toFixed(1) : "";
  const period = select(["total", "day", "month"].map((p) => [p, p]), (k && k.budget_period) || "total", { name: "budget_period" });
  const admin = h("input", { type: "checkbox", name: "admin", checked: !!(k && k.metadata && k.metadata.role === "admin"), "data-testid": "key-admin" });
  const error = h("div");
  const form = h("form", { class: "panel", "data-testid": k ? "key-edit" : "key-create" },
    h("div", { class: "grid-form" },
      field("name", "Name", k && k.name),
      h("label", {}, t("Models allowed"), h("input", { name: "models", value: k && k.models ? k.models.join(", ") : "", placeholder: t("comma-separated; empty: every model"), "data-testid": "key-models" })),
      field("rpm", "rpm", k && k.rpm, "number"), field("tpm", "tpm", k && k.tpm, "number"),
      field("max_parallel", "max parallel", k && k.max_parallel, "number"),
      field("budget", "Budget", k && k.budget, "number"), h("label", {}, t("Budget period"), period),
      field("expires_in_days", "Expires in days", shownDays, "number"),
      h("label", { class: "check" }, admin, t("Admin key"))),
    error,
    h("div", { class: "row" }, h("button", { type: "submit", "data-testid": "key-save" }, t(k ? "Save" : "Create")),
      h("button", { type: "button", class: "ghost", onclick: oncancel }, t("Cancel"))));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const intOrNull = (name) => (f.get(name) === "" ? null : Number(f.get(name)));
    const models = String(f.get("models")).split(",").map((m) => m.trim()).filter(Boolean);
    const days = String(f.get("expires_in_days"));
    const body = {
      name: String(f.get("name")).trim(), models: models.length ? models : null,
      rpm: intOrNull("rpm"), tpm: intOrNull("tpm"), max_parallel: intOrNull("max_parallel"),
      budget: intOrNull("budget"), budget_period: f.get("budget_period"),
      expires_at: days === "" ? null : Date.now() / 1000 + Number(days) * DAY,
      metadata: { ...((k && k.metadata) || {}), role: admin.checked ? "admin" : undefined },
    };
    // the shown days are rounded: an edit that leaves them as they were leaves the expiry as it was
    if (k && days === shownDays) delete body.expires_at;
    if (!admin.checked) delete body.metadata.role;
    try { await onsave(body); } catch (err) { error.replaceChildren(errorBox(err)); }
  });
  return form;
}

function showSecret(secret) {
  const copy = h("button", { "data-testid": "secret-copy" }, t("Copy"));
  const code = h("div", { class: "secret", "data-testid": "secret" }, secret);
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(secret); } catch {
      const r = document.createRange(); r.selectNodeContents(code); getSelection().removeAllRanges(); getSelection().addRange(r);
      document.execCommand("copy");
    }
    copy.textContent = t("Copied");
    toast(t("Copied"));
  });
  const dialog = h("dialog", { "data-testid": "secret-dialog" }, h("h2", {}, t("This secret is shown only once. Copy it now.")), code,
    h("div", { class: "row" }, copy, h("button", { class: "ghost", onclick: () => dialog.close(), "data-testid": "secret-close" }, t("Close"))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

export async function keysPage(body) {
  // every key with its spend in its current budget period, in one request (a revoked key's is not shown)
  const keys = (await get("/admin/keys", { include_revoked: "true", with_spend: "true" })).data;
  for (const k of keys) if (k.revoked_at) k.spend = null;
  const reload = () => keysPage(clear(body));
  const slot = h("div");
  const create = h("button", { "data-testid": "key-new", onclick: () => {
    slot.replaceChildren(keyForm(null, async (fields) => {
      const made = await send("POST", "/admin/keys", fields);
      slot.replaceChildren();
      await reload();
      showSecret(made.key);
    }, () => slot.replaceChildren()));
  } }, t("Create key"));
  const edit = (k) => slot.replaceChildren(keyForm(k, async (fields) => {
    await send("PATCH", `/admin/keys/${encodeURIComponent(k.id)}`, fields);
    slot.replaceChildren();
    toast(t("Saved"));
    await reload();
  }, () => slot.replaceChildren()));
  const revoke = async (k) => {
    if (!confirm(t("Revoke this key? Requests with it are refused at once."))) return;
    try { await send("DELETE", `/admin/keys/${encodeURIComponent(k.id)}`); toast(`${k.name}: ${t("revoked")}`); await reload(); }
    catch (err) { body.append(errorBox(err)); }
  };
  const actions = (k) => k.revoked_at ? "" : h("span", { class: "row" },
    h("button", { class: "ghost", onclick: () => edit(k), "data-testid": `edit-${k.name}` }, t("Edit")),
    h("button", { class: "danger", onclick: () => revoke(k), "data-testid": `revoke-${k.name}` }, t("Revoke")));
  body.append(h("div", { class: "row" }, create, h("span", { class: "muted" }, t("Keys created here can call the API at once."))), slot);
  body.append(h("div", { class: "panel" }, table([
    { label: "Name", get: (k) => h("span", {}, k.name, k.metadata && k.metadata.role === "admin" ? h("span", { class: "chip warn" }, " admin") : "") },
    { label: "Key", get: (k) => `${k.prefix}…` },
    { label: "Status", get: status },
    { label: "Models allowed", get: (k) => (k.models ? k.models.join(", ") : t("all")), wrap: true },
    { label: "rpm", get: (k) => num(k.rpm), num: true },
    { label: "tpm", get: (k) => num(k.tpm), num: true },
    { label: "Spend", get: spendBar },
    { label: "Budget period", get: (k) => (k.budget ? k.budget_period : "—") },
    { label: "Expires", get: (k) => when(k.expires_at) },
    { label: "Created", get: (k) => when(k.created_at) },
    { label: "", get: actions },
  ], keys, { testid: "keys-table" })));
}
