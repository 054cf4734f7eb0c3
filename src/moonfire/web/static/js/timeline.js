// The timeline drawn on a canvas: one lane per camera on one time axis (the day, zoomable from
// 24 h down to a minute), recorded spans filled and gaps left empty, the play position, an
// export selection, and the time under the pointer.  Mouse: drag to scrub, wheel to zoom,
// shift-drag (or "select" mode) to select a range.  Touch: one finger scrubs, two pinch/pan.
// The arithmetic is timeline_math.js's; this file only draws and listens.

import { Axis, ticks, clipSpans } from "./timeline_math.js";
import { formatClock, ms90k } from "./timecalc.js";
import { h } from "./dom.js";

const AXIS_PX = 22;
const LANE_PX = 26;
const LABEL_PX = 0;

export class Timeline {
  constructor({ zone, onScrub, onSelect }) {
    this.zone = zone;
    this.onScrub = onScrub || (() => {});
    this.onSelect = onSelect || (() => {});
    this.lanes = [];
    this.cursor = null;
    this.selection = null;
    this.hoverX = null;
    this.selectMode = false;
    this.canvas = h("canvas", { class: "timeline-canvas", "aria-label": "timeline" });
    this.hoverLabel = h("span", { class: "hover-time", "aria-live": "off" });
    this.el = h("div", { class: "timeline" }, this.canvas, this.hoverLabel);
    this.axis = new Axis(0, 86400 * 90000, 600);
    this.pointers = new Map();
    this.drag = null;
    this.listen();
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.el);
  }

  /** Stop watching the element's size (the page is going away). */
  destroy() {
    this.resizeObserver.disconnect();
  }

  setDay(dayStart, dayEnd) {
    this.axis = new Axis(dayStart, dayEnd, this.width());
    this.draw();
  }

  /** lanes: [{label, spans: [{start, end}], selected}] */
  setLanes(lanes) {
    this.lanes = lanes;
    this.draw();
  }

  setCursor(t) {
    this.cursor = t;
    if (t !== null && (t < this.axis.start || t > this.axis.end) &&
        t >= this.axis.dayStart && t <= this.axis.dayEnd && !this.drag) {
      this.axis.centre(t);
    }
    this.draw();
  }

  setSelection(sel) {
    this.selection = sel;
    this.draw();
  }

  width() {
    return Math.max(100, Math.floor(this.el.clientWidth || 600));
  }

  timeAtClientX(clientX) {
    const rect = this.canvas.getBoundingClientRect();
    const x = Math.min(Math.max(clientX - rect.left - LABEL_PX, 0), this.axis.width);
    return this.axis.tOf(x);
  }

  /** The client x of time t (for tests and the hover label). */
  clientXOf(t) {
    const rect = this.canvas.getBoundingClientRect();
    return rect.left + LABEL_PX + this.axis.xOf(t);
  }

  listen() {
    const c = this.canvas;
    c.style.touchAction = "none";
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = c.getBoundingClientRect();
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
        this.axis.pan(e.deltaX);
      } else {
        this.axis.zoomAt(e.clientX - rect.left - LABEL_PX, Math.exp(e.deltaY * 0.002));
      }
      this.draw();
    }, { passive: false });
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture(e.pointerId);
      this.pointers.set(e.pointerId, { x: e.clientX });
      if (this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        this.drag = { kind: "pinch", dist: Math.abs(a.x - b.x) || 1, mid: (a.x + b.x) / 2 };
        return;
      }
      const t = this.timeAtClientX(e.clientX);
      if (e.shiftKey || this.selectMode) {
        this.drag = { kind: "select", from: t };
        this.setSelection({ start: t, end: t });
      } else {
        this.drag = { kind: "scrub" };
        this.cursor = t;
        this.onScrub(t, false);
        this.draw();
      }
    });
    c.addEventListener("pointermove", (e) => {
      const rect = c.getBoundingClientRect();
      this.hoverX = e.clientX - rect.left - LABEL_PX;
      if (this.pointers.has(e.pointerId)) this.pointers.get(e.pointerId).x = e.clientX;
      const t = this.timeAtClientX(e.clientX);
      this.hoverLabel.textContent = formatClock(ms90k(t), this.zone);
      this.hoverLabel.style.left = `${Math.max(0, Math.min(this.hoverX - 30, this.axis.width - 70))}px`;
      if (this.drag?.kind === "pinch" && this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        const dist = Math.abs(a.x - b.x) || 1;
        const mid = (a.x + b.x) / 2;
        this.axis.pan(this.drag.mid - mid);
        this.axis.zoomAt(mid - rect.left - LABEL_PX, this.drag.dist / dist);
        this.drag.dist = dist;
        this.drag.mid = mid;
      } else if (this.drag?.kind === "select") {
        const from = this.drag.from;
        this.selection = { start: Math.min(from, t), end: Math.max(from, t) };
      } else if (this.drag?.kind === "scrub") {
        this.cursor = t;
        this.onScrub(t, false);
      }
      this.draw();
    });
    const up = (e) => {
      this.pointers.delete(e.pointerId);
      const drag = this.drag;
      if (this.pointers.size > 0) return;
      this.drag = null;
      if (drag?.kind === "scrub") this.onScrub(this.timeAtClientX(e.clientX), true);
      else if (drag?.kind === "select" && this.selection) {
        if (this.selection.end - this.selection.start < 90000) this.selection = null;
        this.onSelect(this.selection);
      }
      this.draw();
    };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
    c.addEventListener("pointerleave", () => { this.hoverX = null; this.hoverLabel.textContent = ""; this.draw(); });
  }

  draw() {
    const width = this.width();
    this.axis.width = width;
    const height = AXIS_PX + LANE_PX * Math.max(1, this.lanes.length);
    const dpr = window.devicePixelRatio || 1;
    const c = this.canvas;
    if (c.width !== width * dpr || c.height !== height * dpr) {
      c.width = width * dpr;
      c.height = height * dpr;
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    g.fillStyle = "#1b1f24";
    g.fillRect(0, 0, width, height);
    const axis = this.axis;
    // Lanes: recorded spans.
    this.lanes.forEach((lane, i) => {
      const y = AXIS_PX + i * LANE_PX;
      g.fillStyle = lane.selected ? "#242a31" : "#1f2328";
      g.fillRect(0, y + 1, width, LANE_PX - 2);
      g.fillStyle = lane.selected ? "#3fa3ff" : "#2f6fa8";
      for (const s of clipSpans(lane.spans, axis.start, axis.end)) {
        const x0 = axis.xOf(s.start);
        const x1 = Math.max(axis.xOf(s.end), x0 + 1);
        g.fillRect(x0, y + 4, x1 - x0, LANE_PX - 8);
      }
      g.fillStyle = "#c9d1d9";
      g.font = "11px system-ui, sans-serif";
      g.fillText(lane.label, 4, y + LANE_PX - 9);
    });
    // Ticks.
    g.strokeStyle = "#3a4048";
    g.fillStyle = "#9aa4ae";
    g.font = "11px system-ui, sans-serif";
    g.beginPath();
    for (const tick of ticks(axis, this.zone, 64)) {
      const x = Math.round(axis.xOf(tick.t)) + 0.5;
      g.moveTo(x, AXIS_PX - 6);
      g.lineTo(x, height);
      g.fillText(tick.label, x + 3, 14);
    }
    g.stroke();
    // Selection.
    if (this.selection) {
      const x0 = axis.xOf(this.selection.start);
      const x1 = axis.xOf(this.selection.end);
      g.fillStyle = "rgba(255, 200, 60, 0.25)";
      g.fillRect(x0, AXIS_PX, Math.max(1, x1 - x0), height - AXIS_PX);
      g.fillStyle = "#ffc83c";
      g.fillRect(x0, AXIS_PX, 1, height - AXIS_PX);
      g.fillRect(x1, AXIS_PX, 1, height - AXIS_PX);
    }
    // Hover and play position.
    if (this.hoverX !== null) {
      g.fillStyle = "rgba(255,255,255,0.35)";
      g.fillRect(Math.round(this.hoverX), 0, 1, height);
    }
    if (this.cursor !== null && this.cursor >= axis.start && this.cursor <= axis.end) {
      g.fillStyle = "#ff5a4f";
      g.fillRect(Math.round(axis.xOf(this.cursor)) - 1, 0, 2, height);
    }
  }
}
