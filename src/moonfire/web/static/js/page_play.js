// Playback: a camera and day (a calendar enabling only days with video), the timeline of every
// camera on one axis, the player with the wall-clock time of the frame on screen, jump to a
// date and time, previous/next recording, speeds, frame steps, a link to the moment shown, and
// export of a range (its size shown before the download).
//
// URL: #/play?camera=NAME&t=2026-12-01T15:15:36 (the CLI's time format, in the server's zone).

import { h, fill, notice } from "./dom.js";
import { getJson, downloadSize, streamBase } from "./api.js";
import { Timeline } from "./timeline.js";
import { SegmentPlayer } from "./player.js";
import {
  dayBounds, dayKey, formatMoment, formatDateTime, formatClock, parseMoment, monthGrid, ms90k, to90k,
} from "./timecalc.js";
import {
  coalesceSpans, previousStart, nextStart, exportSpecs, rowFps, formatBytes, rowAt,
} from "./timeline_math.js";

const SPEEDS = [0.5, 1, 2, 4, 8, 16];
const HOUR_90K = 3600 * 90000;

function recordingsUrl(camera, type, start, end, split = HOUR_90K) {
  const q = new URLSearchParams({ startTime90k: Math.floor(start), endTime90k: Math.ceil(end) });
  if (split) q.set("split90k", split);
  return `${streamBase(camera.uuid, type)}/recordings?${q}`;
}

function daysOf(camera) {
  const days = new Set();
  for (const s of Object.values(camera.streams)) for (const d of Object.keys(s.days || {})) days.add(d);
  return days;
}

export async function playPage(root, params, app) {
  const zone = app.zone;
  const cameras = app.top.cameras.filter((c) => c.streams.main);
  if (cameras.length === 0) {
    root.append(notice("No cameras yet.", "info"));
    return {};
  }
  let camera = app.camera(params.get("camera") || "") || cameras[0];
  let t = null; // the moment shown, 90k
  if (params.get("t")) {
    try {
      t = to90k(parseMoment(params.get("t"), zone));
    } catch (e) {
      root.append(notice(e.message, "error"));
    }
  }
  if (params.get("camera") && app.camera(params.get("camera")) === null) {
    root.append(notice(`no camera named ${JSON.stringify(params.get("camera"))}`, "error"));
  }
  let day = t !== null ? dayKey(ms90k(t), zone) : null;
  let rowsByCamera = new Map();
  let stopped = false;

  // ---- elements --------------------------------------------------------------------------
  const cameraSelect = h("select", { id: "camera-select", "aria-label": "camera" },
    cameras.map((c) => h("option", { value: c.shortName, selected: c === camera }, c.shortName)));
  const calendar = h("div", { class: "calendar", id: "calendar" });
  const clock = h("div", { class: "clock", id: "clock", "aria-live": "off" }, "—");
  const stateLine = h("div", { class: "player-state", id: "player-state", role: "status" });
  const jumpInput = h("input", { id: "jump", placeholder: "YYYY-MM-DDTHH:MM:SS", size: 19, "aria-label": "jump to" });
  const speedSelect = h("select", { id: "speed", "aria-label": "speed" },
    SPEEDS.map((s) => h("option", { value: s, selected: s === 1 }, `${s}×`)));
  const playButton = h("button", { type: "button", id: "play-pause", title: "play / pause (space)" }, "▶");
  const linkInput = h("input", { id: "moment-link", readonly: true, "aria-label": "link to this moment" });
  const exportFrom = h("input", { id: "export-from", placeholder: "start", size: 19, "aria-label": "export start" });
  const exportTo = h("input", { id: "export-to", placeholder: "end", size: 19, "aria-label": "export end" });
  const exportTs = h("input", { type: "checkbox", id: "export-ts" });
  const exportSize = h("span", { id: "export-size", class: "muted" });
  const exportLink = h("a", { id: "export-download", class: "button disabled", "aria-disabled": "true" }, "Download .mp4");
  const syncToggle = h("button", { type: "button", id: "sync-toggle", title: "play every camera at the same moment" }, "All cameras");
  const syncGrid = h("div", { class: "sync-grid", id: "sync-grid", hidden: true });
  const selectToggle = h("button", { type: "button", id: "select-range", title: "drag on the timeline to select" }, "Select range");

  const timeline = new Timeline({
    zone,
    onScrub: (at, final) => { scrubTo(at, final); },
    onSelect: (sel) => {
      selectToggle.classList.remove("active");
      timeline.selectMode = false;
      if (sel) {
        exportFrom.value = formatMoment(ms90k(sel.start), zone);
        exportTo.value = formatMoment(ms90k(sel.end), zone);
        updateExport();
      }
    },
  });

  const player = new SegmentPlayer(streamBase(camera.uuid, "main"), {
    onTime: (at) => showTime(at),
    onNeedRows: async (after) => moreRows(after),
    onState: (state, text, download) => {
      stateLine.dataset.state = state;
      fill(stateLine, state === "ok" ? "" : text,
        download ? [" ", h("a", { href: download, download: "", class: "button" }, "Download the recording")] : null);
      if (state === "end" || state === "unsupported") playButton.textContent = "▶";
    },
  });

  window.moonfire.player = player; // for the console and the tests
  root.append(
    h("div", { class: "toolbar" }, h("h1", {}, "Playback"), cameraSelect,
      h("form", { class: "jump", onsubmit: (e) => { e.preventDefault(); jump(jumpInput.value); } },
        jumpInput, h("button", { type: "submit" }, "Go"))),
    h("div", { class: "play-layout" },
      h("div", { class: "play-main" },
        h("div", { class: "screen" }, player.el, clock),
        syncGrid,
        stateLine,
        h("div", { class: "controls" },
          h("button", { type: "button", id: "prev-rec", title: "previous recording", onclick: () => goRecording(-1) }, "« rec"),
          h("button", { type: "button", id: "step-back", title: "one frame back", onclick: () => step(-1) }, "◀|"),
          playButton,
          h("button", { type: "button", id: "step-fwd", title: "one frame forward", onclick: () => step(1) }, "|▶"),
          h("button", { type: "button", id: "next-rec", title: "next recording", onclick: () => goRecording(1) }, "rec »"),
          speedSelect, syncToggle,
          h("button", { type: "button", id: "copy-link", onclick: copyLink }, "Copy link"),
          linkInput),
        timeline.el,
        h("p", { class: "muted hint" }, "Drag the timeline to scrub, wheel or pinch to zoom, shift-drag to select a range to export.")),
      h("aside", { class: "play-side" }, calendar)),
    h("section", { class: "export card" },
      h("h2", {}, "Export"),
      h("div", { class: "row wrap" }, selectToggle,
        h("label", {}, "from ", exportFrom), h("label", {}, "to ", exportTo),
        h("label", {}, exportTs, " timestamp subtitles"),
        exportSize, exportLink)));

  // ---- behaviour -------------------------------------------------------------------------
  // ---- the other cameras, in sync with this one --------------------------------------
  let synced = []; // [{camera, player, label}]

  function startSync() {
    stopSync();
    synced = cameras.filter((c) => c !== camera).map((c) => {
      const label = h("span", { class: "sync-state" });
      const tile = h("div", { class: "sync-tile", dataset: { camera: c.shortName } });
      const p = new SegmentPlayer(streamBase(c.uuid, "main"), {
        onState: (state, text) => { label.textContent = state === "ok" ? "" : text; },
        onTime: (at) => { tile.dataset.t90k = String(Math.round(at)); },
      });
      p.setRows(rowsByCamera.get(c.shortName) || []);
      p.setRate(player.rate);
      tile.append(p.el, h("div", { class: "tile-label" }, h("span", { class: "name" }, c.shortName), label));
      syncGrid.append(tile);
      return { camera: c, player: p };
    });
    syncGrid.hidden = synced.length === 0;
    syncToggle.classList.add("active");
    if (t !== null) followAll(t, true);
  }

  function stopSync() {
    for (const s of synced) s.player.stop();
    synced = [];
    syncGrid.replaceChildren();
    syncGrid.hidden = true;
    syncToggle.classList.remove("active");
  }

  /** Keep the other cameras at this moment: seek those more than 0.3 s off (or all, when
   *  `force`), and play or pause them with this one. */
  let following = false;
  async function followAll(at, force = false) {
    if (following && !force) return;
    following = true;
    try {
      await Promise.all(synced.map(async (s) => {
        s.player.setRows(rowsByCamera.get(s.camera.shortName) || []);
        s.player.wantPlaying = player.playing;
        if (force || s.player.time === null || Math.abs(s.player.time - at) > 0.3 * 90000) {
          await s.player.seek(at);
        }
        if (player.playing) s.player.play(); else s.player.pause();
      }));
    } finally {
      following = false;
    }
  }

  syncToggle.addEventListener("click", () => { if (synced.length) stopSync(); else startSync(); });

  let lastFollow = 0;
  function showTime(at) {
    if (synced.length && Date.now() - lastFollow > 1000) {
      lastFollow = Date.now();
      followAll(at);
    }
    t = at;
    clock.textContent = `${formatDateTime(ms90k(at), zone)}.${String(Math.floor(ms90k(at) % 1000)).padStart(3, "0")}`;
    clock.dataset.t90k = String(Math.round(at));
    timeline.setCursor(at);
    linkInput.value = momentLink();
  }

  /** The moment shown, to the nearest second (the frame on screen at a whole second is a
   *  little before it: the link must not drift back a second each time it is copied). */
  function linkMoment() {
    return formatMoment(Math.round(ms90k(t) / 1000) * 1000, zone);
  }

  function momentLink() {
    if (t === null) return "";
    const q = `camera=${encodeURIComponent(camera.shortName)}&t=${linkMoment()}`;
    return `${location.origin}${location.pathname}#/play?${q}`;
  }

  function keepUrl() {
    if (t === null) return;
    const q = `camera=${encodeURIComponent(camera.shortName)}&t=${linkMoment()}`;
    history.replaceState(null, "", `#/play?${q}`);
  }

  async function copyLink() {
    const text = momentLink();
    linkInput.value = text;
    linkInput.select();
    try {
      await navigator.clipboard.writeText(text);
      stateFlash("link copied");
    } catch {
      document.execCommand?.("copy");
      stateFlash("link selected: copy it");
    }
  }

  function stateFlash(text) {
    const n = h("span", { class: "flash", id: "flash" }, text);
    stateLine.append(n);
    setTimeout(() => n.remove(), 2000);
  }

  async function fetchRows(c, start, end) {
    const out = await getJson(recordingsUrl(c, "main", start, end));
    return out.recordings.sort((a, b) => a.startTime90k - b.startTime90k);
  }

  async function loadDay(key) {
    day = key;
    const [s, e] = dayBounds(key, zone).map(to90k);
    timeline.setDay(s, e);
    const results = await Promise.all(cameras.map((c) => fetchRows(c, s, e).catch(() => [])));
    if (stopped) return;
    rowsByCamera = new Map(cameras.map((c, i) => [c.shortName, results[i]]));
    player.setRows(rowsByCamera.get(camera.shortName));
    drawLanes();
    drawCalendar();
  }

  function drawLanes() {
    timeline.setLanes(cameras.map((c) => ({
      label: c.shortName, selected: c === camera, spans: coalesceSpans(rowsByCamera.get(c.shortName) || []),
    })));
    window.moonfire.timeline = timeline;
    window.moonfire.spans = Object.fromEntries(cameras.map((c) => [c.shortName, coalesceSpans(rowsByCamera.get(c.shortName) || [])]));
  }

  /** Rows recorded since the page listed them: the day again (and its lanes) while `after`
   *  is in it, else the day after too (playing on past midnight). */
  async function moreRows(after) {
    const [, dayEnd] = dayBounds(day, zone).map(to90k);
    if (after < dayEnd) {
      await refreshDay();
      return player.rows;
    }
    const rows = await fetchRows(camera, Math.min(after, player.rows[0]?.startTime90k ?? after), after + 24 * HOUR_90K);
    rowsByCamera.set(camera.shortName, rows);
    return rows;
  }

  async function refreshDay() {
    const [s, e] = dayBounds(day, zone).map(to90k);
    const results = await Promise.all(cameras.map((c) => fetchRows(c, s, e).catch(() => null)));
    if (stopped) return;
    cameras.forEach((c, i) => { if (results[i] !== null) rowsByCamera.set(c.shortName, results[i]); });
    player.setRows(rowsByCamera.get(camera.shortName) || []);
    drawLanes();
  }

  // Today's timeline grows as the cameras record.
  const refreshTimer = setInterval(() => {
    if (!stopped && day === dayKey(Date.now(), zone) && !player.busy) refreshDay();
  }, 10000);

  let monthShown = null;
  function drawCalendar() {
    const days = daysOf(camera);
    const [y, m] = (monthShown || day || dayKey(Date.now(), zone)).split("-").map(Number);
    const today = dayKey(Date.now(), zone);
    const shift = (n) => {
      const d = new Date(Date.UTC(y, m - 1 + n, 1));
      monthShown = `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}-01`;
      drawCalendar();
    };
    const title = new Date(Date.UTC(y, m - 1, 1)).toLocaleString("en", { month: "long", year: "numeric", timeZone: "UTC" });
    fill(calendar,
      h("div", { class: "cal-head" },
        h("button", { type: "button", onclick: () => shift(-1), "aria-label": "previous month" }, "‹"),
        h("span", {}, title),
        h("button", { type: "button", onclick: () => shift(1), "aria-label": "next month" }, "›")),
      h("table", {},
        h("thead", {}, h("tr", {}, ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"].map((d) => h("th", {}, d)))),
        h("tbody", {}, monthGrid(y, m).map((week) => h("tr", {}, week.map((key) => h("td", {},
          key === null ? "" : h("button", {
            type: "button", disabled: !days.has(key), dataset: { day: key },
            class: [key === day ? "selected" : "", key === today ? "today" : ""].join(" ").trim() || null,
            onclick: () => openDay(key),
          }, String(Number(key.slice(8)))))))))));
  }

  async function openDay(key) {
    await loadDay(key);
    const rows = player.rows;
    if (rows.length) await scrubTo(rows[0].startTime90k, true);
  }

  // Scrubbing asks for a frame per pointer move; only the latest one matters: one loop seeks
  // to whatever was asked last, and every caller waits for the loop to settle.
  let scrubbing = null;
  let scrubLoop = null;
  function scrubTo(at, final) {
    scrubbing = at;
    if (scrubLoop === null) {
      player.busy = true;
      scrubLoop = (async () => {
        try {
          while (scrubbing !== null) {
            const want = scrubbing;
            scrubbing = null;
            await player.seek(want);
          }
          if (synced.length) followAll(t ?? at, true);
        } finally {
          player.busy = false;
          scrubLoop = null;
        }
      })();
    }
    return scrubLoop.then(() => { if (final) keepUrl(); });
  }

  async function jump(text) {
    let at;
    try {
      at = to90k(parseMoment(text, zone));
    } catch (e) {
      fill(stateLine, e.message);
      stateLine.dataset.state = "error";
      return;
    }
    const key = dayKey(ms90k(at), zone);
    if (key !== day) await loadDay(key);
    await scrubTo(at, true);
  }

  function goRecording(direction) {
    const rows = player.rows;
    const at = t ?? 0;
    const row = direction < 0 ? previousStart(rows, at) : nextStart(rows, at);
    if (row === null) {
      stateFlash(direction < 0 ? "no earlier recording this day" : "no later recording this day");
      return;
    }
    scrubTo(row.startTime90k, true);
  }

  function step(frames) {
    playButton.textContent = "▶";
    const row = player.row;
    player.step(frames, row ? rowFps(row) : 0);
  }

  playButton.addEventListener("click", () => {
    if (player.playing) {
      player.pause();
      for (const s of synced) s.player.pause();
      playButton.textContent = "▶";
      keepUrl();
    } else {
      player.play();
      if (synced.length) followAll(t ?? 0, true);
      playButton.textContent = "||";
    }
  });
  speedSelect.addEventListener("change", () => {
    player.setRate(Number(speedSelect.value));
    for (const s of synced) s.player.setRate(Number(speedSelect.value));
  });
  cameraSelect.addEventListener("change", async () => {
    camera = app.camera(cameraSelect.value);
    const at = t;
    player.stop();
    player.base = streamBase(camera.uuid, "main");
    player.slots.forEach((s) => { s.row = null; s.ready = null; });
    player.setRows(rowsByCamera.get(camera.shortName) || []);
    drawLanes();
    drawCalendar();
    if (synced.length) startSync();
    if (at !== null) await scrubTo(at, true);
  });
  selectToggle.addEventListener("click", () => {
    timeline.selectMode = !timeline.selectMode;
    selectToggle.classList.toggle("active", timeline.selectMode);
  });
  const onKey = (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (e.key === " ") { e.preventDefault(); playButton.click(); }
    else if (e.key === ",") step(-1);
    else if (e.key === ".") step(1);
  };
  document.addEventListener("keydown", onKey);

  let exportSerial = 0;
  async function updateExport() {
    const serial = ++exportSerial;
    exportLink.classList.add("disabled");
    exportLink.setAttribute("aria-disabled", "true");
    exportLink.removeAttribute("href");
    let from, to;
    try {
      from = to90k(parseMoment(exportFrom.value, zone));
      to = to90k(parseMoment(exportTo.value, zone));
    } catch (e) {
      exportSize.textContent = exportFrom.value && exportTo.value ? e.message : "";
      return;
    }
    if (!(to > from)) {
      exportSize.textContent = "the end must be after the start";
      return;
    }
    timeline.setSelection({ start: from, end: to });
    exportSize.textContent = "measuring…";
    try {
      const rows = await fetchRows(camera, from, to);
      const specs = exportSpecs(rows, from, to);
      if (specs.length === 0) {
        exportSize.textContent = "nothing recorded in this range";
        return;
      }
      const q = specs.map((s) => `s=${encodeURIComponent(s)}`).join("&");
      const url = `${streamBase(camera.uuid, "main")}/view.mp4?${q}${exportTs.checked ? "&ts=true" : ""}`;
      const size = await downloadSize(url);
      if (serial !== exportSerial) return;
      exportSize.textContent = `${formatBytes(size)} (${formatClock(ms90k(from), zone)}–${formatClock(ms90k(to), zone)}, ${specs.length} part${specs.length === 1 ? "" : "s"})`;
      exportSize.dataset.bytes = String(size);
      exportLink.href = url;
      exportLink.setAttribute("download", `${camera.shortName}-${formatMoment(ms90k(from), zone).replace(/[-:]/g, "")}.mp4`);
      exportLink.classList.remove("disabled");
      exportLink.removeAttribute("aria-disabled");
    } catch (e) {
      if (serial === exportSerial) exportSize.textContent = e.message;
    }
  }
  for (const input of [exportFrom, exportTo]) input.addEventListener("change", updateExport);
  exportTs.addEventListener("change", updateExport);

  // ---- start -----------------------------------------------------------------------------
  const days = [...daysOf(camera)].sort();
  if (day === null) day = days.length ? days[days.length - 1] : dayKey(Date.now(), zone);
  await loadDay(day);
  if (t === null) {
    const rows = player.rows;
    const last = rows[rows.length - 1];
    if (last) t = Math.max(last.startTime90k, last.endTime90k - 10 * 90000);
  }
  if (t !== null) {
    // Open on the hour around the moment (a whole day makes a minute's recording a pixel).
    timeline.axis.start = t - 1800 * 90000;
    timeline.axis.end = t + 1800 * 90000;
    timeline.axis.clamp();
    timeline.draw();
    jumpInput.value = formatMoment(ms90k(t), zone);
    const found = rowAt(player.rows, t);
    if (found === null) {
      showTime(t);
      fill(stateLine, `nothing recorded at or after ${formatDateTime(ms90k(t), zone)} on this day`);
    } else {
      await scrubTo(t, false);
    }
  } else {
    fill(stateLine, "nothing recorded on this day");
  }
  return {
    stop() {
      stopped = true;
      clearInterval(refreshTimer);
      stopSync();
      timeline.destroy();
      player.stop();
      document.removeEventListener("keydown", onKey);
    },
  };
}
