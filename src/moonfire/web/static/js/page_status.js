// Status: per camera and stream, recording or why not, the last frame, the bitrate and how many
// days its budget holds at that rate; per disk (admins), free space and the streams on it.

import { h, notice } from "./dom.js";
import { getJson } from "./api.js";
import { formatDateTime, ms90k } from "./timecalc.js";
import { formatBytes, daysHeld } from "./timeline_math.js";

function ago(sec) {
  if (sec === null || sec === undefined) return "never";
  if (sec < 2) return "just now";
  if (sec < 120) return `${Math.round(sec)} s ago`;
  if (sec < 7200) return `${Math.round(sec / 60)} min ago`;
  return `${(sec / 3600).toFixed(1)} h ago`;
}

export async function statusPage(root, _params, app) {
  const zone = app.zone;
  let admin = null;
  if (app.isAdmin) {
    try { admin = await getJson("/api/admin/status"); } catch (e) { root.append(notice(e.message, "error")); }
  }
  const live = new Map((admin?.streams || []).map((s) => [s.id, s]));
  const rows = [];
  for (const camera of app.top.cameras) {
    for (const [type, s] of Object.entries(camera.streams)) {
      const extra = live.get(s.id) || {};
      const seconds = s.totalDuration90k / 90000;
      const bytesPerSec = extra.recentBytesPerSec ?? (seconds > 0 ? s.totalSampleFileBytes / seconds : 0);
      const held = daysHeld(s.retainBytes, bytesPerSec);
      const state = s.state ?? (s.record ? "unknown" : "not recorded");
      const lastFrame = extra.lastFrameAgeSec !== undefined && extra.lastFrameAgeSec !== null
        ? ago(extra.lastFrameAgeSec)
        : s.maxEndTime90k ? formatDateTime(ms90k(s.maxEndTime90k), zone) : "never";
      rows.push(h("tr", { dataset: { stream: `${camera.shortName}/${type}`, state } },
        h("td", {}, camera.shortName), h("td", {}, type),
        h("td", { class: `state ${state.split(" ")[0]}` }, state, s.stateReason ? h("div", { class: "reason" }, s.stateReason) : null),
        h("td", {}, lastFrame),
        h("td", {}, bytesPerSec > 0 ? `${(bytesPerSec * 8 / 1e6).toFixed(2)} Mbit/s` : "—"),
        h("td", {}, formatBytes(s.totalSampleFileBytes), " of ", formatBytes(s.retainBytes)),
        h("td", {}, held === null ? "—" : held >= 1 ? `${held.toFixed(1)} days` : `${(held * 24).toFixed(1)} hours`)));
    }
  }
  root.append(h("div", { class: "toolbar" }, h("h1", {}, "Status"),
    h("button", { type: "button", onclick: () => app.navigate("#/status") }, "Refresh")));
  root.append(h("div", { class: "table-scroll" }, h("table", { class: "status", id: "stream-status" },
    h("thead", {}, h("tr", {}, ["Camera", "Stream", "State", "Last frame", "Bitrate", "Stored", "Budget holds"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows))));
  if (admin) {
    root.append(h("h2", {}, "Disks"), h("div", { class: "table-scroll" }, h("table", { class: "status", id: "disk-status" },
      h("thead", {}, h("tr", {}, ["Directory", "Path", "Free", "Size", "Streams", "State"].map((c) => h("th", {}, c)))),
      h("tbody", {}, admin.dirs.map((d) => h("tr", {},
        h("td", {}, d.name), h("td", { class: "path" }, d.path),
        h("td", {}, d.freeBytes === null ? "—" : formatBytes(d.freeBytes)),
        h("td", {}, d.totalBytes === null ? "—" : formatBytes(d.totalBytes)),
        h("td", {}, d.streams.join(", ") || "none"),
        h("td", {}, d.error || "ok")))))));
  } else {
    root.append(notice("Disk space is shown to admin users.", "info"));
  }
  return {};
}
