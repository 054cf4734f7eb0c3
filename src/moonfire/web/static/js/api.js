// The API as the UI calls it: same-origin fetches, errors as the server's text/plain message,
// and the session's CSRF token put into every mutation's body (web-api.md §1.3).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrf = null;

/** Remember the session's token (from GET /api/'s user.session.csrf). */
export function setCsrf(token) { csrf = token || null; }

async function check(response, what) {
  if (response.ok) return response;
  let text = "";
  try { text = (await response.text()).trim(); } catch { /* no body */ }
  throw new ApiError(response.status, text || `${what}: HTTP ${response.status}`);
}

export async function getJson(path) {
  const r = await check(await fetch(path, { credentials: "same-origin" }), path);
  return r.json();
}

/** POST/PATCH/DELETE with a JSON body (and the CSRF token); the JSON reply, or null for 204. */
export async function send(method, path, body = {}) {
  const full = csrf === null ? body : { ...body, csrf };
  const r = await check(await fetch(path, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(full),
  }), `${method} ${path}`);
  if (r.status === 204) return null;
  const type = r.headers.get("Content-Type") || "";
  return type.startsWith("application/json") ? r.json() : null;
}

/** The byte size of what a GET of `path` would download, or throws the server's message.
 *  A one-byte range rather than HEAD: a HEAD's error has no body to show. */
export async function downloadSize(path) {
  const r = await check(await fetch(path, {
    credentials: "same-origin", headers: { Range: "bytes=0-0" },
  }), path);
  const range = /\/(\d+)$/.exec(r.headers.get("Content-Range") || "");
  if (range !== null) return Number(range[1]);
  const length = r.headers.get("Content-Length");
  return length === null ? null : Number(length);
}

export function streamBase(cameraUuid, type) {
  return `/api/cameras/${cameraUuid}/${type}`;
}
