// The web UI's shell: the session (log in, log out, change password), the header, and the
// hash routes (#/live, #/play, #/status, #/setup, #/login), each drawn by its page module.
// Routing by hash needs no server fallback routes (web-api.md §4).

import { getJson, send, setCsrf, ApiError } from "./api.js";
import { h, fill, notice } from "./dom.js";
import { isKnownZone } from "./timecalc.js";
import { livePage } from "./page_live.js";
import { playPage } from "./page_play.js";
import { statusPage } from "./page_status.js";
import { setupPage } from "./page_setup.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");

// What the page is doing, for the browser tests and for debugging in the console.
window.moonfire = { errors: [], page: null };
window.addEventListener("error", (e) => window.moonfire.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.moonfire.errors.push(String(e.reason)));

/** What every page gets: the top-level API document and helpers over it. */
export const app = {
  top: null,
  zone: "UTC",
  async refresh() {
    const top = await getJson("/api/?days=true");
    this.top = top;
    this.zone = isKnownZone(top.timeZoneName) ? top.timeZoneName : "UTC";
    setCsrf(top.user?.session?.csrf);
    return top;
  },
  camera(name) {
    return this.top.cameras.find((c) => c.shortName === name) ?? null;
  },
  get isAdmin() { return Boolean(this.top?.permissions?.adminUsers); },
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

let current = null; // the page shown: {stop()} to end its players and timers

function parseHash() {
  const text = location.hash.replace(/^#/, "") || "/live";
  const [path, query = ""] = text.split("?");
  return { path, params: new URLSearchParams(query) };
}

async function route() {
  const { path, params } = parseHash();
  if (current?.stop) current.stop();
  current = null;
  if (path === "/login") {
    showLogin(params.get("next") || "#/live");
    return;
  }
  try {
    await app.refresh();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      location.hash = `#/login?next=${encodeURIComponent(location.hash || "#/live")}`;
      return;
    }
    fill(main, notice(`can't reach the server: ${e.message}`, "error"));
    return;
  }
  drawHeader(path);
  const pages = { "/live": livePage, "/play": playPage, "/status": statusPage, "/setup": setupPage };
  const page = pages[path] || livePage;
  window.moonfire.page = path;
  main.replaceChildren();
  try {
    current = await page(main, params, app);
  } catch (e) {
    main.append(notice(e.message || String(e), "error"));
    window.moonfire.errors.push(String(e.message || e));
  }
}

function drawHeader(path) {
  const links = [["#/live", "Live", "/live"], ["#/play", "Playback", "/play"], ["#/status", "Status", "/status"]];
  if (app.isAdmin) links.push(["#/setup", "Setup", "/setup"]);
  fill(nav, links.map(([href, text, p]) =>
    h("a", { href, class: p === path ? "active" : null }, text)));
  const user = app.top.user;
  if (!user) {
    fill(account, h("a", { href: "#/login" }, "Log in"));
    return;
  }
  const menu = h("details", { class: "account-menu" },
    h("summary", {}, user.name),
    h("div", { class: "menu" },
      user.session ? h("button", { type: "button", onclick: () => changePassword(user) }, "Change password") : null,
      user.session ? h("button", { type: "button", id: "logout", onclick: logout }, "Log out") : null));
  menu.addEventListener("click", (e) => { if (e.target instanceof HTMLButtonElement) menu.open = false; });
  fill(account, menu);
}

async function logout() {
  try {
    await send("POST", "/api/logout", {});
  } finally {
    setCsrf(null);
    location.hash = "#/login";
  }
}

function showLogin(next) {
  nav.replaceChildren();
  account.replaceChildren();
  const message = h("p", { class: "notice error", role: "alert", hidden: true });
  const form = h("form", { class: "login card", id: "login-form" },
    h("h1", {}, "moonfire"),
    h("label", {}, "User", h("input", { name: "username", autocomplete: "username", required: true, autofocus: true })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    message,
    h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    try {
      await send("POST", "/api/login", { username: form.username.value, password: form.password.value });
      location.hash = next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/live";
    } catch (e) {
      message.textContent = e.message;
      message.hidden = false;
    }
  });
  fill(main, form);
}

function changePassword(user) {
  const message = h("p", { class: "notice", role: "status" });
  const form = h("form", { class: "card dialog-form" },
    h("h2", {}, "Change password"),
    h("label", {}, "Current password", h("input", { name: "old", type: "password", autocomplete: "current-password", required: true })),
    h("label", {}, "New password", h("input", { name: "new1", type: "password", autocomplete: "new-password", required: true })),
    h("label", {}, "New password again", h("input", { name: "new2", type: "password", autocomplete: "new-password", required: true })),
    message,
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Change"),
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel")));
  const dialog = h("dialog", {}, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.new1.value !== form.new2.value) {
      message.textContent = "the new passwords differ";
      return;
    }
    try {
      await send("PATCH", `/api/users/${user.id}`, {
        precondition: { password: form.old.value }, update: { password: form.new1.value },
      });
      message.textContent = "password changed";
      setTimeout(() => dialog.close(), 800);
    } catch (e) {
      message.textContent = e.status === 412 ? "incorrect password" : e.message;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

window.addEventListener("hashchange", route);
route();
