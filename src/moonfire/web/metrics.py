"""``GET /metrics``: the recorder's health in Prometheus's text format (issue 11 §5).

Served through ``prometheus_client`` from a registry of the application's own
(``CollectorRegistry``, never the library's global one, so that several
applications in one process, the tests' for one, don't share or collide), and
from custom collectors that read the current state when scraped: the streamers,
syncers and live feeds keep the counters they keep anyway, and nothing is added
to a recording's hot path.  The one counter kept for this page alone is the
HTTP requests by status, one dict increment per request on the event loop.

A scrape runs on the web side's database thread (``WebContext.query``): it
reads the streams, their usage and the sample file directories from the
database, and calls ``statvfs`` on each directory, none of it on the loop.

Access is the API's: a caller ``Auth`` accepts (a session, HTTP Basic
credentials, or a loopback client while no user exists), else 401.  For
Prometheus, give it a user of its own with only ``viewVideo``
(``moonfire user add prometheus --view-only``) and
``basic_auth: {username: prometheus, password_file: ...}`` in its scrape config.

The metrics (``camera`` and ``stream`` label a stream: ``front``, ``main``;
``dir`` a sample file directory by name):

* per stream this process records (or streams for live view only):
  ``moonfire_stream_frames_total``,
  ``moonfire_stream_recordings_total`` and ``moonfire_stream_recorded_bytes_total``
  (the recordings committed by this process and their sample file bytes),
  ``moonfire_stream_reconnects_total`` (sessions that ended in an error),
  ``moonfire_stream_last_frame_age_seconds`` (to about a second: the daemon notes
  the frame counts every second), ``moonfire_stream_state{state=...}`` (1 for
  the state ``moonfire status`` shows, 0 for the others: ``recording``,
  ``retrying``, ``failed``, ``ended``, ``live only``);
* per stream that records: ``moonfire_stream_retain_bytes``,
  ``moonfire_stream_usage_bytes``, and ``moonfire_stream_retention_forecast_days``:
  how many days of video the budget holds at the bitrate recorded so far, as
  ``moonfire camera list`` computes it (``retention.budget_holds_90k``), left out
  before the first recording;
* per stream: ``moonfire_stream_live_viewers`` (live-view WebSockets open);
* per sample file directory: ``moonfire_sample_file_dir_free_bytes``,
  ``..._size_bytes``, ``..._free_inodes`` (``statvfs``, as the syncer's free-space
  floors read it; left out when the directory can't be reached),
  ``moonfire_sample_file_dir_failed``; and for each one this process opened,
  ``moonfire_syncer_file_fsync_seconds`` and ``moonfire_syncer_dir_fsync_seconds``
  (histograms) and ``moonfire_syncer_queue_depth``;
* per archive (``archive`` label): ``moonfire_archive_backlog_recordings`` and
  ``..._backlog_bytes`` (committed recordings not uploaded yet),
  ``moonfire_archive_recordings`` (uploaded and checked), ``moonfire_archive_failing``
  (1 while the uploader's latest attempt failed); read from the database, so they
  include other processes' uploads;
* ``moonfire_http_requests_total{code=...}``;
* the process's CPU, memory and open file descriptors (``process_*``, from
  ``prometheus_client``'s ``ProcessCollector``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from moonfire.db import Database, Stream
from moonfire.ingest.status_file import ENDED, FAILED, LIVE_ONLY, RECORDING, RETRYING
from moonfire.storage.retention import forecast_days
from moonfire.web.auth import Auth
from moonfire.web.context import WebContext
from moonfire.web.recorder import RecorderView, StreamStatus

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from moonfire.storage.syncer import LatencyHistogram

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Every state a stream's ``moonfire_stream_state`` gauge has a series for.
STATES = (RECORDING, RETRYING, FAILED, ENDED, LIVE_ONLY)
STREAM_LABELS = ("camera", "stream")


class Metrics:
    """The ``/metrics`` route, its registry, and the middleware counting HTTP requests."""

    def __init__(self, ctx: WebContext, auth: Auth, recorder: RecorderView | None = None) -> None:
        self.ctx = ctx
        self.auth = auth
        self.recorder = recorder
        #: HTTP status code -> requests answered with it (only the event loop writes it).
        self.http_requests: dict[int, int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_MoonfireCollector(self))
        ProcessCollector(registry=self.registry)
        self.middleware = self._make_middleware()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/metrics", self.scrape)]

    async def scrape(self, request: web.Request) -> web.Response:
        await self.auth.caller(request)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await self.ctx.query(lambda _db: encode(self.registry))
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )

    def _make_middleware(self) -> Middleware:
        counts = self.http_requests

        @web.middleware
        async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            """Count every answer by status, errors included (outermost middleware)."""
            try:
                response = await handler(request)
            except web.HTTPException as e:
                counts[e.status] = counts.get(e.status, 0) + 1
                raise
            except asyncio.CancelledError:
                raise  # the client went away: no answer to count
            except Exception:
                counts[500] = counts.get(500, 0) + 1  # aiohttp answers 500
                raise
            counts[response.status] = counts.get(response.status, 0) + 1
            return response

        return count_requests


class _MoonfireCollector(Collector):
    """Reads the database, the directories and the recorder at each scrape (database thread)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        db = metrics.ctx.db
        recorder = metrics.recorder
        streams = [(c.short_name, s) for c in db.list_cameras() for s in c.streams]
        statuses: Mapping[int, StreamStatus] = {}
        if recorder is not None:
            statuses = recorder.stream_statuses()
        yield from _recorded_stream_metrics(recorder, streams, statuses)
        yield from _retention_metrics(db, streams)
        live = recorder.live if recorder is not None else None
        if live is not None:
            viewers = live.viewers()
            family = GaugeMetricFamily(
                "moonfire_stream_live_viewers", "Live-view WebSockets open on the stream.",
                labels=STREAM_LABELS)
            for camera, stream in streams:
                family.add_metric([camera, stream.type], viewers.get(stream.id, 0))
            yield family
        yield from _directory_metrics(db, recorder)
        yield from _archive_metrics(db)
        requests = CounterMetricFamily(
            "moonfire_http_requests", "HTTP requests answered, by status code.", labels=["code"])
        for code, count in sorted(dict(metrics.http_requests).items()):
            requests.add_metric([str(code)], count)
        yield requests


def _archive_metrics(db: Database) -> Iterator[Metric]:
    """Each archive's backlog and state, from the database (``moonfire.storage.archive``)."""
    families = {
        name: GaugeMetricFamily(f"moonfire_archive_{name}", help_, labels=["archive"])
        for name, help_ in (
            ("backlog_recordings", "Committed recordings not yet uploaded to the archive."),
            ("backlog_bytes", "Sample file bytes of those recordings."),
            ("recordings", "Recordings uploaded to the archive and checked."),
            ("failing", "1 while the archive's latest upload attempt failed."),
            ("only_recordings", "Recordings whose only copy is in the archive (local file "
             "deleted by retention, or catalogued by archive rebuild)."),
            ("only_bytes", "Sample file bytes of those recordings."),
        )
    }
    for archive in db.list_archives():
        backlog, backlog_bytes = db.archive_backlog(archive.id)
        families["backlog_recordings"].add_metric([archive.name], backlog)
        families["backlog_bytes"].add_metric([archive.name], backlog_bytes)
        families["recordings"].add_metric([archive.name], db.archived_count(archive.id))
        families["failing"].add_metric([archive.name], int(archive.last_error is not None))
        only, only_bytes = db.archived_only_usage(archive.id)
        families["only_recordings"].add_metric([archive.name], only)
        families["only_bytes"].add_metric([archive.name], only_bytes)
    yield from families.values()


def _recorded_stream_metrics(
    recorder: RecorderView | None,
    streams: list[tuple[str, Stream]],
    statuses: Mapping[int, StreamStatus],
) -> Iterator[Metric]:
    """What the daemon knows of each stream it records (or failed to start)."""
    committed_recordings: dict[int, int] = {}
    committed_bytes: dict[int, int] = {}
    if recorder is not None:
        for syncer in recorder.syncers().values():
            committed_recordings.update(syncer.stats.committed_recordings)
            committed_bytes.update(syncer.stats.committed_bytes)
    frames = CounterMetricFamily(
        "moonfire_stream_frames", "Frames received from the camera by this process.",
        labels=STREAM_LABELS)
    recordings = CounterMetricFamily(
        "moonfire_stream_recordings", "Recordings of the stream committed by this process.",
        labels=STREAM_LABELS)
    recorded_bytes = CounterMetricFamily(
        "moonfire_stream_recorded_bytes",
        "Sample file bytes of the recordings committed by this process (counted at commit).",
        labels=STREAM_LABELS)
    reconnects = CounterMetricFamily(
        "moonfire_stream_reconnects",
        "Sessions with the camera that ended in an error (each one retried).",
        labels=STREAM_LABELS)
    age = GaugeMetricFamily(
        "moonfire_stream_last_frame_age_seconds",
        "Seconds since the stream's last frame arrived (to about a second).",
        labels=STREAM_LABELS)
    state = GaugeMetricFamily(
        "moonfire_stream_state",
        "1 for the stream's state as `moonfire status` shows it, 0 for the others.",
        labels=[*STREAM_LABELS, "state"])
    for camera, stream in streams:
        status = statuses.get(stream.id)
        if status is None:
            continue
        labels = [camera, stream.type]
        frames.add_metric(labels, status.frames)
        recordings.add_metric(labels, committed_recordings.get(stream.id, 0))
        recorded_bytes.add_metric(labels, committed_bytes.get(stream.id, 0))
        reconnects.add_metric(labels, status.errors)
        if status.last_frame_age_sec is not None:
            age.add_metric(labels, status.last_frame_age_sec)
        for name in STATES:
            state.add_metric([*labels, name], 1 if status.state == name else 0)
    yield from (frames, recordings, recorded_bytes, reconnects, age, state)


def _retention_metrics(db: Database, streams: list[tuple[str, Stream]]) -> Iterator[Metric]:
    """Budgets, usage and the forecast of ``moonfire camera list``, from the database."""
    retain = GaugeMetricFamily(
        "moonfire_stream_retain_bytes", "The stream's budget (bytes of recordings kept).",
        labels=STREAM_LABELS)
    usage = GaugeMetricFamily(
        "moonfire_stream_usage_bytes", "Bytes of the stream's recordings now kept.",
        labels=STREAM_LABELS)
    forecast = GaugeMetricFamily(
        "moonfire_stream_retention_forecast_days",
        "Days of video the budget holds at the bitrate recorded so far.",
        labels=STREAM_LABELS)
    for camera, stream in streams:
        if not stream.record:
            continue
        labels = [camera, stream.type]
        _count, usage_bytes, duration_90k = db.stream_usage(stream.id)
        retain.add_metric(labels, stream.retain_bytes)
        usage.add_metric(labels, usage_bytes)
        days = forecast_days(stream.retain_bytes, usage_bytes, duration_90k)
        if days is not None:
            forecast.add_metric(labels, days)
    yield from (retain, usage, forecast)


def _directory_metrics(db: Database, recorder: RecorderView | None) -> Iterator[Metric]:
    """Free space of every sample file directory; the syncer's of those this process opened."""
    syncers = recorder.syncers() if recorder is not None else {}
    dir_errors = recorder.dir_errors() if recorder is not None else {}
    free_bytes = GaugeMetricFamily(
        "moonfire_sample_file_dir_free_bytes",
        "Bytes free for moonfire in the directory's filesystem (statvfs f_bavail).",
        labels=["dir"])
    size_bytes = GaugeMetricFamily(
        "moonfire_sample_file_dir_size_bytes", "Size of the directory's filesystem.",
        labels=["dir"])
    free_inodes = GaugeMetricFamily(
        "moonfire_sample_file_dir_free_inodes",
        "Inodes (files) free in the directory's filesystem (statvfs f_favail).",
        labels=["dir"])
    failed = GaugeMetricFamily(
        "moonfire_sample_file_dir_failed",
        "1 if the directory failed in this process (its streams stopped recording).",
        labels=["dir"])
    file_fsync = HistogramMetricFamily(
        "moonfire_syncer_file_fsync_seconds", "How long each sample file's fsync took.",
        labels=["dir"])
    dir_fsync = HistogramMetricFamily(
        "moonfire_syncer_dir_fsync_seconds", "How long each fsync of the directory took.",
        labels=["dir"])
    queue_depth = GaugeMetricFamily(
        "moonfire_syncer_queue_depth",
        "Saves and other commands waiting for the directory's syncer.", labels=["dir"])
    for row in db.list_sample_file_dirs():
        labels = [row.name]
        try:
            st = os.statvfs(row.path)
        except OSError:
            pass  # gone or unreachable: the failed gauge (and the log) say so
        else:
            free_bytes.add_metric(labels, st.f_bavail * st.f_frsize)
            size_bytes.add_metric(labels, st.f_blocks * st.f_frsize)
            free_inodes.add_metric(labels, st.f_favail)
        syncer = syncers.get(row.id)
        if recorder is not None:
            broken = row.id in dir_errors or (syncer is not None and syncer.fatal_error is not None)
            failed.add_metric(labels, 1 if broken else 0)
        if syncer is None:
            continue
        _add_histogram(file_fsync, labels, syncer.stats.file_fsync)
        _add_histogram(dir_fsync, labels, syncer.stats.dir_fsync)
        queue_depth.add_metric(labels, syncer.queue_depth)
    yield from (free_bytes, size_bytes, free_inodes, failed, file_fsync, dir_fsync, queue_depth)


def _add_histogram(
    family: HistogramMetricFamily, labels: list[str], histogram: LatencyHistogram
) -> None:
    """The syncer's per-bucket counts as Prometheus's cumulative ``le`` buckets."""
    counts = list(histogram.counts)  # one snapshot: the buckets agree with each other
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(histogram.bounds, counts, strict=False):
        total += count
        buckets.append((floatToGoString(bound), total))
    buckets.append(("+Inf", total + counts[-1]))
    family.add_metric(labels, buckets, histogram.sum)
