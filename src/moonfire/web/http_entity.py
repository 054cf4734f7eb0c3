"""RFC 9110 ranges and conditional requests for any sized, readable entity, served by aiohttp.

``view.mp4`` and ``/api/init/<id>.mp4`` are virtual files: their bytes are computed on request
(``moonfire.playback.mp4.VirtualFile``), so aiohttp's ``FileResponse`` can't serve them, and a
``<video>`` element only plays and seeks a file whose server honours ``Range``.  This module is
the http-serve crate's job in Moonfire NVR, done for aiohttp, with the behaviour of
``web-api.md`` §2.5:

* ``Accept-Ranges: bytes``, a strong ``ETag``, ``Last-Modified`` (never later than ``Date``,
  which is set here from the same clock reading);
* one range -> 206 with ``Content-Range``; ``a-``, ``-N`` and an end past the file (clamped);
  several -> ``multipart/byteranges`` when that body is smaller than the whole file, otherwise
  200 with all of it; none satisfiable -> 416 with ``Content-Range: bytes */len``; a ``Range``
  that does not parse, or is not in bytes, is ignored (200);
* ``If-Range`` honoured only on a strong ETag match, in which case the 206 leaves out the
  representation headers the client already has (``Content-Type`` and the caller's
  ``entity_headers``); any other ETag or any date -> 200 with the whole file;
* ``If-Match`` / ``If-Unmodified-Since`` -> 412, ``If-None-Match`` / ``If-Modified-Since``
  -> 304, in the order of RFC 9110 §13.2.2;
* HEAD gets exactly the GET's status and headers, ranges included (as Moonfire's http-serve
  does; RFC 9110 §14.2 would have a server ignore ``Range`` on HEAD, but a HEAD that answers
  what the GET would is what a client probing a URL expects), and no body: aiohttp would send
  body bytes on HEAD, so the handler returns right after ``prepare()``.

The decisions are plain functions (``parse_range``, ``evaluate_preconditions``,
``if_range_allows``, ``plan``), testable without a server; ``serve_entity`` only carries a
``Plan`` out.  Disk reads happen in ``loop.run_in_executor``, a chunk at a time, one chunk read
ahead of the socket, so the event loop never waits for a disk.  A client that goes away
mid-body ends the response quietly (a debug line, no traceback); a read that fails mid-body is
logged and the connection closed, since the status line is already gone and a short body on
a kept-alive connection would be read as the start of the next response.

**Spans.**  Reading a chunk into Python and writing it to the socket copies each byte twice,
which made ``view.mp4`` run at 0.55–0.71× of aiohttp's ``FileResponse`` (which uses
``sendfile``).  An entity that also has ``spans`` (a :class:`SpansEntity`, such as
``VirtualFile``) describes its bytes as in-memory pieces and :class:`FileSpan` ranges of files.
Over a plain (not TLS) socket such a body, once the headers are out, is written by an executor
thread straight to the socket: file ranges with ``os.sendfile`` (file to socket in the kernel),
in-memory pieces with ``os.write``.  A thread, not the loop as ``FileResponse``'s
``loop.sendfile`` has it, because ``sendfile`` reads the disk: sample files are on busy hard
disks, and a seek on the loop would stall every other client, live streams included.  The
thread writes to a duplicate of the socket's descriptor (a transport closed meanwhile can't
have its number reused under the thread), starts only once the transport's own buffer is
empty (bytes stay in order), and never waits for a slow client for long: the socket is
non-blocking, and after ``SENDFILE_WAIT_SECONDS`` without room in it the thread returns and the
loop waits for the socket to be writable, holding no thread.  Over TLS or another kind of
transport the entity's ``read`` serves as above; a file system that refuses ``sendfile`` has
its spans read (``os.pread``) and written by the thread.  Each file is opened when its span's
turn comes and closed once it is sent, whatever happens to the connection.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import enum
import errno
import logging
import os
import re
import secrets
import select
import socket
import stat
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiohttp import hdrs, web

from moonfire.errors import MoonfireError

log = logging.getLogger(__name__)

#: More range specs than this in one ``Range`` header and the header is ignored (200 with the
#: whole file).  RFC 9110 §14.2 lets a server ignore a set of many ranges; a player asks for
#: one, and a long list is cheap to send but costly to serve (a part header each).
MAX_RANGES = 100

#: Numbers in a Range header longer than this many digits (leading zeros aside) are larger
#: than any entity; they are not converted, since ``int()`` refuses strings of more than
#: 4300 digits and a header may hold 8 KiB of them.
_MAX_DIGITS = 20
_HUGE = 10**_MAX_DIGITS


class Entity(Protocol):
    """What ``serve_entity`` serves: a fixed sequence of bytes with its validators.

    ``read`` blocks (it may hit the disk) and is called from executor threads, up to two
    calls at a time for one response, so it must be thread-safe.  It returns exactly
    ``length`` bytes for a range inside the entity.
    """

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str: ...

    @property
    def last_modified(self) -> datetime.datetime: ...

    @property
    def content_type(self) -> str: ...

    def read(self, offset: int, length: int) -> bytes: ...


class FileSpan(Protocol):
    """Bytes ``[offset, offset + length)`` of a file, one piece of ``SpansEntity.spans``: sent
    from the file by the kernel, never read into Python.

    ``open`` returns a new descriptor of the file, which ``serve_entity`` closes once the span
    is sent (or is not to be); it blocks, and is called from an executor thread.  ``str()``
    of a span names it in error messages.
    """

    @property
    def offset(self) -> int: ...

    @property
    def length(self) -> int: ...

    def open(self) -> int: ...


class SpansEntity(Entity, Protocol):
    """An entity that can say which of its bytes lie in files, so they can be ``sendfile``d.

    ``spans(offset, length)`` yields, in order, pieces that together are exactly
    ``read(offset, length)``: bytes (keep each to about a megabyte: a piece is held in memory
    whole) and :class:`FileSpan` ranges.  Advancing the iterator may block; it is advanced in
    executor threads, one piece at a time, never by two threads at once.  ``read`` stays
    required: it serves when ``sendfile`` can't be used.
    """

    def spans(self, offset: int, length: int) -> Iterator[bytes | FileSpan]: ...


# ---- ranges --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, stop)`` of an entity (HTTP's ``a-b`` is ``ByteRange(a, b + 1)``)."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value naming this range of an entity of ``size`` bytes."""
        return f"bytes {self.start}-{self.stop - 1}/{size}"


_OWS = " \t"
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)


def _number(digits: str) -> int:
    """The value of ASCII digits, or ``_HUGE`` (beyond any entity) for a very long number."""
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


def _less(a: str, b: str) -> bool:
    """Whether the number written ``a`` is below the one written ``b``, however long."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def parse_range(header: str | None, size: int) -> tuple[ByteRange, ...] | None:
    """The satisfiable ranges a ``Range`` header asks for, in the order asked.

    ``None``: no header, or one to ignore (another unit than bytes, any syntax error, a spec
    whose last byte is before its first, more than ``MAX_RANGES`` specs).  An empty tuple:
    a valid header of which no range can be satisfied (416).  Grammar (RFC 9110 §14.1.2):
    ``bytes=`` (unit case-insensitive), then a comma-separated list (spaces and tabs around
    the commas, empty elements skipped) of ``first-[last]`` and ``-suffix``, ASCII digits
    only.  A ``last`` past the end is clamped; a ``first`` at or past the end, or a suffix of
    0, is unsatisfiable and dropped; a suffix longer than the entity selects all of it.  An
    empty entity has no satisfiable range.
    """
    if header is None:
        return None
    unit, equals, spec_list = header.strip(_OWS).partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    specs = [s.strip(_OWS) for s in spec_list.split(",")]
    specs = [s for s in specs if s]
    if not specs or len(specs) > MAX_RANGES:
        return None
    ranges: list[ByteRange] = []
    for spec in specs:
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if not first:
            if not last:
                return None  # a bare "-"
            suffix = _number(last)
            if suffix > 0 and size > 0:
                ranges.append(ByteRange(max(0, size - suffix), size))
            continue
        start = _number(first)
        if last:
            if _less(last, first):
                return None  # invalid spec: RFC 9110 §14.1.1, the whole header is ignored
            stop = min(_number(last) + 1, size)
        else:
            stop = size
        if start < size:
            ranges.append(ByteRange(start, stop))
    return tuple(ranges)


# ---- entity tags and dates -----------------------------------------------------------------


@dataclass(frozen=True)
class EntityTag:
    """An ``entity-tag`` (RFC 9110 §8.8.3): the opaque quoted string and whether it is weak."""

    opaque: str  # with its quotes
    weak: bool = False

    def strong_eq(self, other: EntityTag) -> bool:
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weak_eq(self, other: EntityTag) -> bool:
        return self.opaque == other.opaque


# etagc = %x21 / %x23-7E / obs-text; aiohttp hands header bytes over as text, so any
# non-ASCII character counts as obs-text here.
_TAG = r'(W/)?("[\x21\x23-\x7e\x80-\U0010ffff]*")'
_ENTITY_TAG = re.compile(_TAG)
_LIST_TAG = re.compile(rf"{_TAG}[ \t]*(?:,|$)")
_ANY = "*"


def parse_entity_tag(value: str) -> EntityTag | None:
    """One entity tag (``"x"`` or ``W/"x"``), or None if ``value`` is not exactly one."""
    match = _ENTITY_TAG.fullmatch(value.strip(_OWS))
    if match is None:
        return None
    return EntityTag(match.group(2), match.group(1) is not None)


def parse_entity_tags(value: str) -> tuple[EntityTag, ...] | None:
    """The tags of an ``If-Match``/``If-None-Match`` value; None for ``*`` (any).

    Elements are read from the left while they are well-formed (empty ones skipped); the
    rest of a malformed list is dropped, so garbage matches nothing.
    """
    if value.strip(_OWS) == _ANY:
        return None
    tags: list[EntityTag] = []
    position = 0
    while position < len(value):
        if value[position] in ", \t":
            position += 1
            continue
        match = _LIST_TAG.match(value, position)
        if match is None:
            break
        tags.append(EntityTag(match.group(2), match.group(1) is not None))
        position = match.end()
    return tuple(tags)


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF_FIXDATE = re.compile(rf"{_DAY}, ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT", re.I)
_RFC850_DATE = re.compile(rf"{_LONG_DAY}, ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT", re.I)
_ASCTIME_DATE = re.compile(rf"{_DAY} {_MONTH} ([0-9 ][0-9]) {_TIME} ([0-9]{{4}})", re.I)


def parse_http_date(value: str, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """An ``HTTP-date`` (RFC 9110 §5.6.7: IMF-fixdate, or the obsolete RFC 850 and asctime
    forms a recipient must accept) as an aware UTC datetime; None if ``value`` is anything
    else, a list of dates included.  An RFC 850 two-digit year more than 50 years ahead of
    ``now`` is taken to be in the past century, as the RFC says.
    """
    value = value.strip(_OWS)
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
        fields = (int(year), _MONTHS[month.lower()], int(day))
    elif match := _RFC850_DATE.fullmatch(value):
        day, month, short_year, hour, minute, second = match.groups()
        current = (now or datetime.datetime.now(datetime.UTC)).year
        year_value = current // 100 * 100 + int(short_year)
        if year_value > current + 50:
            year_value -= 100
        fields = (year_value, _MONTHS[month.lower()], int(day))
    elif match := _ASCTIME_DATE.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
        fields = (int(year), _MONTHS[month.lower()], int(day.strip() or "x"))
    else:
        return None
    try:
        return datetime.datetime(
            *fields, int(hour), int(minute), int(second), tzinfo=datetime.UTC
        )
    except ValueError:  # 31 Feb, 25:00:00, a leap second
        return None


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_http_date(when: datetime.datetime) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT`` (independent of the locale)."""
    utc = when.astimezone(datetime.UTC)
    return (
        f"{_WEEKDAYS[utc.weekday()]}, {utc.day:02d} {_MONTH_NAMES[utc.month - 1]} "
        f"{utc.year:04d} {utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )


# ---- preconditions -------------------------------------------------------------------------


class Precondition(enum.Enum):
    """What the conditional headers decide for a GET or HEAD."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not modified"  # 304
    FAILED = "precondition failed"  # 412


@dataclass(frozen=True)
class Conditions:
    """The request headers this module reads, each list header's values joined by ``, ``
    (None when absent)."""

    range: str | None = None
    if_range: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Conditions:
        """From a (multi-)mapping such as ``request.headers``; repeated fields are joined,
        which is how a list header's values combine (RFC 9110 §5.3) and makes repeated
        single-value fields (``Range``, the dates) unparseable, hence ignored."""

        def get(name: str) -> str | None:
            getall = getattr(headers, "getall", None)
            values = list(getall(name, ())) if getall is not None else (
                [headers[name]] if name in headers else [])
            return ", ".join(values) if values else None

        return cls(
            range=get(hdrs.RANGE),
            if_range=get(hdrs.IF_RANGE),
            if_match=get(hdrs.IF_MATCH),
            if_none_match=get(hdrs.IF_NONE_MATCH),
            if_modified_since=get(hdrs.IF_MODIFIED_SINCE),
            if_unmodified_since=get(hdrs.IF_UNMODIFIED_SINCE),
        )


def evaluate_preconditions(
    conditions: Conditions, etag: str, last_modified: datetime.datetime
) -> Precondition:
    """RFC 9110 §13.2.2 for a GET/HEAD of an existing entity, steps 1–4.

    1. ``If-Match``: strong comparison (``*`` matches); no match -> 412.
    2. Else ``If-Unmodified-Since`` (ignored if not a date): modified after it -> 412.
    3. ``If-None-Match``: weak comparison (``*`` matches); a match -> 304.
    4. Else ``If-Modified-Since`` (ignored if not a date): not modified after it -> 304.

    ``last_modified`` is compared at whole-second precision, as HTTP dates carry.
    """
    current = parse_entity_tag(etag) or EntityTag(etag)
    modified = last_modified.replace(microsecond=0)
    if conditions.if_match is not None:
        tags = parse_entity_tags(conditions.if_match)
        if tags is not None and not any(t.strong_eq(current) for t in tags):
            return Precondition.FAILED
    elif conditions.if_unmodified_since is not None:
        since = parse_http_date(conditions.if_unmodified_since)
        if since is not None and modified > since:
            return Precondition.FAILED
    if conditions.if_none_match is not None:
        tags = parse_entity_tags(conditions.if_none_match)
        if tags is None or any(t.weak_eq(current) for t in tags):
            return Precondition.NOT_MODIFIED
    elif conditions.if_modified_since is not None:
        since = parse_http_date(conditions.if_modified_since)
        if since is not None and modified <= since:
            return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def if_range_allows(if_range: str | None, etag: str) -> bool:
    """Whether the ``Range`` may be honoured given ``If-Range`` (RFC 9110 §13.1.5).

    Absent -> yes.  An entity tag strongly equal to ``etag`` -> yes.  A weak or different
    tag, anything unparseable, or any date -> no: a date can't prove the entity unchanged
    (it may have changed twice within that second), so, like http-serve, a date never
    matches.
    """
    if if_range is None:
        return True
    tag = parse_entity_tag(if_range)
    current = parse_entity_tag(etag) or EntityTag(etag)
    return tag is not None and tag.strong_eq(current)


# ---- the plan of a response ----------------------------------------------------------------


class Body(enum.Enum):
    """Which bytes a response carries."""

    NONE = "none"  # 304, 412, 416
    WHOLE = "whole"
    SINGLE = "single"  # one range, 206 with Content-Range
    MULTIPART = "multipart"  # several ranges, 206 multipart/byteranges


@dataclass(frozen=True)
class Plan:
    """What to answer: the status, which bytes, and whether the representation headers
    (``Content-Type`` and the caller's ``entity_headers``) go out."""

    status: int
    body: Body
    ranges: tuple[ByteRange, ...] = ()
    representation_headers: bool = True


#: Length of the random multipart boundary (``secrets.token_hex(16)``); the body's length
#: depends on it, not on its value.
BOUNDARY_LENGTH = 32


def multipart_layout(
    ranges: Sequence[ByteRange], size: int, content_type: str, boundary: str
) -> list[bytes | ByteRange]:
    """A ``multipart/byteranges`` body (RFC 9110 §14.6) as literal pieces and entity ranges:
    per part a delimiter, ``Content-Type`` and ``Content-Range`` headers, a blank line and
    the bytes; then the closing delimiter."""
    layout: list[bytes | ByteRange] = []
    for i, r in enumerate(ranges):
        head = (
            f"{'--' if i == 0 else chr(13) + chr(10) + '--'}{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {r.content_range(size)}\r\n\r\n"
        )
        layout += [head.encode("latin-1", "replace"), r]
    layout.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    return layout


def layout_length(layout: Sequence[bytes | ByteRange]) -> int:
    """The bytes a body laid out as ``layout`` holds."""
    return sum(p.length if isinstance(p, ByteRange) else len(p) for p in layout)


def plan(
    conditions: Conditions,
    size: int,
    etag: str,
    last_modified: datetime.datetime,
    content_type: str,
) -> Plan:
    """The response to a GET or HEAD (the same for both: see the module docstring).

    Preconditions first (412, 304), then ``Range`` if ``If-Range`` allows it.  Several
    satisfiable ranges are served as multipart only when that body (``content_type`` goes
    in each part's header) is smaller than the whole entity, otherwise as 200 with all of it.
    """
    precondition = evaluate_preconditions(conditions, etag, last_modified)
    if precondition is Precondition.FAILED:
        return Plan(412, Body.NONE)
    if precondition is Precondition.NOT_MODIFIED:
        return Plan(304, Body.NONE)
    if conditions.range is None or not if_range_allows(conditions.if_range, etag):
        return Plan(200, Body.WHOLE)
    ranges = parse_range(conditions.range, size)
    if ranges is None:
        return Plan(200, Body.WHOLE)
    if not ranges:
        return Plan(416, Body.NONE)
    # Through a matching If-Range the client holds the representation's headers already.
    representation = conditions.if_range is None
    if len(ranges) == 1:
        return Plan(206, Body.SINGLE, ranges, representation)
    layout = multipart_layout(ranges, size, content_type, "-" * BOUNDARY_LENGTH)
    if layout_length(layout) < size:
        return Plan(206, Body.MULTIPART, ranges, representation)
    return Plan(200, Body.WHOLE)


# ---- serving -------------------------------------------------------------------------------


class EntityReadError(MoonfireError):
    """An entity's ``read`` returned fewer bytes than its size promised."""


class _EntityResponse(web.StreamResponse):
    """A ``StreamResponse`` that can go out without ``Content-Type``.

    aiohttp gives any response with a body ``Content-Type: application/octet-stream`` unless
    one is set; a 206 answered through ``If-Range`` should have none (RFC 9110 §15.3.7), and
    a made-up one would be wrong, so it is taken out again once aiohttp has prepared the
    headers, before they are written.  (The test of the If-Range 206 checks that this still
    works with the installed aiohttp.)
    """

    def __init__(self, *, status: int, omit_content_type: bool) -> None:
        super().__init__(status=status)
        self._omit_content_type = omit_content_type

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        if self._omit_content_type:
            self.headers.popall(hdrs.CONTENT_TYPE, None)


async def serve_entity(
    request: web.BaseRequest,
    entity: Entity,
    *,
    headers: Mapping[str, str] = {},  # noqa: B006 - never mutated
    entity_headers: Mapping[str, str] = {},  # noqa: B006 - never mutated
    chunk_size: int = 1 << 20,
) -> web.StreamResponse:
    """Answers a GET or HEAD of ``entity``, with ranges and conditional requests.

    ``headers`` go on every answer (e.g. ``Cache-Control``, which RFC 9110 wants on 304s
    too); ``entity_headers`` (``Content-Disposition``, ``X-…``) go on 200s and on 206s not
    answered through ``If-Range``.  Other methods get 405 (``Allow: GET,HEAD``), though the
    router should not send them here.  The body is read ``chunk_size`` bytes at a time in the
    loop's default executor, or, for a :class:`SpansEntity` on a plain socket, sent from its
    spans by executor threads (see the module docstring).  If the first read fails (or the
    first piece of the spans, its file opened, can't be had), its exception propagates before
    anything is sent (so middleware can turn it into an error response); a later failure
    closes the connection.  When this returns or raises (client gone and cancelled
    included), no read of ``entity`` is running and every file a span opened is closed, so
    the caller may close what it reads from.  Returns the response, already sent.
    """
    if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
        raise web.HTTPMethodNotAllowed(request.method, [hdrs.METH_GET, hdrs.METH_HEAD])
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    # Last-Modified must not be later than Date (RFC 9110 §8.8.2.1).
    last_modified = min(entity.last_modified.replace(microsecond=0), now)
    size = entity.size
    etag = entity.etag
    content_type = entity.content_type
    decision = plan(Conditions.from_headers(request.headers), size, etag, last_modified,
                    content_type)

    response = _EntityResponse(
        status=decision.status,
        omit_content_type=decision.body is Body.NONE or (
            not decision.representation_headers and decision.body is not Body.MULTIPART),
    )
    response.headers.update(headers)
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    response.headers[hdrs.ETAG] = etag
    response.headers[hdrs.LAST_MODIFIED] = format_http_date(last_modified)
    response.headers[hdrs.DATE] = format_http_date(now)

    if decision.body is Body.NONE:
        if decision.status == 416:
            response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        if decision.status != 304:
            response.content_length = 0
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError as e:
            log.debug("%s %s: client went away (%s)", request.method, request.path, e)
        return response

    layout: list[bytes | ByteRange]
    if decision.body is Body.MULTIPART:
        boundary = secrets.token_hex(BOUNDARY_LENGTH // 2)
        layout = multipart_layout(decision.ranges, size, content_type, boundary)
        response.headers[hdrs.CONTENT_TYPE] = f"multipart/byteranges; boundary={boundary}"
    elif decision.body is Body.SINGLE:
        (only,) = decision.ranges
        layout = [only]
        response.headers[hdrs.CONTENT_RANGE] = only.content_range(size)
    else:
        layout = [ByteRange(0, size)] if size else []
    if decision.representation_headers:
        response.headers.update(entity_headers)
        if decision.body is not Body.MULTIPART:
            response.headers[hdrs.CONTENT_TYPE] = content_type
    response.content_length = layout_length(layout)

    if request.method == hdrs.METH_HEAD:
        try:
            await response.prepare(request)
        except ConnectionError as e:
            log.debug("%s %s: client went away (%s)", request.method, request.path, e)
        return response  # nothing more: aiohttp would send body bytes on HEAD (media-notes §6)
    spans = getattr(entity, "spans", None)
    transport = request.transport
    if spans is not None and transport is not None and _can_sendfile(transport, response):
        await _send_spans(request, response, transport, entity, spans, layout, chunk_size)
    else:
        await _send_body(request, response, entity, layout, chunk_size)
    return response


def _steps(layout: Sequence[bytes | ByteRange], chunk_size: int) -> Iterator[bytes | ByteRange]:
    """Literal pieces and reads of at most ``chunk_size`` bytes, in body order."""
    for piece in layout:
        if isinstance(piece, bytes):
            yield piece
            continue
        for start in range(piece.start, piece.stop, chunk_size):
            yield ByteRange(start, min(start + chunk_size, piece.stop))


#: Steps in flight: the one being sent and the next one, already being read.
_READ_AHEAD = 2


async def _send_body(
    request: web.BaseRequest,
    response: web.StreamResponse,
    entity: Entity,
    layout: Sequence[bytes | ByteRange],
    chunk_size: int,
) -> None:
    """Prepares the response once the first bytes are in hand, then writes the body, reading
    the next chunk in the executor while the last one goes to the socket.

    A client disconnect ends it with a debug line.  A failed or short read after the headers
    went out closes the connection (the client sees a truncated body, never a wrong one) and
    is logged; before that, it propagates.
    """
    loop = asyncio.get_running_loop()
    steps = _steps(layout, chunk_size)
    queue: collections.deque[tuple[bytes | ByteRange, bytes | asyncio.Future[bytes]]] = (
        collections.deque()
    )

    def refill() -> None:
        while len(queue) < _READ_AHEAD:
            step = next(steps, None)
            if step is None:
                return
            if isinstance(step, bytes):
                queue.append((step, step))
            else:
                queue.append((step, loop.run_in_executor(None, entity.read, step.start,
                                                         step.length)))

    try:
        refill()
        while queue:
            step, pending = queue[0]
            if isinstance(pending, bytes):
                data = pending
            else:
                assert isinstance(step, ByteRange)
                try:
                    # Shielded: a cancellation must not mark the read done while its thread
                    # runs on (``_settle`` waits for it).
                    data = await asyncio.shield(pending)
                    if len(data) != step.length:
                        raise EntityReadError(
                            f"read of bytes {step.start}-{step.stop - 1} of {entity!r} "
                            f"returned {len(data)} bytes"
                        )
                except Exception as e:
                    if not response.prepared:
                        raise
                    _abort(request, response, f"bytes {step.start}-{step.stop - 1}: {e!r}")
                    return
            queue.popleft()
            refill()
            if not response.prepared:
                await response.prepare(request)
            await response.write(data)
        if not response.prepared:  # an empty body
            await response.prepare(request)
        await response.write_eof()
    except ConnectionError as e:
        log.debug("%s %s: client went away mid-body (%s)", request.method, request.path, e)
    finally:
        await _settle([f for _, f in queue if isinstance(f, asyncio.Future)])


async def _settle(reads: Sequence[asyncio.Future[Any]]) -> None:
    """Waits for reads still in flight, so that none runs once ``serve_entity`` is over (its
    caller may close what the entity reads from, e.g. the sample file directory).

    They are not cancelled: cancelling the future of a read already running in a thread
    would mark it done at once while the thread goes on.  Each is one chunk, so this is
    short.  A cancellation arriving meanwhile is deferred until they are done.  Their
    results and errors are dropped (retrieved, so asyncio doesn't report them as lost).
    """
    if not reads:
        return
    cancelled = False
    while True:
        try:
            await asyncio.wait(reads)
            break
        except asyncio.CancelledError:
            cancelled = True
    for read in reads:
        if not read.cancelled():
            read.exception()
    if cancelled:
        raise asyncio.CancelledError


def _abort(request: web.BaseRequest, response: web.StreamResponse, problem: str) -> None:
    """Ends a response whose status line is gone: logs and closes the connection."""
    log.error("%s %s: reading the body failed at %s; closing the connection",
              request.method, request.path, problem)
    response.force_close()
    if request.transport is not None:
        request.transport.close()


# ---- sending spans -------------------------------------------------------------------------

#: How long an executor thread sending a body waits for room in the socket before handing the
#: wait back to the event loop (which waits holding no thread).  Long enough that a client
#: reading at full speed is served without a trip through the loop each time the socket
#: fills; short enough that a stalled client holds a thread only this long.
SENDFILE_WAIT_SECONDS = 0.02

#: How long one executor call goes on sending before it returns to the loop: bounds how long a
#: cancelled response waits for its thread (files are closed only after) and how long a
#: connection closed by the server goes unnoticed.
SENDFILE_CALL_SECONDS = 0.2

#: While waiting for a stalled client's socket to take bytes, how often to look whether the
#: transport was closed meanwhile (the duplicate descriptor would keep the socket open).
_CLOSED_CHECK_SECONDS = 1.0

#: ``os.sendfile`` errors meaning "not for this file (system)": its spans are read instead.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})

_MEMORY = (bytes, bytearray, memoryview)

_T = TypeVar("_T")


def _can_sendfile(transport: asyncio.BaseTransport, response: web.StreamResponse) -> bool:
    """Whether body bytes may go to ``transport``'s socket directly: a plain stream socket
    (no TLS, whose bytes the transport encrypts), and a body aiohttp would send as given
    (no compression, no chunked encoding)."""
    if not hasattr(os, "sendfile") or response.compression or response.chunked:
        return False
    if transport.is_closing():
        return False
    if (transport.get_extra_info("sslcontext") is not None
            or transport.get_extra_info("ssl_object") is not None):
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and getattr(sock, "type", None) == socket.SOCK_STREAM


async def _in_thread(function: Callable[..., _T], *args: Any,
                     orphan: Callable[[_T], object] | None = None) -> _T:
    """``function(*args)`` in the default executor.  Cancelled, it still waits for the thread
    to finish (so nothing it uses is closed under it), hands a result that came anyway to
    ``orphan`` (to close what it holds), and then lets the cancellation go on."""
    future = asyncio.get_running_loop().run_in_executor(None, function, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        try:
            await _settle([future])
        finally:
            if orphan is not None and not future.cancelled() and future.exception() is None:
                orphan(future.result())
        raise


@dataclass(frozen=True)
class _OpenSpan:
    """A span whose file is open (``fd``, closed once the span is sent or abandoned)."""

    span: FileSpan
    fd: int

    def close(self) -> None:
        os.close(self.fd)


def _close_piece(piece: bytes | _OpenSpan | None) -> None:
    if isinstance(piece, _OpenSpan):
        piece.close()


def _pieces(
    entity: Entity,
    spans: Callable[[int, int], Iterator[bytes | FileSpan]],
    layout: Sequence[bytes | ByteRange],
) -> Generator[bytes | FileSpan, None, None]:
    """The body as pieces: the layout's literal bytes, and the entity's spans of each range,
    checked to add up to the range (``EntityReadError`` otherwise).  Blocking."""
    for part in layout:
        if isinstance(part, bytes):
            yield part
            continue
        got = 0
        for piece in spans(part.start, part.length):
            n = len(piece) if isinstance(piece, _MEMORY) else piece.length
            if n < 0 or got + n > part.length:
                got = -1
                break
            got += n
            if n:
                yield piece
        if got != part.length:
            raise EntityReadError(
                f"spans of bytes {part.start}-{part.stop - 1} of {entity!r} "
                f"{'overrun the range' if got < 0 else f'hold {got} bytes'}"
            )


def _next_piece(pieces: Iterator[bytes | FileSpan]) -> bytes | _OpenSpan | None:
    """The next piece, a file span with its file open and checked to hold it; None at the
    end.  Blocking."""
    piece = next(pieces, None)
    if piece is None or isinstance(piece, _MEMORY):
        return piece
    fd = piece.open()
    try:
        st = os.fstat(fd)
        end = piece.offset + piece.length
        if stat.S_ISREG(st.st_mode) and st.st_size < end:
            raise EntityReadError(f"{piece}: the file holds {st.st_size} bytes, not {end}")
    except BaseException:
        os.close(fd)
        raise
    return _OpenSpan(piece, fd)


_DONE, _BLOCKED, _MORE = "done", "blocked", "more"

#: ``_Pump._following`` before the piece after the current one is made.
_NOT_YET = object()


class _Pump:
    """Writes a body, after its headers, straight to a duplicate of the socket's descriptor:
    file spans with ``os.sendfile`` (or, for a file sendfile turns down, ``os.pread`` and
    ``os.write``), in-memory pieces with ``os.write``.  ``run`` is called in an executor
    thread, one call at a time; the loop calls ``close`` once no call runs.

    The duplicate descriptor, not the transport's: the transport may be closed (the client
    gone, the server stopping) while a thread writes, and the number of a closed descriptor
    can be reused at once by another open file.
    """

    def __init__(self, pieces: Iterator[bytes | FileSpan], sock: int,
                 first: bytes | _OpenSpan, chunk_size: int) -> None:
        self.sock = sock
        self.position = 0  # body bytes sent
        self._pieces = pieces
        self._piece: bytes | _OpenSpan | None = first
        #: The piece after ``_piece``, made while the socket was full (``_NOT_YET`` until
        #: then), or the exception making it raised.
        self._following: bytes | _OpenSpan | None | object = _NOT_YET
        self._done = 0  # bytes of the current piece sent
        self._chunk_size = chunk_size
        self._sendfile = True
        self._poller = select.poll()
        self._poller.register(sock, select.POLLOUT)

    def where(self) -> str:
        if isinstance(self._piece, _OpenSpan):
            return f"body byte {self.position}, {self._piece.span}"
        return f"body byte {self.position}"

    def run(self, wait: float, seconds: float) -> str:
        """Sends until the body is all sent (``_DONE``), the socket has had no room for
        ``wait`` seconds (``_BLOCKED``: wait for it to be writable, then call again) or
        ``seconds`` have passed (``_MORE``).  Raises ``ConnectionError`` when the client is
        gone, ``EntityReadError`` or ``OSError`` when the entity's bytes can't be had."""
        deadline = time.monotonic() + seconds
        while True:
            if self._piece is None:
                following, self._following = self._following, _NOT_YET
                if isinstance(following, Exception):
                    raise following
                self._piece = (_next_piece(self._pieces) if following is _NOT_YET
                               else following)  # type: ignore[assignment]
                self._done = 0
                if self._piece is None:
                    return _DONE
            piece = self._piece
            length = piece.span.length if isinstance(piece, _OpenSpan) else len(piece)
            try:
                if isinstance(piece, _OpenSpan):
                    n, full = self._send_file(piece)
                else:
                    n = os.write(self.sock, memoryview(piece)[self._done :])
                    full = n < length - self._done
            except BlockingIOError:
                full, n = True, 0
            self._done += n
            self.position += n
            if self._done == length:
                self._piece = None
                _close_piece(piece)
            # A short write means a full socket: wait for room rather than try again at once
            # (which would send a sliver or nothing), as the loop's own sendfile does.  The
            # client is busy reading what the socket holds, so this is the moment to open the
            # next file (a 24-hour view.mp4 has 1440), not once the socket is empty.
            if full:
                if self._piece is not None and self._following is _NOT_YET:
                    try:
                        self._following = _next_piece(self._pieces)
                    except Exception as e:  # raised in turn, once the current piece is sent
                        self._following = e
                if not self._poller.poll(wait * 1000):
                    return _BLOCKED
            if time.monotonic() >= deadline:
                return _MORE

    def _send_file(self, piece: _OpenSpan) -> tuple[int, bool]:
        """Sends some of the span: the bytes sent, and whether the socket took less than
        offered (it is full)."""
        span, fd = piece.span, piece.fd
        offset = span.offset + self._done
        remaining = span.length - self._done
        if self._sendfile:
            try:
                n = os.sendfile(self.sock, fd, offset, remaining)
            except OSError as e:
                if e.errno not in _NO_SENDFILE:
                    raise
                log.debug("sendfile refused %s (%s); reading instead", span, e)
                self._sendfile = False
                return 0, False
            if n == 0:
                raise EntityReadError(f"{span}: the file ended {remaining} bytes early")
            return n, n < remaining
        data = os.pread(fd, min(remaining, self._chunk_size), offset)
        if not data:
            raise EntityReadError(f"{span}: the file ended {remaining} bytes early")
        n = os.write(self.sock, data)  # what the socket doesn't take is read again next time
        return n, n < len(data)

    def close(self) -> None:
        """Closes the file of a piece not sent through, and the duplicate descriptor."""
        piece, self._piece = self._piece, None
        following, self._following = self._following, _NOT_YET
        _close_piece(piece)
        if isinstance(following, _OpenSpan):
            following.close()
        os.close(self.sock)


async def _flush(transport: asyncio.Transport, writer: Any, sock: int) -> None:
    """Waits until the transport has sent what aiohttp gave it (the headers), so that bytes
    written to the socket directly come after them.  With write buffer limits of 0 the
    transport pauses the protocol until its buffer is empty, which is what ``drain`` waits
    for; the limits are put back after."""
    send_headers = getattr(writer, "send_headers", None)
    if send_headers is not None:
        send_headers()  # StreamResponse.prepare has sent them: cheap insurance
    if not transport.get_write_buffer_size():
        return
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        while transport.get_write_buffer_size() and not transport.is_closing():
            protocol = getattr(writer, "protocol", None)
            if getattr(protocol, "writing_paused", False):
                await writer.drain()
            else:  # a protocol that doesn't say: wait for room, then look again
                await _writable(transport, sock)
                await asyncio.sleep(0)
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits(high=high, low=low)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _writable(transport: asyncio.BaseTransport, sock: int) -> None:
    """Waits for room in the socket ``sock`` (a duplicate of ``transport``'s), looking every
    ``_CLOSED_CHECK_SECONDS`` whether the transport was closed meanwhile."""
    loop = asyncio.get_running_loop()
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(sock, _resolve, ready)
        try:
            await asyncio.wait([ready], timeout=_CLOSED_CHECK_SECONDS)
        finally:
            loop.remove_writer(sock)
        if ready.done():
            return
        if transport.is_closing():
            raise ConnectionResetError("the connection was closed")


async def _send_spans(
    request: web.BaseRequest,
    response: web.StreamResponse,
    transport: asyncio.Transport,
    entity: Entity,
    spans: Callable[[int, int], Iterator[bytes | FileSpan]],
    layout: Sequence[bytes | ByteRange],
    chunk_size: int,
) -> None:
    """``_send_body`` for a ``SpansEntity`` on a plain socket: the first piece is made (its
    file opened and checked) before the headers go, so its failure propagates; the rest of
    the body is sent by a ``_Pump``, and a failure there closes the connection.  A client gone
    ends it with a debug line.  Every file opened is closed before this returns."""
    pieces = _pieces(entity, spans, layout)
    try:
        first = await _in_thread(_next_piece, pieces, orphan=_close_piece)
        await _pump_body(request, response, transport, pieces, first, chunk_size)
    finally:
        pieces.close()


async def _pump_body(
    request: web.BaseRequest,
    response: web.StreamResponse,
    transport: asyncio.Transport,
    pieces: Iterator[bytes | FileSpan],
    first: bytes | _OpenSpan | None,
    chunk_size: int,
) -> None:
    """Prepares the response and has a ``_Pump`` send the body from ``first`` on."""
    pump: _Pump | None = None
    try:
        try:
            writer = await response.prepare(request)
            if first is not None:
                if transport.is_closing():  # its socket may be closed: nothing to duplicate
                    raise ConnectionResetError("the connection was closed")
                pump = _Pump(pieces, os.dup(transport.get_extra_info("socket").fileno()),
                             first, chunk_size)
        finally:
            if pump is None:
                _close_piece(first)
        if pump is not None:
            await _flush(transport, writer, pump.sock)
            while True:
                if transport.is_closing():
                    raise ConnectionResetError("the connection was closed")
                try:
                    why = await _in_thread(pump.run, SENDFILE_WAIT_SECONDS,
                                           SENDFILE_CALL_SECONDS)
                except ConnectionError:
                    raise
                except Exception as e:
                    if transport.is_closing():
                        raise ConnectionResetError(f"connection closed ({e!r})") from e
                    _abort(request, response, f"{pump.where()}: {e!r}")
                    return
                if why == _DONE:
                    break
                if why == _BLOCKED:
                    await _writable(transport, pump.sock)
        await response.write_eof()
    except ConnectionError as e:
        log.debug("%s %s: client went away mid-body (%s)", request.method, request.path, e)
    finally:
        if pump is not None:
            pump.close()
