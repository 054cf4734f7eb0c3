// The live grid: layouts 1, 2x2, 3x3 and one big + five small; each tile plays a camera's sub
// stream when it records one (less to decode), else its main stream, and shows the camera's
// name and state.  Double click: full screen.  More cameras than tiles: pages.

import { h, fill, notice } from "./dom.js";
import { LivePlayer } from "./live.js";
import { streamBase } from "./api.js";

const LAYOUTS = { "1": 1, "2x2": 4, "3x3": 9, "1+5": 6 };
const STATE_TEXT = {
  connecting: "connecting…", live: "live", reconnecting: "reconnecting", failed: "failed",
  unsupported: "can't play here",
};

/** The stream live view should use: the sub stream if it has a live feed (it records, or
 *  the recorder keeps it for live view only), else main, else none. */
export function liveStream(camera) {
  for (const type of ["sub", "main"]) {
    const s = camera.streams[type];
    if (s && (s.record || s.state === "live only")) return type;
  }
  return null;
}

export async function livePage(root, params, app) {
  const cameras = app.top.cameras;
  const saved = localStorage.getItem("moonfire.layout");
  let layout = params.get("layout") || saved || (cameras.length <= 1 ? "1" : cameras.length <= 4 ? "2x2" : "3x3");
  if (!(layout in LAYOUTS)) layout = "2x2";
  let page = Number(params.get("page") || 0);
  const players = [];
  const grid = h("div", { class: "grid", id: "live-grid" });
  const pager = h("div", { class: "pager" });
  const picker = h("div", { class: "layouts", role: "group", "aria-label": "layout" },
    Object.keys(LAYOUTS).map((name) => h("button", {
      type: "button", class: name === layout ? "active" : null, dataset: { layout: name },
      onclick: () => { layout = name; localStorage.setItem("moonfire.layout", name); page = 0; draw(); },
    }, name)));
  root.append(h("div", { class: "toolbar" }, h("h1", {}, "Live"), picker, pager), grid);
  if (cameras.length === 0) {
    root.append(notice("No cameras yet." + (app.isAdmin ? " Add one in Setup." : ""), "info"));
  }

  function stopAll() {
    for (const p of players) p.stop();
    players.length = 0;
  }

  function draw() {
    stopAll();
    for (const b of picker.querySelectorAll("button")) {
      b.classList.toggle("active", b.dataset.layout === layout);
    }
    const slots = LAYOUTS[layout];
    const pages = Math.max(1, Math.ceil(cameras.length / slots));
    page = Math.min(page, pages - 1);
    fill(pager, pages > 1 ? Array.from({ length: pages }, (_, i) => h("button", {
      type: "button", class: i === page ? "active" : null,
      onclick: () => { page = i; draw(); },
    }, `page ${i + 1}`)) : null);
    grid.className = `grid layout-${layout.replace("+", "p")}`;
    const shown = cameras.slice(page * slots, page * slots + slots);
    fill(grid, shown.map((camera) => tile(camera)));
  }

  function tile(camera) {
    const type = liveStream(camera);
    const video = h("video", { muted: true, autoplay: true, playsinline: true });
    video.muted = true;
    const state = h("span", { class: "state" }, "");
    const detail = h("span", { class: "detail" }, "");
    const el = h("div", { class: "tile", dataset: { camera: camera.shortName, stream: type || "" } },
      video,
      h("div", { class: "tile-label" }, h("span", { class: "name" }, camera.shortName),
        type ? h("span", { class: "stream" }, type) : null, state),
      detail,
      h("a", { class: "tile-play", href: `#/play?camera=${encodeURIComponent(camera.shortName)}`, title: "recordings" }, "recordings ›"));
    el.addEventListener("dblclick", () => {
      if (document.fullscreenElement) document.exitFullscreen();
      else el.requestFullscreen?.().catch(() => {});
    });
    const setState = (s, why) => {
      el.dataset.state = s;
      state.textContent = STATE_TEXT[s] || s;
      detail.textContent = why || "";
      state.className = `state ${s}`;
    };
    if (type === null) {
      setState("failed", "no stream of this camera records (no URL?)");
      return el;
    }
    const player = new LivePlayer(video, `${streamBase(camera.uuid, type)}/live.m4s`, setState);
    players.push(player);
    player.start();
    return el;
  }

  draw();
  return { stop: stopAll };
}
