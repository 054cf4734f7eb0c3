"""``GET /api/cameras/<uuid>/<stream>/live.m4s``: the live view over a WebSocket (web-api.md §2.7).

Each binary message is a header block (``Name: value`` lines, CRLF, then an empty line) and one
``moof``+``mdat`` holding one frame (media-notes §1); the first is a key frame, and a client that
connects mid-GOP gets the GOP so far at once.  A client that falls behind skips to a key frame
and is told ``{"type":"dropped","frames":N}``; an idle socket gets a ping every 30 s.

The order of checks is Moonfire's: the ``Origin`` check answers with HTTP 403/400 before the
upgrade; everything else (no session, no ``viewVideo``, an unknown camera or stream, a
read-only database) arrives after it as ``{"type":"error","message":...}`` and a close, which
is what Moonfire's UI shows the user.

The frames come from ``moonfire.ingest.live``: the streamer publishes without ever waiting, and
each connection reads its own bounded ``Subscription`` on the event loop.  The sample entry of a
frame is read from the database once per connection (in the executor: sqlite blocks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from moonfire.db import STREAM_TYPES, UnknownStreamError
from moonfire.errors import MoonfireError
from moonfire.ingest.live import (
    DEFAULT_MAX_QUEUE,
    Dropped,
    LiveFeeds,
    LiveFrame,
    Subscription,
    SubscriptionClosedError,
)
from moonfire.playback.fragment import FragmentSample, content_type, media_segment
from moonfire.web.auth import check_origin

if TYPE_CHECKING:
    from moonfire.db import Database, Stream
    from moonfire.web.auth import Auth

log = logging.getLogger(__name__)

LIVE_PATH = "/api/cameras/{uuid}/{stream}/live.m4s"
#: Seconds without video before a ping (Chromium drops idle sockets after about a minute).
PING_INTERVAL_SEC = 30.0


class LiveError(MoonfireError):
    """A failure after the upgrade: sent to the client as an error message, then a close."""


def message_header(frame: LiveFrame, frame_content_type: str) -> bytes:
    """The header block of a binary message, in Moonfire's order (web-api.md §2.7).

    ``X-Recording-Id`` is left out when the recording's open or id is unknown: the UI ignores
    it, and no value beats a wrong one.
    """
    recording = frame.recording
    start = frame.media_start_90k
    lines = [
        f"Content-Type: {frame_content_type}",
        f"X-Recording-Start: {recording.start_90k}",
    ]
    if recording.open_id is not None and recording.recording_id_hint is not None:
        lines.append(f"X-Recording-Id: {recording.open_id}.{recording.recording_id_hint}")
    lines += [
        f"X-Media-Time-Range: {start}-{start + frame.duration_90k}",
        f"X-Prev-Media-Duration: {recording.prev_media_duration_90k}",
        f"X-Runs: {recording.runs}",
        f"X-Video-Sample-Entry-Id: {frame.video_sample_entry_id}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def live_message(frame: LiveFrame, frame_content_type: str, sequence: int) -> bytes:
    """One binary message: the header block, then a media segment holding ``frame`` alone
    (``tfdt`` 0, as Moonfire writes it)."""
    sample = FragmentSample(
        frame.duration_90k, len(frame.data), frame.is_key, frame.composition_offset_90k
    )
    return message_header(frame, frame_content_type) + media_segment(
        sequence, [sample], frame.data
    )


def routes(
    feeds: LiveFeeds,
    db: Database,
    auth: Auth,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    ping_interval_sec: float = PING_INTERVAL_SEC,
) -> list[web.RouteDef]:
    """The live view's route.  ``max_queue`` is each client's bound in frames."""
    view = _LiveView(feeds, db, auth, max_queue, ping_interval_sec)
    return [web.get(LIVE_PATH, view.handle, allow_head=False)]


class _LiveView:
    def __init__(
        self,
        feeds: LiveFeeds,
        db: Database,
        auth: Auth,
        max_queue: int,
        ping_interval_sec: float,
    ) -> None:
        self._feeds = feeds
        self._db = db
        self._auth = auth
        self._max_queue = max_queue
        self._ping_interval = ping_interval_sec

    async def handle(self, request: web.Request) -> web.StreamResponse:
        check_origin(request)  # HTTP 403/400, before the upgrade
        ws = web.WebSocketResponse(max_msg_size=1 << 16)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="live.m4s is a WebSocket: it needs an upgrade request")
        await ws.prepare(request)
        try:
            stream = await self._authorize(request)
        except LiveError as e:
            await _fail(ws, str(e))
            return ws
        subscription = self._feeds.feed(stream.id).subscribe(self._max_queue)
        reader = asyncio.create_task(_read_until_closed(ws, subscription))
        try:
            await self._send(ws, subscription)
        except LiveError as e:
            await _fail(ws, str(e))
        except ConnectionError:
            pass  # the client went away mid-send
        except Exception:  # a bug: log it, tell the client no details
            log.exception("live view of stream %d failed", stream.id)
            await _fail(ws, "internal error (see the server's log)")
        finally:
            subscription.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.close()
        return ws

    async def _authorize(self, request: web.Request) -> Stream:
        """The stream asked for, if the caller may watch it; ``LiveError`` otherwise."""
        try:
            caller = await self._auth.caller(request)
        except web.HTTPException as e:
            raise LiveError(e.text or e.reason) from None
        if not caller.permissions.view_video:
            raise LiveError("viewVideo required")
        if getattr(self._db, "read_only", False):
            raise LiveError("database is read-only; live view needs a recording server")
        try:
            camera_uuid = uuidlib.UUID(request.match_info["uuid"]).bytes
        except ValueError:
            raise LiveError(f"no such camera {request.match_info['uuid']}") from None
        stream_type = request.match_info["stream"]
        if stream_type not in STREAM_TYPES:
            raise LiveError(f"no such stream type {stream_type}")
        loop = asyncio.get_running_loop()
        cameras = await loop.run_in_executor(None, self._db.list_cameras)
        camera = next((c for c in cameras if bytes(c.uuid) == camera_uuid), None)
        if camera is None:
            raise LiveError(f"no such camera {uuidlib.UUID(bytes=camera_uuid)}")
        try:
            return camera.stream(stream_type)
        except UnknownStreamError as e:
            raise LiveError(str(e)) from None

    async def _send(self, ws: web.WebSocketResponse, subscription: Subscription) -> None:
        content_types: dict[int, str] = {}
        sequence = 0
        loop = asyncio.get_running_loop()
        while not ws.closed:
            try:
                item = await subscription.get(timeout=self._ping_interval)
            except SubscriptionClosedError:
                return
            if item is None:
                await ws.ping()
                continue
            if isinstance(item, Dropped):
                await ws.send_str(json.dumps({"type": "dropped", "frames": item.frames}))
                continue
            entry_id = item.video_sample_entry_id
            frame_type = content_types.get(entry_id)
            if frame_type is None:
                try:
                    entry = await loop.run_in_executor(
                        None, self._db.get_video_sample_entry, entry_id
                    )
                except LookupError as e:
                    raise LiveError(f"video sample entry {entry_id}: {e}") from None
                frame_type = content_types[entry_id] = content_type(entry)
            sequence += 1
            await ws.send_bytes(live_message(item, frame_type, sequence))


async def _read_until_closed(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    """Read (and ignore) what the client sends, so its close is seen; then end the stream."""
    try:
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
    finally:
        subscription.close()


async def _fail(ws: web.WebSocketResponse, message: str) -> None:
    """Moonfire's fatal error: a text message, then a close."""
    payload: dict[str, Any] = {"type": "error", "message": message}
    with contextlib.suppress(ConnectionError, RuntimeError):
        if not ws.closed:
            await ws.send_str(json.dumps(payload))
            await ws.close()
