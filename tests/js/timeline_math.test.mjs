// The timeline's arithmetic: zoom and pan, ticks across DST, spans, gaps, export specs.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Axis, ticks, coalesceSpans, clipSpans, gaps, rowAt, nextRow, previousStart, nextStart,
  segmentSpec, exportSpecs, formatBytes, daysHeld, MIN_SPAN_90K,
} from "../../src/moonfire/web/static/js/timeline_math.js";
import { dayBounds, to90k } from "../../src/moonfire/web/static/js/timecalc.js";

const S = 90000;
const NY = "America/New_York";

test("zooming keeps the time under the pointer and stops at a minute and at the day", () => {
  const axis = new Axis(0, 86400 * S, 1000);
  const under = axis.tOf(250);
  axis.zoomAt(250, 0.5);
  assert.ok(Math.abs(axis.tOf(250) - under) < 1);
  assert.equal(axis.span, 43200 * S);
  for (let i = 0; i < 50; i++) axis.zoomAt(250, 0.5);
  assert.equal(axis.span, MIN_SPAN_90K);
  for (let i = 0; i < 50; i++) axis.zoomAt(900, 3);
  assert.deepEqual([axis.start, axis.end], [0, 86400 * S]);
  axis.zoomAt(0, 0.1);
  axis.pan(-5000);
  assert.equal(axis.start, 0); // never before the day
  axis.centre(86400 * S);
  assert.equal(axis.end, 86400 * S); // never after it
});

test("hour ticks follow local time across DST: 23 on the spring day, 25 in the fall", () => {
  for (const [day, hours, labels] of [["2026-03-08", 23, ["00:00", "01:00", "03:00"]],
    ["2026-11-01", 25, ["00:00", "01:00", "01:00", "02:00"]]]) {
    const [s, e] = dayBounds(day, NY).map(to90k);
    const axis = new Axis(s, e, 2400);
    const marks = ticks(axis, NY, 60);
    assert.equal(marks.length, hours, day);
    assert.deepEqual(marks.slice(0, labels.length).map((m) => m.label), labels, day);
    const steps = marks.slice(1).map((m, i) => m.t - marks[i].t);
    assert.ok(steps.every((d) => d === 3600 * S), day); // an hour apart in real time
  }
});

test("ticks get finer as the window narrows", () => {
  const axis = new Axis(0, 86400 * S, 1000, 3600 * S, 3660 * S);
  const marks = ticks(axis, "UTC", 60);
  assert.ok(marks.length >= 5 && marks.length <= 17, marks.length);
  assert.ok(marks.every((m) => /^\d\d:\d\d:\d\d$/.test(m.label)));
});

const row = (startId, endId, start, end, extra = {}) => ({
  startId, endId, openId: 3, startTime90k: start * S, endTime90k: end * S, videoSamples: (end - start) * 10,
  ...extra,
});

test("spans merge rows that chain and keep the gaps", () => {
  const rows = [row(5, 6, 100, 160), row(1, 2, 0, 60), row(3, 4, 60, 100), row(9, 9, 300, 330)];
  const spans = coalesceSpans(rows);
  assert.deepEqual(spans, [{ start: 0, end: 160 * S }, { start: 300 * S, end: 330 * S }]);
  assert.deepEqual(clipSpans(spans, 50 * S, 310 * S), [{ start: 50 * S, end: 160 * S }, { start: 300 * S, end: 310 * S }]);
  assert.deepEqual(gaps(spans, 0, 400 * S), [{ start: 160 * S, end: 300 * S }, { start: 330 * S, end: 400 * S }]);
});

test("a moment plays from the row holding it, or the next one after a gap", () => {
  const rows = [row(1, 4, 0, 100), row(9, 9, 300, 330)];
  assert.deepEqual(rowAt(rows, 50 * S), { row: rows[0], t: 50 * S });
  assert.deepEqual(rowAt(rows, 200 * S), { row: rows[1], t: 300 * S });
  assert.equal(rowAt(rows, 400 * S), null);
  assert.equal(nextRow(rows, rows[0]), rows[1]);
  assert.equal(nextRow(rows, rows[1]), null);
  assert.equal(previousStart(rows, 301 * S), rows[0]); // just after a start: the one before
  assert.equal(previousStart(rows, 310 * S), rows[1]);
  assert.equal(nextStart(rows, 50 * S), rows[1]);
});

test("view.mp4 segments trim with wall offsets from the row's start", () => {
  const r = row(7, 9, 1000, 1180);
  assert.equal(segmentSpec(r), "7-9@3");
  assert.equal(segmentSpec({ ...r, endId: undefined, startId: 7 }), "7-7@3");
  assert.equal(segmentSpec(r, 1010 * S, 1180 * S), `7-9@3.${10 * S}-${180 * S}`);
  assert.equal(segmentSpec(r, 1000 * S, 1020 * S), `7-9@3.-${20 * S}`);
  assert.equal(segmentSpec({ ...r, growing: true }), `7-9@3.-${180 * S}`);
  const rows = [row(1, 4, 0, 100), row(9, 9, 300, 330), row(10, 12, 330, 500)];
  assert.deepEqual(exportSpecs(rows, 90 * S, 320 * S), [`1-4@3.${90 * S}-${100 * S}`, `9-9@3.-${20 * S}`]);
  assert.deepEqual(exportSpecs(rows, 150 * S, 200 * S), []);
});

test("sizes and how long a budget lasts", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.50 KiB");
  assert.equal(formatBytes(50 * 1024 * 1024), "50.0 MiB");
  assert.equal(daysHeld(86400 * 1000, 1000), 1);
  assert.equal(daysHeld(100, 0), null);
});
