// The timeline's arithmetic, with no DOM: the visible window of a day and its zoom and pan,
// tick marks on local wall-clock boundaries (right across DST changes), recordings merged into
// the spans drawn, the recording that holds a moment, and the view.mp4 segments of a range.
//
// Times here are 90 kHz units, as the API gives them; the zone functions come from timecalc.js.

import { TIMESCALE, offsetMinAt, zoneParts, ms90k } from "./timecalc.js";

export const MIN_SPAN_90K = 60 * TIMESCALE; // zoom in to one minute at most

/** A window [start, end) over the day [dayStart, dayEnd), `width` pixels wide. */
export class Axis {
  constructor(dayStart, dayEnd, width, start = dayStart, end = dayEnd) {
    this.dayStart = dayStart;
    this.dayEnd = dayEnd;
    this.width = Math.max(1, width);
    this.start = start;
    this.end = end;
    this.clamp();
  }

  get span() { return this.end - this.start; }

  xOf(t) { return ((t - this.start) / this.span) * this.width; }

  tOf(x) { return this.start + (x / this.width) * this.span; }

  /** Keep the window inside the day and no narrower than a minute. */
  clamp() {
    const daySpan = this.dayEnd - this.dayStart;
    let span = Math.min(Math.max(this.end - this.start, Math.min(MIN_SPAN_90K, daySpan)), daySpan);
    let start = this.start;
    if (start < this.dayStart) start = this.dayStart;
    if (start + span > this.dayEnd) start = this.dayEnd - span;
    this.start = start;
    this.end = start + span;
  }

  /** Zoom by `factor` (< 1 zooms in) keeping the time under pixel `x` where it is. */
  zoomAt(x, factor) {
    const t = this.tOf(x);
    const frac = x / this.width;
    const span = this.span * factor;
    this.start = t - frac * span;
    this.end = this.start + span;
    this.clamp();
  }

  /** Move the window by `dx` pixels (positive: to later times). */
  pan(dx) {
    const dt = (dx / this.width) * this.span;
    this.start += dt;
    this.end += dt;
    this.clamp();
  }

  /** Centre the window on `t` (keeping its span). */
  centre(t) {
    const span = this.span;
    this.start = t - span / 2;
    this.end = this.start + span;
    this.clamp();
  }
}

const TICK_STEPS_SEC = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];

/** The tick step (seconds) that keeps ticks at least `minPx` apart. */
export function tickStepSec(axis, minPx = 60) {
  const secPerPx = axis.span / TIMESCALE / axis.width;
  for (const step of TICK_STEPS_SEC) {
    if (step / secPerPx >= minPx) return step;
  }
  return TICK_STEPS_SEC[TICK_STEPS_SEC.length - 1];
}

/** Ticks inside the window [start, end): [{t (90k), label}] at multiples of the step in local wall time.
 *  Each tick is placed with the zone offset in force at it, so on a 25-hour day the repeated
 *  hour gets its own ticks (01:00 twice) and on a 23-hour day the skipped one has none. */
export function ticks(axis, zone, minPx = 60) {
  const step = tickStepSec(axis, minPx);
  const stepMs = step * 1000;
  const out = [];
  const seen = new Set();
  const startMs = ms90k(axis.start);
  const endMs = ms90k(axis.end);
  // Walk in local time: candidate instants are local multiples of the step under each offset
  // in force within the window (at most two on a DST day).
  const offsets = new Set([offsetMinAt(startMs, zone), offsetMinAt(endMs, zone)]);
  for (const off of offsets) {
    const localStart = startMs + off * 60000;
    let local = Math.ceil(localStart / stepMs) * stepMs;
    for (; local - off * 60000 < endMs; local += stepMs) {
      const t = local - off * 60000;
      if (t < startMs || offsetMinAt(t, zone) !== off || seen.has(t)) continue;
      seen.add(t);
      const p = zoneParts(t, zone);
      const hm = `${String(p.hour).padStart(2, "0")}:${String(p.minute).padStart(2, "0")}`;
      out.push({ t: t * 90, label: step < 60 ? `${hm}:${String(p.second).padStart(2, "0")}` : hm });
    }
  }
  out.sort((a, b) => a.t - b.t);
  return out;
}

/** Recordings (the API's rows) merged into the spans to draw: rows closer than `joinBelow90k`
 *  (default one second) are one span.  Returns sorted [{start, end}]. */
export function coalesceSpans(rows, joinBelow90k = TIMESCALE) {
  const sorted = [...rows].sort((a, b) => a.startTime90k - b.startTime90k);
  const out = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.startTime90k - last.end < joinBelow90k) {
      last.end = Math.max(last.end, r.endTime90k);
    } else {
      out.push({ start: r.startTime90k, end: r.endTime90k });
    }
  }
  return out;
}

/** Spans clipped to [start, end), for a window or a day. */
export function clipSpans(spans, start, end) {
  return spans
    .filter((s) => s.end > start && s.start < end)
    .map((s) => ({ start: Math.max(s.start, start), end: Math.min(s.end, end) }));
}

/** The gaps between spans inside [start, end) longer than `minGap90k`. */
export function gaps(spans, start, end, minGap90k = TIMESCALE) {
  const out = [];
  let at = start;
  for (const s of clipSpans(spans, start, end)) {
    if (s.start - at >= minGap90k) out.push({ start: at, end: s.start });
    at = Math.max(at, s.end);
  }
  if (end - at >= minGap90k) out.push({ start: at, end });
  return out;
}

const byStart = (rows) => [...rows].sort((a, b) => a.startTime90k - b.startTime90k);

/** Where to play moment `t`: the row holding it, with `t`; else (t in a gap) the next row's
 *  start; else null.  Returns {row, t}. */
export function rowAt(rows, t) {
  const sorted = byStart(rows);
  for (const r of sorted) {
    if (t >= r.startTime90k && t < r.endTime90k) return { row: r, t };
  }
  const next = sorted.find((r) => r.startTime90k > t);
  return next === undefined ? null : { row: next, t: next.startTime90k };
}

/** The row after `row` (by start time), or null. */
export function nextRow(rows, row) {
  return byStart(rows).find((r) => r.startTime90k >= row.endTime90k - 1 && r !== row) ?? null;
}

/** The row that starts before `t` by more than `slack90k` (for "previous recording": a click
 *  just after a start goes to the one before), or null. */
export function previousStart(rows, t, slack90k = 2 * TIMESCALE) {
  const earlier = byStart(rows).filter((r) => r.startTime90k < t - slack90k);
  return earlier.length ? earlier[earlier.length - 1] : null;
}

/** The first row starting after `t`, or null. */
export function nextStart(rows, t) {
  return byStart(rows).find((r) => r.startTime90k > t + TIMESCALE / 10) ?? null;
}

/** A row's recording ids as view.mp4's `s=` wants them: "start-end@open", then the wall
 *  offsets ".rel0-rel1" when only part of it is wanted (or it is still growing, so later
 *  frames aren't pulled in). */
export function segmentSpec(row, from = row.startTime90k, to = row.endTime90k) {
  const endId = row.endId ?? row.startId;
  let spec = `${row.startId}-${endId}@${row.openId}`;
  const rel0 = Math.max(0, Math.round(from - row.startTime90k));
  const rel1 = Math.round(Math.min(to, row.endTime90k) - row.startTime90k);
  const whole = rel0 === 0 && rel1 >= row.endTime90k - row.startTime90k;
  if (!whole || row.growing) spec += `.${rel0 === 0 ? "" : rel0}-${rel1}`;
  return spec;
}

/** The `s=` values of view.mp4 for the range [from, to): one per row it overlaps, trimmed at
 *  both ends.  Empty when nothing was recorded in it. */
export function exportSpecs(rows, from, to) {
  return byStart(rows)
    .filter((r) => r.endTime90k > from && r.startTime90k < to)
    .map((r) => segmentSpec(r, Math.max(from, r.startTime90k), Math.min(to, r.endTime90k)));
}

/** Frames per second of a row (its frame count over its wall duration). */
export function rowFps(row) {
  const sec = (row.endTime90k - row.startTime90k) / TIMESCALE;
  return sec > 0 ? row.videoSamples / sec : 0;
}

/** Bytes as people read them: "1.5 MiB". */
export function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** How many days `budgetBytes` holds at `bytesPerSec`, or null when nothing is known. */
export function daysHeld(budgetBytes, bytesPerSec) {
  if (!(bytesPerSec > 0) || !(budgetBytes > 0)) return null;
  return budgetBytes / bytesPerSec / 86400;
}
