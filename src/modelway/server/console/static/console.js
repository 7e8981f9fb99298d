// The console's shell: sign-in, navigation, the page router. Pages live in pages.js and keys.js.
import { get, key, setKey } from "./api.js";
import { errorBox, h } from "./dom.js";
import { getLang, setLang, t, translateStatic } from "./i18n.js";
import { PAGES } from "./pages.js";

const ORDER = ["overview", "models", "keys", "usage", "requests", "playground"];
const TITLES = { overview: "Overview", models: "Models", keys: "Keys", usage: "Usage", requests: "Request log", playground: "Playground" };
let rendering = 0;
let signingIn = false; // a refused key while signing in is said on the form, not by a new one

function nav(active) {
  const box = document.getElementById("nav");
  box.replaceChildren(...ORDER.map((name) =>
    h("a", { href: `#/${name}`, class: name === active ? "active" : "", "data-testid": `nav-${name}` }, t(TITLES[name]))));
}

async function route() {
  const main = document.getElementById("main");
  if (!key()) { signIn(main); return; }
  document.getElementById("top").hidden = false;
  const name = (location.hash.replace(/^#\//, "").split("?")[0]) || "overview";
  const page = PAGES[name] ? name : "overview";
  nav(page);
  const mine = ++rendering;
  const body = h("section", { "data-page": page });
  main.replaceChildren(h("h1", {}, t(TITLES[page])), body);
  try {
    await PAGES[page](body);
  } catch (err) {
    if (mine === rendering) body.append(errorBox(err));
  }
}

function signIn(main) {
  document.getElementById("top").hidden = true;
  const input = h("input", { type: "password", id: "key", autocomplete: "current-password", placeholder: "sk-…", "data-testid": "signin-key" });
  const error = h("div", { class: "error", "data-testid": "signin-error" });
  const submit = async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    setKey(input.value.trim());
    signingIn = true;
    try {
      await get("/admin/deployments"); // needs an admin key, and no store
      location.hash = "#/overview";
      await route();
    } catch (err) {
      setKey(null);
      error.textContent = err.status === 403 ? t("This key is not an admin key.") : err.status === 401 ? t("Invalid key.") : err.message;
    } finally {
      signingIn = false;
    }
  };
  main.replaceChildren(h("form", { class: "panel signin", onsubmit: submit },
    h("h1", {}, "modelway"),
    h("label", {}, t("Gateway key"), input),
    h("p", { class: "muted" }, t("The master key (server.master_key) or an admin key.")),
    error,
    h("button", { type: "submit", "data-testid": "signin-submit" }, t("Sign in"))));
  input.focus();
}

function boot() {
  const lang = document.getElementById("lang");
  lang.value = getLang();
  setLang(getLang());
  translateStatic();
  lang.addEventListener("change", () => { setLang(lang.value); translateStatic(); route(); });
  document.getElementById("signout").addEventListener("click", () => { setKey(null); location.hash = ""; route(); });
  window.addEventListener("mw:signed-out", () => { if (!signingIn) { setKey(null); route(); } });
  window.addEventListener("hashchange", route);
  route();
}

boot();
