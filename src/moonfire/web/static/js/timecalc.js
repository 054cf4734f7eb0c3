// Time in the server's zone, with no DOM: wall-clock parts of an instant, the instant of a
// wall-clock reading (DST gaps and overlaps read as the CLI reads them), calendar-day bounds
// (23 or 25 hours across DST changes), and the CLI's time format for moment links.
//
// Instants are milliseconds since the epoch (JavaScript's unit) unless a name says 90k; the
// API's 90 kHz units convert with ms90k / to90k.  Every function takes the IANA zone name the
// server gave as timeZoneName, so the UI shows the server's times whatever the browser's zone.

export const TIMESCALE = 90000;
const DAY_MS = 86400000;

export const to90k = (ms) => Math.round(ms * 90);
export const ms90k = (t90k) => t90k / 90;

const formatters = new Map();

function formatter(zone) {
  let f = formatters.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", weekday: "short",
    });
    formatters.set(zone, f);
  }
  return f;
}

/** Whether the runtime knows this zone name (an unknown one would throw everywhere). */
export function isKnownZone(zone) {
  try {
    formatter(zone);
    return true;
  } catch {
    return false;
  }
}

/** The wall-clock reading of instant `ms` in `zone`: {year, month (1-12), day, hour, minute,
 *  second, weekday (0 = Sunday), offsetMin (minutes east of UTC)}. */
export function zoneParts(ms, zone) {
  const whole = Math.floor(ms / 1000) * 1000;
  const out = {};
  for (const p of formatter(zone).formatToParts(new Date(whole))) {
    if (p.type === "weekday") out.weekday = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].indexOf(p.value);
    else if (p.type !== "literal") out[p.type] = Number(p.value);
  }
  const asUtc = Date.UTC(out.year, out.month - 1, out.day, out.hour, out.minute, out.second);
  out.offsetMin = Math.round((asUtc - whole) / 60000);
  return out;
}

export const offsetMinAt = (ms, zone) => zoneParts(ms, zone).offsetMin;

/** The instant at which clocks in `zone` read this wall time.  As the CLI (Python's fold=0):
 *  a reading that happens twice (the hour repeated when DST ends) is its first occurrence; one
 *  that never happens (the hour skipped when DST starts) is read with the offset before the gap,
 *  so 02:30 becomes 03:30 daylight time. */
export function wallToMs(year, month, day, hour = 0, minute = 0, second = 0, zone = "UTC") {
  const naive = Date.UTC(year, month - 1, day, hour, minute, second);
  const before = offsetMinAt(naive - DAY_MS, zone);
  const after = offsetMinAt(naive + DAY_MS, zone);
  const valid = [];
  for (const off of new Set([before, after])) {
    const t = naive - off * 60000;
    if (offsetMinAt(t, zone) === off) valid.push(t);
  }
  if (valid.length) return Math.min(...valid);
  return naive - before * 60000; // in a gap
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** "YYYY-MM-DD" of the calendar day `ms` falls on in `zone`. */
export function dayKey(ms, zone) {
  const p = zoneParts(ms, zone);
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}`;
}

function parseDayKey(key) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(key);
  if (m === null) throw new Error(`not a day (YYYY-MM-DD): ${JSON.stringify(key)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** The day after (or, with a negative `n`, before) a "YYYY-MM-DD" key, by the calendar. */
export function addDays(key, n) {
  const [y, m, d] = parseDayKey(key);
  const t = new Date(Date.UTC(y, m - 1, d + n));
  return `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
}

/** [start, end) in ms of a calendar day in `zone`: local midnight to the next local midnight,
 *  so 23 hours on the day DST starts and 25 on the day it ends. */
export function dayBounds(key, zone) {
  const [y, m, d] = parseDayKey(key);
  const [y2, m2, d2] = parseDayKey(addDays(key, 1));
  return [wallToMs(y, m, d, 0, 0, 0, zone), wallToMs(y2, m2, d2, 0, 0, 0, zone)];
}

/** The CLI's format without the fraction or zone: "2026-12-01T15:15:36" (what moment links
 *  carry, read back in the server's zone). */
export function formatMoment(ms, zone) {
  const p = zoneParts(ms, zone);
  return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}`;
}

/** "15:15:36" or, with `withMs`, "15:15:36.250". */
export function formatClock(ms, zone, withMs = false) {
  const p = zoneParts(ms, zone);
  const base = `${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}`;
  return withMs ? `${base}.${pad(Math.floor(((ms % 1000) + 1000) % 1000), 3)}` : base;
}

/** "2026-12-01 15:15:36" with the zone's abbreviation-free offset, for status lines. */
export function formatDateTime(ms, zone) {
  return formatMoment(ms, zone).replace("T", " ");
}

const MOMENT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?::(\d{5}))?(Z|([+-])(\d{2}):(\d{2}))?$/;

/** A time as the CLI takes it (`YYYY-MM-DDTHH:MM:SS[:FFFFF][Z|±hh:mm]`, or a bare integer of
 *  90 kHz units) to ms.  Without a zone it is a wall time in `zone`.  Throws an Error quoting the
 *  text and naming what is wrong. */
export function parseMoment(text, zone) {
  const s = String(text).trim();
  if (/^-?\d+$/.test(s) && s.length > 8) return ms90k(Number(s));
  const m = MOMENT.exec(s);
  if (m === null) {
    throw new Error(`can't read the time ${JSON.stringify(s)}: expected YYYY-MM-DDTHH:MM:SS`);
  }
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const fraction = m[7] === undefined ? 0 : Number(m[7]);
  if (month < 1 || month > 12) throw new Error(`can't read the time ${JSON.stringify(s)}: month ${month} out of range`);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > daysInMonth) throw new Error(`can't read the time ${JSON.stringify(s)}: day ${day} out of range`);
  if (hour > 23 || minute > 59 || second > 59) throw new Error(`can't read the time ${JSON.stringify(s)}: clock out of range`);
  if (fraction >= TIMESCALE) throw new Error(`can't read the time ${JSON.stringify(s)}: fraction out of range`);
  let ms;
  if (m[8] === undefined) {
    ms = wallToMs(year, month, day, hour, minute, second, zone);
  } else {
    const off = m[8] === "Z" ? 0 : (m[9] === "-" ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
    ms = Date.UTC(year, month - 1, day, hour, minute, second) - off * 60000;
  }
  return ms + fraction / 90;
}

/** The weeks of a month for a calendar: rows of 7 "YYYY-MM-DD" keys (null outside the month),
 *  weeks starting on Monday. */
export function monthGrid(year, month) {
  const first = new Date(Date.UTC(year, month - 1, 1));
  const lead = (first.getUTCDay() + 6) % 7;
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const cells = [];
  for (let i = 0; i < lead; i++) cells.push(null);
  for (let d = 1; d <= days; d++) cells.push(`${pad(year, 4)}-${pad(month)}-${pad(d)}`);
  while (cells.length % 7) cells.push(null);
  const weeks = [];
  for (let i = 0; i < cells.length; i += 7) weeks.push(cells.slice(i, i + 7));
  return weeks;
}
