// Setup (admin users): cameras and their streams (URL, credentials, budgets, directory) with a
// "Test connection" that shows what the probe found, and users.  Cameras go through
// /api/admin/cameras (moonfire's own endpoints), users through Moonfire's /api/users/.

import { h, fill, notice } from "./dom.js";
import { getJson, send } from "./api.js";
import { formatBytes } from "./timeline_math.js";

export async function setupPage(root, _params, app) {
  if (!app.isAdmin) {
    root.append(notice("Setup needs the adminUsers permission.", "error"));
    return {};
  }
  const camerasBox = h("section", { class: "card", id: "setup-cameras" });
  const usersBox = h("section", { class: "card", id: "setup-users" });
  root.append(h("div", { class: "toolbar" }, h("h1", {}, "Setup")), camerasBox, usersBox);
  await Promise.all([drawCameras(camerasBox, app), drawUsers(usersBox, app)]);
  return {};
}

function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", {}, hint) : null);
}

async function drawCameras(box, app) {
  const doc = await getJson("/api/admin/cameras");
  const list = h("div", { class: "camera-list" }, doc.cameras.length === 0 ? notice("No cameras yet.") : null,
    doc.cameras.map((c) => cameraRow(c, doc, box, app)));
  fill(box, h("h2", {}, "Cameras"), list,
    h("details", { class: "add-camera", open: doc.cameras.length === 0 },
      h("summary", {}, "Add a camera"), cameraForm(null, doc, box, app)));
}

function cameraRow(c, doc, box, app) {
  const streams = Object.entries(c.streams).map(([type, s]) =>
    `${type}: ${s.url || "(no URL)"}${s.record ? `, ${formatBytes(s.retainBytes)}` : ", not recorded"}`);
  return h("details", { class: "camera-row", dataset: { camera: c.shortName } },
    h("summary", {}, h("strong", {}, c.shortName), " ", h("span", { class: "muted" }, streams.join(" · "))),
    cameraForm(c, doc, box, app));
}

/** The add (camera null) or edit form of a camera. */
function cameraForm(c, doc, box, app) {
  const s = (type) => c?.streams?.[type] || {};
  const dirOptions = (type) => doc.dirs.map((d) => h("option", { value: d.name, selected: s(type).sampleFileDir === d.name }, d.name));
  const form = h("form", { class: "camera-form" });
  const message = h("div", { class: "form-message", role: "status" });
  const probeOut = h("div", { class: "probe-result" });
  const input = (name, attrs = {}) => h("input", { name, ...attrs });
  form.append(
    h("div", { class: "fields" },
      field("Name", input("shortName", { value: c?.shortName ?? "", required: true })),
      field("Description", input("description", { value: c?.description ?? "" })),
      field("Username", input("username", { value: c?.username ?? "", autocomplete: "off" })),
      field("Password", input("password", { type: "password", autocomplete: "new-password",
        placeholder: c?.hasPassword ? "(unchanged)" : "" })),
      field("Rotate every (s)", input("rotateIntervalSec", { type: "number", min: 1, max: 299, value: c?.rotateIntervalSec ?? 60 }))),
    ...["main", "sub"].map((type) => h("fieldset", { class: "fields" }, h("legend", {}, `${type} stream`),
      field("URL", input(`${type}.url`, { value: s(type).url ?? "", placeholder: "rtsp://camera/stream", class: "url" }),
        s(type).urlHasPassword ? "its password is hidden; retype the URL to change it" : null),
      field("Budget", input(`${type}.retain`, { value: s(type).retainBytes ? formatBytes(s(type).retainBytes).replace(" ", "") : "", placeholder: "e.g. 10GiB" })),
      field("Max age (days)", input(`${type}.maxAgeDays`, { type: "number", min: 1, value: s(type).maxAgeDays ?? "" })),
      field("Directory", h("select", { name: `${type}.sampleFileDir` }, dirOptions(type))),
      h("button", { type: "button", class: "probe", dataset: { stream: type }, onclick: () => probe(type) }, "Test connection"))),
    probeOut, message,
    h("div", { class: "row" },
      h("button", { type: "submit" }, c ? "Save" : "Add camera"),
      c ? h("button", { type: "button", class: "danger", onclick: remove }, "Remove") : null));

  function body() {
    const v = (name) => form.elements[name].value.trim();
    const out = { shortName: v("shortName"), description: v("description"), username: v("username") || null,
      rotateIntervalSec: Number(v("rotateIntervalSec") || 60), streams: {} };
    if (form.elements.password.value) out.password = form.elements.password.value;
    for (const type of ["main", "sub"]) {
      const url = v(`${type}.url`);
      const stream = {};
      if (url !== (s(type).url ?? "")) stream.url = url;
      // The budget as shown is rounded ("1.15GiB"): send it only when the user changed it.
      const retain = form.elements[`${type}.retain`];
      if (c === null || retain.value !== retain.defaultValue) stream.retain = v(`${type}.retain`) || "0";
      stream.maxAgeDays = v(`${type}.maxAgeDays`) === "" ? null : Number(v(`${type}.maxAgeDays`));
      stream.sampleFileDir = v(`${type}.sampleFileDir`) || null;
      if (type === "sub" && !url && !c?.streams?.sub) continue;
      out.streams[type] = stream;
    }
    return out;
  }

  async function probe(type) {
    const url = form.elements[`${type}.url`].value.trim();
    fill(probeOut, notice(`testing ${url || "(no URL)"}…`));
    try {
      const body = { url, username: form.elements.username.value || null, transport: "auto" };
      if (form.elements.password.value) body.password = form.elements.password.value;
      if (c) body.camera = c.shortName;
      const report = await send("POST", "/api/admin/probe", body);
      fill(probeOut, h("div", { class: `probe-report ${report.recordable ? "ok" : "bad"}` },
        h("strong", {}, report.recordable ? "moonfire can record this" : `moonfire can't record this: ${report.reason || "unknown reason"}`),
        h("table", {}, Object.entries(report).filter(([k]) => !["recordable", "reason"].includes(k)).map(([k, val]) =>
          h("tr", {}, h("th", {}, k), h("td", {}, typeof val === "object" && val !== null ? JSON.stringify(val) : String(val)))))));
    } catch (e) {
      fill(probeOut, notice(e.message, "error"));
    }
  }

  async function remove() {
    if (!confirm(`Remove camera ${c.shortName}? (only possible once it has no recordings)`)) return;
    try {
      await send("DELETE", `/api/admin/cameras/${c.uuid}`, {});
      await drawCameras(box, app);
    } catch (e) {
      fill(message, notice(e.message, "error"));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(message, notice("saving…"));
    try {
      const reply = c
        ? await send("PATCH", `/api/admin/cameras/${c.uuid}`, { camera: body() })
        : await send("POST", "/api/admin/cameras", { camera: body() });
      await drawCameras(box, app);
      box.prepend(notice(reply?.message || "saved", "info"));
    } catch (e) {
      fill(message, notice(e.message, "error"));
    }
  });
  return form;
}

const PERMISSIONS = [["viewVideo", "view video"], ["readCameraConfigs", "read camera configs"],
  ["updateSignals", "update signals"], ["adminUsers", "admin"]];

async function drawUsers(box, app) {
  const { users } = await getJson("/api/users/");
  const message = h("div", { role: "status" });
  const perms = (p = {}, prefix = "") => PERMISSIONS.map(([key, label]) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: prefix + key, checked: Boolean(p[key]) }), label));
  const rows = users.map(({ id, user }) => {
    const form = h("form", { class: "user-row row wrap", dataset: { user: user.username } },
      h("strong", {}, user.username), user.password === null ? h("span", { class: "muted" }, "(no password)") : null,
      perms(user.permissions || {}),
      h("input", { name: "password", type: "password", placeholder: "new password", autocomplete: "new-password" }),
      h("button", { type: "submit" }, "Save"),
      app.top.user?.id === id ? null : h("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Delete user ${user.username}?`)) return;
        try { await send("DELETE", `/api/users/${id}`, {}); await drawUsers(box, app); } catch (e) { fill(message, notice(e.message, "error")); }
      } }, "Delete"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const update = { permissions: Object.fromEntries(PERMISSIONS.map(([k]) => [k, form.elements[k].checked])) };
      if (form.elements.password.value) update.password = form.elements.password.value;
      try { await send("PATCH", `/api/users/${id}`, { update }); fill(message, notice(`${user.username} saved`)); }
      catch (e) { fill(message, notice(e.message, "error")); }
    });
    return form;
  });
  const add = h("form", { class: "row wrap add-user" },
    h("input", { name: "username", placeholder: "new user", required: true, autocomplete: "off" }),
    h("input", { name: "password", type: "password", placeholder: "password", autocomplete: "new-password" }),
    perms({ viewVideo: true }, "new-"),
    h("button", { type: "submit" }, "Add user"));
  add.addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = { username: add.elements.username.value.trim(),
      permissions: Object.fromEntries(PERMISSIONS.map(([k]) => [k, add.elements[`new-${k}`].checked])) };
    if (add.elements.password.value) user.password = add.elements.password.value;
    try { await send("POST", "/api/users/", { user }); await drawUsers(box, app); } catch (e) { fill(message, notice(e.message, "error")); }
  });
  fill(box, h("h2", {}, "Users"), rows, add, message);
}
