// Time in the server's zone: DST gaps, overlaps and day lengths, and the CLI's time format.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  wallToMs, dayBounds, dayKey, zoneParts, parseMoment, formatMoment, formatClock, addDays,
  monthGrid, isKnownZone,
} from "../../src/moonfire/web/static/js/timecalc.js";

const NY = "America/New_York";
const HOUR = 3600000;

test("a day is 23 hours when DST starts and 25 when it ends", () => {
  const [s1, e1] = dayBounds("2026-03-08", NY);
  assert.equal((e1 - s1) / HOUR, 23);
  const [s2, e2] = dayBounds("2026-11-01", NY);
  assert.equal((e2 - s2) / HOUR, 25);
  const [s3, e3] = dayBounds("2026-06-15", NY);
  assert.equal((e3 - s3) / HOUR, 24);
  assert.equal(new Date(s1).toISOString(), "2026-03-08T05:00:00.000Z"); // midnight EST
  assert.equal(new Date(e1).toISOString(), "2026-03-09T04:00:00.000Z"); // midnight EDT
});

test("a wall time in the skipped hour reads with the offset before it, as the CLI does", () => {
  // 02:30 does not exist on 2026-03-08 in New York; Python's fold=0 gives 03:30 EDT.
  const t = wallToMs(2026, 3, 8, 2, 30, 0, NY);
  assert.equal(new Date(t).toISOString(), "2026-03-08T07:30:00.000Z");
  assert.equal(formatMoment(t, NY), "2026-03-08T03:30:00");
});

test("a wall time in the repeated hour is its first occurrence", () => {
  const t = wallToMs(2026, 11, 1, 1, 30, 0, NY);
  assert.equal(new Date(t).toISOString(), "2026-11-01T05:30:00.000Z"); // 01:30 EDT
  assert.equal(zoneParts(t, NY).offsetMin, -240);
  assert.equal(zoneParts(t + HOUR, NY).offsetMin, -300); // the second 01:30, EST
  assert.equal(formatMoment(t + HOUR, NY), "2026-11-01T01:30:00");
});

test("moments round-trip through the link format in the server's zone", () => {
  for (const zone of [NY, "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]) {
    const t = Date.UTC(2026, 11, 1, 20, 15, 36);
    assert.equal(parseMoment(formatMoment(t, zone), zone), t, zone);
  }
  assert.equal(parseMoment("2026-12-01T15:15:36", NY), Date.UTC(2026, 11, 1, 20, 15, 36));
  assert.equal(parseMoment("2026-12-01T15:15:36Z", NY), Date.UTC(2026, 11, 1, 15, 15, 36));
  assert.equal(parseMoment("2026-12-01T15:15:36-08:00", NY), Date.UTC(2026, 11, 1, 23, 15, 36));
  // The CLI's 90 kHz fraction: 45000 is half a second.
  assert.equal(parseMoment("2026-12-01T15:15:36:45000Z", NY), Date.UTC(2026, 11, 1, 15, 15, 36, 500));
  // A bare integer is 90 kHz units.
  assert.equal(parseMoment("145747836000000", NY), 145747836000000 / 90);
});

test("bad moments name what is wrong", () => {
  assert.throws(() => parseMoment("yesterday", NY), /can't read the time "yesterday"/);
  assert.throws(() => parseMoment("2026-02-30T00:00:00", NY), /day 30 out of range/);
  assert.throws(() => parseMoment("2026-13-01T00:00:00", NY), /month 13 out of range/);
  assert.throws(() => parseMoment("2026-12-01T24:00:00", NY), /clock out of range/);
});

test("day keys, calendar arithmetic and month grids", () => {
  const t = Date.UTC(2026, 11, 2, 3, 0, 0); // 22:00 on the 1st in New York
  assert.equal(dayKey(t, NY), "2026-12-01");
  assert.equal(dayKey(t, "UTC"), "2026-12-02");
  assert.equal(addDays("2026-12-31", 1), "2027-01-01");
  assert.equal(addDays("2024-03-01", -1), "2024-02-29");
  const weeks = monthGrid(2026, 12); // 1 December 2026 is a Tuesday
  assert.deepEqual(weeks[0].slice(0, 3), [null, "2026-12-01", "2026-12-02"]);
  assert.equal(weeks.flat().filter(Boolean).length, 31);
  assert.ok(weeks.every((w) => w.length === 7));
  assert.equal(formatClock(Date.UTC(2026, 11, 1, 20, 15, 36, 250), NY, true), "15:15:36.250");
  assert.ok(isKnownZone(NY));
  assert.ok(!isKnownZone("Not/AZone"));
});
