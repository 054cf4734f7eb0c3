// Playback of recordings through recording boundaries with no visible seam: each row of
// /recordings (an hour at most) is one view.mp4 in a <video>, and the next row is loaded in a
// second, hidden <video> while this one plays, then swapped in when this one ends.  Seeking is
// the browser's own (it decodes from the key frame before the time asked for).  The wall-clock
// time of the frame on screen comes from requestVideoFrameCallback's mediaTime, scaled by the
// row's wall duration over its media duration (the camera's clock drifts from the NVR's).

import { rowAt, nextRow, segmentSpec } from "./timeline_math.js";
import { h } from "./dom.js";

const codecCache = new Map(); // video sample entry id -> Promise<{type, playable}>

/** Whether this browser can play a sample entry's codec (from its init segment's type). */
export function codecOf(entryId) {
  let p = codecCache.get(entryId);
  if (p === undefined) {
    p = fetch(`/api/init/${entryId}.mp4`, { method: "HEAD", credentials: "same-origin" }).then((r) => {
      const type = r.headers.get("Content-Type") || "video/mp4";
      const probe = document.createElement("video");
      const playable = (window.MediaSource && MediaSource.isTypeSupported(type)) || probe.canPlayType(type) !== "";
      return { type, playable };
    }).catch(() => ({ type: "video/mp4", playable: true }));
    codecCache.set(entryId, p);
  }
  return p;
}

export function codecName(type) {
  const codec = (/codecs="?([^";]+)/.exec(type) || [])[1] || type;
  if (/^(hvc1|hev1)/.test(codec)) return `H.265 (${codec})`;
  return codec;
}

export class SegmentPlayer {
  /** base: the stream's API path; onTime(t90k): each frame shown; onNeedRows(afterT90k):
   *  more rows after the last one (a growing recording, the next day), resolving to rows. */
  constructor(base, { onTime, onNeedRows, onState }) {
    this.base = base;
    this.onTime = onTime || (() => {});
    this.onNeedRows = onNeedRows || (async () => []);
    this.onState = onState || (() => {});
    this.rows = [];
    this.videos = [0, 1].map(() => h("video", { muted: true, playsinline: true, preload: "auto" }));
    for (const v of this.videos) v.muted = true;
    this.slots = this.videos.map((video) => ({ video, row: null, ready: null }));
    this.active = 0;
    this.rate = 1;
    this.wantPlaying = false;
    this.time = null;
    this.el = h("div", { class: "player" }, ...this.videos);
    this.showActive();
    for (const slot of this.slots) {
      slot.video.addEventListener("ended", () => { if (slot === this.slots[this.active]) this.advance(); });
      slot.video.addEventListener("error", () => {
        if (slot === this.slots[this.active]) this.onState("error", `video error ${slot.video.error?.code ?? ""}`);
      });
      slot.video.addEventListener("timeupdate", () => {
        if (slot === this.slots[this.active] && !("requestVideoFrameCallback" in slot.video)) {
          this.report(slot, slot.video.currentTime);
        }
      });
      // A paused video that has seeked may present its new frame without a frame callback
      // (headless Chromium under load did): the seek's end says where it is.
      slot.video.addEventListener("seeked", () => {
        if (slot === this.slots[this.active]) this.report(slot, slot.video.currentTime);
      });
      this.watchFrames(slot);
    }
  }

  watchFrames(slot) {
    const v = slot.video;
    if (!("requestVideoFrameCallback" in v)) return;
    const step = (_now, meta) => {
      // While seeking, the frame presented is the one before the seek: not where we are.
      if (slot === this.slots[this.active] && !v.seeking) this.report(slot, meta.mediaTime);
      v.requestVideoFrameCallback(step);
    };
    v.requestVideoFrameCallback(step);
  }

  /** Wall seconds per media second of a slot's row (1 until its duration is known). */
  scale(slot) {
    const d = slot.video.duration;
    const wall = (slot.row.endTime90k - slot.row.startTime90k) / 90000;
    const s = Number.isFinite(d) && d > 0 ? wall / d : 1;
    return Math.abs(s - 1) < 0.01 ? s : 1;
  }

  report(slot, mediaTime) {
    if (slot.row === null) return;
    this.time = slot.row.startTime90k + mediaTime * this.scale(slot) * 90000;
    this.onTime(this.time);
  }

  get video() { return this.slots[this.active].video; }
  get row() { return this.slots[this.active].row; }

  setRows(rows) { this.rows = rows; }

  showActive() {
    this.slots.forEach((s, i) => { s.video.hidden = i !== this.active; });
  }

  url(row) { return `${this.base}/view.mp4?s=${encodeURIComponent(segmentSpec(row))}`; }

  /** Load `row` into `slot` (resolves once its metadata is known). */
  /** Whether a slot holds this row's file (rows are listed afresh as the day grows). */
  holds(slot, row) {
    return slot.row !== null && slot.ready !== null && this.url(slot.row) === this.url(row);
  }

  load(slot, row) {
    if (this.holds(slot, row)) {
      slot.row = row;
      return slot.ready;
    }
    slot.row = row;
    slot.video.playbackRate = this.rate;
    slot.ready = new Promise((resolve, reject) => {
      const v = slot.video;
      const ok = () => { v.removeEventListener("error", bad); resolve(); };
      const bad = () => {
        v.removeEventListener("loadedmetadata", ok);
        reject(new Error(`can't load ${this.url(row)}: ${v.error?.message || "video error"}`));
      };
      v.addEventListener("loadedmetadata", ok, { once: true });
      v.addEventListener("error", bad, { once: true });
      v.src = this.url(row);
      v.load();
    });
    const ready = slot.ready;
    ready.catch(() => { if (slot.ready === ready) { slot.row = null; slot.ready = null; } });
    return ready;
  }

  /** Show moment t (90k): the frame at it, or the next recording's first if t is in a gap. */
  async seek(t) {
    const serial = this.serial = (this.serial || 0) + 1;
    let found = rowAt(this.rows, t);
    if (found === null) {
      // Past the rows listed when the page loaded: the camera may have recorded more since.
      const more = await this.onNeedRows(t);
      if (serial !== this.serial) return false;
      if (more.length) this.rows = more;
      found = rowAt(this.rows, t);
    }
    if (found === null) {
      this.onState("gap", "nothing recorded at or after this time");
      return false;
    }
    const { row } = found;
    const codec = await codecOf(row.videoSampleEntryId);
    if (serial !== this.serial) return false;
    if (!codec.playable) {
      this.wantPlaying = false;
      this.onState("unsupported", `This browser can't play ${codecName(codec.type)}.`, this.url(row));
      return false;
    }
    let index = this.slots.findIndex((s) => this.holds(s, row));
    if (index < 0) index = this.active;
    if (index !== this.active) {
      this.slots[this.active].video.pause();
      this.active = index;
      this.showActive();
    }
    const slot = this.slots[index];
    try {
      await this.load(slot, row);
    } catch (e) {
      this.onState("error", e.message);
      return false;
    }
    if (serial !== this.serial || !this.holds(slot, row)) return false; // a later seek took over
    slot.video.currentTime = Math.max(0, (found.t - row.startTime90k) / 90000 / this.scale(slot));
    this.time = found.t;
    this.onTime(found.t);
    this.onState("ok", "");
    if (this.wantPlaying) this.play();
    this.preloadNext();
    return true;
  }

  preloadNext() {
    const row = this.row;
    if (row === null) return;
    const next = nextRow(this.rows, row);
    const other = this.slots[1 - this.active];
    if (next !== null && !this.holds(other, next)) {
      this.load(other, next).then(() => { other.video.currentTime = 0; }).catch(() => {});
    }
  }

  /** The active recording ended: go on with the next (swapping in the preloaded one). */
  async advance() {
    const row = this.row;
    if (row === null) return;
    let next = nextRow(this.rows, row);
    if (next === null || row.growing) {
      const more = await this.onNeedRows(row.endTime90k - (row.growing ? 1 : 0));
      if (more.length) this.rows = more;
      // The same recordings listed again with more at their end (one row per hour), or a
      // row after them.
      const found = rowAt(this.rows, row.endTime90k);
      next = found !== null && found.row.endTime90k > row.endTime90k + 900 ? found.row : null;
    }
    if (next === null) {
      // At the live edge: the next recording commits within a rotation; wait for it.
      const ageSec = Date.now() / 1000 - row.endTime90k / 90000;
      if (ageSec < 600 && this.wantPlaying) {
        this.onState("waiting", "waiting for the camera's next recording…");
        clearTimeout(this.waitTimer);
        this.waitTimer = setTimeout(() => { if (this.wantPlaying && this.row === row) this.advance(); }, 1000);
        return;
      }
      this.wantPlaying = false;
      this.onState("end", "the end of what is recorded");
      return;
    }
    const t = Math.max(next.startTime90k, row.startId === next.startId ? row.endTime90k : next.startTime90k);
    await this.seek(t);
  }

  play() {
    this.wantPlaying = true;
    this.video.playbackRate = this.rate;
    this.video.play().catch((e) => { if (e.name !== "AbortError") this.onState("error", String(e)); });
  }

  pause() {
    this.wantPlaying = false;
    clearTimeout(this.waitTimer);
    for (const s of this.slots) s.video.pause();
  }

  get playing() { return this.wantPlaying; }

  setRate(rate) {
    this.rate = rate;
    for (const s of this.slots) s.video.playbackRate = rate;
  }

  /** One frame forward or back (paused). */
  step(frames, fps) {
    this.pause();
    const v = this.video;
    if (this.row === null || !(fps > 0)) return;
    const to = v.currentTime + frames / fps;
    if (to < 0 || (Number.isFinite(v.duration) && to > v.duration)) {
      const t = this.row.startTime90k + to * this.scale(this.slots[this.active]) * 90000;
      this.seek(t);
      return;
    }
    v.currentTime = to;
  }

  stop() {
    this.pause();
    for (const s of this.slots) { s.video.removeAttribute("src"); s.video.load(); }
  }
}
