// One camera's live video: live.m4s over a WebSocket into Media Source Extensions, as
// Moonfire's UI does (web-api.md §2.7): the init segment fetched after the first message, each
// one-frame part appended at the end of what is buffered, ~5 s kept behind the play position,
// the play position kept near the live edge (followLiveEdge).
// It reconnects by itself (1 s, then up to 10 s apart) until stopped, and says what it is doing
// through onState(state, detail): "connecting", "live", "reconnecting", "unsupported", "failed".

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10000;

/** Farther behind the live edge than this (a hidden tab, a long stall): jump to it. */
export const LIVE_JUMP_BEHIND_SEC = 3;
/** Farther behind than this (a late frame stalled playback): play fast until caught up. */
export const LIVE_CATCH_UP_BEHIND_SEC = 1;
/** ...back to normal speed once this close. */
export const LIVE_CAUGHT_UP_SEC = 0.4;
/** How fast catching up plays: a second of delay is gone in four, without visible skipping. */
export const LIVE_CATCH_UP_RATE = 1.25;

/**
 * Keeps a live <video> near the live edge (the end of what is buffered), called after each
 * append.  Once playback has stalled, Chromium resumes from where it stopped, so without this
 * every stall's delay would stay for the rest of the session: a camera owner watching "live"
 * would watch the past, further behind with each hiccup of a busy machine or network.
 */
export function followLiveEdge(video, liveEdge) {
  const behind = liveEdge - video.currentTime;
  if (behind > LIVE_JUMP_BEHIND_SEC) {
    video.currentTime = liveEdge - 0.5;
    video.playbackRate = 1;
  } else if (behind > LIVE_CATCH_UP_BEHIND_SEC) {
    video.playbackRate = LIVE_CATCH_UP_RATE;
  } else if (behind < LIVE_CAUGHT_UP_SEC) {
    video.playbackRate = 1;
  }
}

function parseMessage(bytes) {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      const headers = new Map();
      const text = new TextDecoder("ascii").decode(bytes.subarray(0, i));
      for (const line of text.split("\r\n")) {
        const sep = line.indexOf(": ");
        if (sep < 0) throw new Error(`bad header line ${JSON.stringify(line)}`);
        headers.set(line.slice(0, sep).toLowerCase(), line.slice(sep + 2));
      }
      return { headers, media: bytes.subarray(i + 4) };
    }
  }
  throw new Error("live message without a header block");
}

export class LivePlayer {
  constructor(video, path, onState = () => {}) {
    this.video = video;
    this.path = path;
    this.onState = onState;
    this.stopped = false;
    this.retryMs = RETRY_MIN_MS;
    this.frames = 0;
    this.session = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.session) this.session.close();
    this.session = null;
  }

  connect() {
    if (this.stopped) return;
    this.onState("connecting", "");
    if (!window.MediaSource) {
      this.onState("failed", "this browser has no Media Source Extensions");
      return;
    }
    this.session = new LiveSession(this, this.video, this.path);
  }

  /** The session ended on its own: try again later (a camera that comes back plays again). */
  ended(reason, final = false) {
    this.session = null;
    if (this.stopped) return;
    if (final) {
      this.onState("unsupported", reason);
      return;
    }
    this.onState("reconnecting", reason);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  playing() {
    this.retryMs = RETRY_MIN_MS;
    this.onState("live", "");
  }
}

class LiveSession {
  constructor(owner, video, path) {
    this.owner = owner;
    this.video = video;
    this.done = false;
    this.sourceBuffer = null;
    this.init = null;
    this.initAppended = false;
    this.appending = null;
    this.pending = [];
    this.mime = null;
    this.entryId = null;
    this.frames = 0;
    this.mediaSource = new MediaSource();
    this.objectUrl = URL.createObjectURL(this.mediaSource);
    video.src = this.objectUrl;
    this.mediaSource.addEventListener("sourceopen", () => this.open(path), { once: true });
  }

  open(path) {
    if (this.done) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${path}`);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => this.message(event);
    ws.onclose = (event) => this.finish(event.reason || `connection closed (${event.code})`);
    ws.onerror = () => {};
  }

  close() {
    this.done = true;
    if (this.ws) this.ws.close(1000);
    URL.revokeObjectURL(this.objectUrl);
  }

  finish(reason, final = false) {
    if (this.done) return;
    this.close();
    this.owner.ended(reason, final);
  }

  bufferedEnd() {
    const b = this.sourceBuffer.buffered;
    return b.length ? b.end(b.length - 1) : 0;
  }

  pump() {
    const sb = this.sourceBuffer;
    if (sb === null || sb.updating || this.done) return;
    try {
      if (!this.initAppended) {
        if (this.init === null) return;
        this.appending = "init";
        sb.appendBuffer(this.init);
        this.initAppended = true;
        return;
      }
      const b = sb.buffered;
      if (b.length && this.video.currentTime - b.start(0) > 10) {
        this.appending = "trim";
        sb.remove(0, this.video.currentTime - 5);
        return;
      }
      if (this.pending.length === 0) return;
      sb.timestampOffset = this.bufferedEnd();
      this.appending = "media";
      sb.appendBuffer(this.pending.shift());
    } catch (e) {
      this.finish(`SourceBuffer: ${e.message || e}`);
    }
  }

  appended() {
    if (this.appending === "media") {
      this.frames += 1;
      this.owner.frames += 1;
      if (this.frames === 1) {
        this.video.play().catch(() => {});
        this.owner.playing();
      }
      followLiveEdge(this.video, this.bufferedEnd());
    }
    this.appending = null;
    this.pump();
  }

  first(headers) {
    this.mime = headers.get("content-type");
    this.entryId = headers.get("x-video-sample-entry-id");
    if (!this.mime || !/^\d+$/.test(this.entryId || "")) {
      throw new Error("live message lacks Content-Type or X-Video-Sample-Entry-Id");
    }
    if (!MediaSource.isTypeSupported(this.mime)) {
      const codec = (/codecs="([^"]+)"/.exec(this.mime) || [])[1] || this.mime;
      this.finish(`this browser can't play ${codec.startsWith("hvc1") || codec.startsWith("hev1")
        ? "H.265" : "this codec"} (${codec}); download the recordings from Playback`, true);
      return false;
    }
    const sb = this.mediaSource.addSourceBuffer(this.mime);
    this.sourceBuffer = sb;
    sb.mode = "segments";
    sb.addEventListener("updateend", () => this.appended());
    sb.addEventListener("error", () => this.finish("SourceBuffer error"));
    fetch(`/api/init/${this.entryId}.mp4`, { credentials: "same-origin" }).then((r) => {
      if (!r.ok) throw new Error(`init segment: HTTP ${r.status}`);
      return r.arrayBuffer();
    }).then((data) => { this.init = data; this.pump(); })
      .catch((e) => this.finish(String(e.message || e)));
    return true;
  }

  message(event) {
    if (this.done) return;
    if (typeof event.data === "string") {
      let message = {};
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "error") this.finish(message.message || "server error");
      return;
    }
    try {
      const { headers, media } = parseMessage(new Uint8Array(event.data));
      if (this.sourceBuffer === null) {
        if (!this.first(headers)) return;
      } else if (headers.get("content-type") !== this.mime ||
                 headers.get("x-video-sample-entry-id") !== this.entryId) {
        this.finish("the stream's format changed");
        return;
      }
      this.pending.push(media);
      this.pump();
    } catch (e) {
      this.finish(String(e.message || e));
    }
  }
}
