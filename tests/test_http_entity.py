"""``serve_entity``: RFC 9110 ranges and conditional requests (web-api.md §2.5), over HTTP.

Every behaviour is checked through aiohttp's test client against a real application serving
two entities: a bytes-backed one (random bytes, small chunks, so a body spans many reads) and
a real ``VirtualFile`` built over sample files on disk.  The pure decision functions are also
tested on their own, and Hypothesis throws Range headers at the server (structured specs with
random whitespace, case and huge numbers, checked against an independent model of RFC 9110;
and garbage), checking that it never answers 500 and never sends a wrong byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import errno
import gc
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moonfire.playback.mp4 import VirtualFile, build_mp4
from moonfire.playback.segment import Segment
from moonfire.web import http_entity
from moonfire.web.http_entity import (
    MAX_RANGES,
    ByteRange,
    Conditions,
    EntityTag,
    Precondition,
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    parse_entity_tag,
    parse_entity_tags,
    parse_http_date,
    parse_range,
    plan,
    serve_entity,
)
from tests.support.recordings import SampleFiles, make_recording, sample_entry

UTC = datetime.UTC
LAST_MODIFIED = datetime.datetime(2026, 4, 26, 10, 30, 15, tzinfo=UTC)
ETAG = '"0123456789abcdef"'
CONTENT_TYPE = 'video/mp4; codecs="avc1.640028"'
ALWAYS = {"Cache-Control": "private, max-age=3600"}
ENTITY_HEADERS = {
    "Content-Disposition": 'attachment; filename="20260426103015-front-main.mp4"',
    "X-Entity": "yes",
}
BYTES_SIZE = 5000
BYTES_CHUNK = 700
VF_CHUNK = 16 << 10


# ---- entities ------------------------------------------------------------------------------


@dataclass
class BytesEntity:
    """An entity over bytes in memory that records each read: its range and its thread."""

    data: bytes
    etag: str = ETAG
    last_modified: datetime.datetime = LAST_MODIFIED
    content_type: str = CONTENT_TYPE
    delay: float = 0.0
    fail_at: int | None = None  # reads at or past this offset raise OSError
    short_at: int | None = None  # reads at or past this offset come back one byte short
    reads: list[tuple[int, int]] = field(default_factory=list)
    active_at_return: list[int] = field(default_factory=list)  # reads running as serve ended
    threads: set[int] = field(default_factory=set)
    active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            self.active += 1
            self.reads.append((offset, length))
            self.threads.add(threading.get_ident())
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fail_at is not None and offset >= self.fail_at:
                raise OSError(5, "Input/output error")
            data = self.data[offset : offset + length]
            if self.short_at is not None and offset >= self.short_at:
                data = data[:-1]
            return data
        finally:
            with self.lock:
                self.active -= 1


def random_bytes(n: int, seed: int = 7) -> bytes:
    """Deterministic, non-repeating bytes: a wrong offset shows as a wrong byte."""
    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="module")
def virtual_file(tmp_path_factory, testdata) -> tuple[VirtualFile, bytes]:
    """A real two-recording ``.mp4`` over random sample bytes on disk (~200 KB), and its
    bytes read in one go (the reference every response is compared with)."""
    files = SampleFiles(tmp_path_factory.mktemp("entity"))
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    segments = []
    start = 1_780_000_000 * 90_000
    for rid, count in ((1, 30), (2, 45)):
        sizes = [1000 + (i * 733) % 4000 for i in range(count)]
        rec = make_recording(
            [3000] * count, sizes, [i % 15 == 0 for i in range(count)],
            recording_id=rid, run_offset=rid - 1, start_time_90k=start,
        )
        files.write(rec.row, random_bytes(sum(sizes), seed=rid))
        segments.append(Segment(rec.row, rec.video_index, (0, rec.row.duration_90k)))
        start = rec.row.end_time_90k
    vf = build_mp4(segments, {1: sample_entry(avc1)}, files.open)
    return vf, vf.read(0, vf.size)


def make_app(entities: dict[str, Any], chunk_sizes: dict[str, int],
             finished: dict[str, asyncio.Event] | None = None) -> web.Application:
    """``/NAME`` serves ``entities[NAME]`` for any method, with ``ALWAYS`` and
    ``ENTITY_HEADERS``; ``finished[NAME]`` is set when its handler returns or raises."""
    app = web.Application()
    for name, entity in entities.items():
        async def handler(request: web.Request, entity=entity, name=name) -> web.StreamResponse:
            try:
                return await serve_entity(request, entity, headers=ALWAYS,
                                          entity_headers=ENTITY_HEADERS,
                                          chunk_size=chunk_sizes[name])
            finally:
                if isinstance(entity, BytesEntity):
                    entity.active_at_return.append(entity.active)
                if finished is not None and name in finished:
                    finished[name].set()

        app.router.add_route("*", f"/{name}", handler)
    return app


@pytest.fixture
def entity() -> BytesEntity:
    return BytesEntity(random_bytes(BYTES_SIZE))


@dataclass(frozen=True)
class Reference:
    """What an entity's responses must carry: its bytes (read in one go) and validators."""

    data: bytes
    etag: str
    last_modified: datetime.datetime
    content_type: str


@pytest.fixture
def references(entity, virtual_file) -> dict[str, Reference]:
    vf, vf_full = virtual_file
    return {
        "bytes": Reference(entity.data, ETAG, LAST_MODIFIED, CONTENT_TYPE),
        "vf": Reference(vf_full, vf.etag, vf.last_modified, vf.content_type),
    }


@pytest_asyncio.fixture
async def client(aiohttp_client, entity, virtual_file) -> TestClient:
    vf, _ = virtual_file
    app = make_app({"bytes": entity, "vf": vf}, {"bytes": BYTES_CHUNK, "vf": VF_CHUNK})
    return await aiohttp_client(app)


# ---- parsing and decisions, without a server -----------------------------------------------


@pytest.mark.parametrize(
    "header, size, expected",
    [
        ("bytes=0-499", 10000, [(0, 500)]),
        ("bytes=500-999", 10000, [(500, 1000)]),
        ("bytes=-500", 10000, [(9500, 10000)]),
        ("bytes=9500-", 10000, [(9500, 10000)]),
        ("bytes=0-0,-1", 10000, [(0, 1), (9999, 10000)]),
        ("bytes=500-600,601-999", 10000, [(500, 601), (601, 1000)]),  # kept as asked
        ("bytes=500-700,601-999", 10000, [(500, 701), (601, 1000)]),
        ("bytes=0-10000", 500, [(0, 500)]),  # an end past the file is clamped
        ("bytes=-600", 500, [(0, 500)]),  # a suffix longer than the file: all of it
        ("BYTES=1-2", 10, [(1, 3)]),  # the unit is case-insensitive
        ("bytes= 1-2 ,\t3-4 ", 10, [(1, 3), (3, 5)]),  # OWS around list elements
        ("bytes=,1-2,,", 10, [(1, 3)]),  # empty list elements are skipped
        ("bytes=0001-0002", 10, [(1, 3)]),
        ("bytes=0-" + "9" * 5000, 10, [(0, 10)]),  # more digits than int() takes
        ("bytes=" + "9" * 40 + "-" + "9" * 41, 10, []),
        ("bytes=" + "9" * 41 + "-" + "9" * 40, 10, None),  # huge, but still last < first
        ("bytes=" + "2" + "0" * 30 + "-" + "1" + "0" * 30, 10, None),
        ("bytes=0-499,10000-", 10000, [(0, 500)]),  # the unsatisfiable one is dropped
        ("bytes=10000-", 10000, []),
        ("bytes=" + "9" * 30 + "-", 10000, []),
        ("bytes=-0", 10000, []),
        ("bytes=0-0", 0, []),
        ("bytes=-1", 0, []),
        (None, 10, None),
        ("items=0-5", 10, None),
        ("bytes=5-3", 10, None),  # last before first: invalid, the header is ignored
        ("bytes=0-1,5-3", 10, None),
        ("bytes=", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=+1-2", 10, None),
        ("bytes=1 - 2", 10, None),
        ("bytes=\u0661-2", 10, None),  # an Arabic-Indic digit is not an ASCII digit
        ("bytes 0-5", 10, None),
        ("bytes=1-2;3-4", 10, None),
        ("bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)), 10, None),
    ],
)
def test_parse_range(header, size, expected):
    ranges = parse_range(header, size)
    if expected is None:
        assert ranges is None
    else:
        assert ranges == tuple(ByteRange(a, b) for a, b in expected)


def test_content_range_names_the_last_byte():
    assert ByteRange(0, 10).content_range(100) == "bytes 0-9/100"


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
    ],
)
def test_the_three_http_date_forms_parse(value):
    now = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_http_date(value, now) == datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


def test_rfc850_two_digit_years_are_at_most_fifty_years_ahead():
    now = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_http_date("Monday, 06-Nov-75 08:49:37 GMT", now).year == 2075
    assert parse_http_date("Monday, 06-Nov-77 08:49:37 GMT", now).year == 1977


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        '"0123456789abcdef"',
    ],
)
def test_anything_but_an_http_date_is_none(value):
    assert parse_http_date(value) is None


@given(st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                    max_value=datetime.datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_http_dates_format_like_the_stdlib_and_parse_back(when):
    text = format_http_date(when)
    assert text == email.utils.format_datetime(when, usegmt=True)
    assert parse_http_date(text) == when.replace(microsecond=0)


def test_entity_tag_lists():
    assert parse_entity_tags("*") is None
    assert parse_entity_tags('"a", W/"b" ,"c,d"') == (
        EntityTag('"a"'), EntityTag('"b"', weak=True), EntityTag('"c,d"'))
    assert parse_entity_tags(',, "a",') == (EntityTag('"a"'),)
    assert parse_entity_tags('"a", garbage, "b"') == (EntityTag('"a"'),)
    assert parse_entity_tags("abc") == ()
    assert parse_entity_tag('W/"x"') == EntityTag('"x"', weak=True)
    assert parse_entity_tag('"x", "y"') is None
    assert parse_entity_tag("x") is None


def test_strong_and_weak_comparison():
    """RFC 9110 §8.8.3.2's table."""
    w1, w2, s1 = EntityTag('"1"', True), EntityTag('"2"', True), EntityTag('"1"')
    assert not w1.strong_eq(EntityTag('"1"', True)) and w1.weak_eq(EntityTag('"1"', True))
    assert not w1.strong_eq(w2) and not w1.weak_eq(w2)
    assert not w1.strong_eq(s1) and w1.weak_eq(s1)
    assert s1.strong_eq(EntityTag('"1"')) and s1.weak_eq(EntityTag('"1"'))


def preconditions(**headers: str) -> Precondition:
    return evaluate_preconditions(Conditions(**headers), ETAG, LAST_MODIFIED)


BEFORE = format_http_date(LAST_MODIFIED - datetime.timedelta(seconds=1))
AT = format_http_date(LAST_MODIFIED)
AFTER = format_http_date(LAST_MODIFIED + datetime.timedelta(seconds=1))
OTHER = '"ffff"'


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, Precondition.PROCEED),
        ({"if_match": ETAG}, Precondition.PROCEED),
        ({"if_match": "*"}, Precondition.PROCEED),
        ({"if_match": f"{OTHER}, {ETAG}"}, Precondition.PROCEED),
        ({"if_match": OTHER}, Precondition.FAILED),
        ({"if_match": "W/" + ETAG}, Precondition.FAILED),  # If-Match compares strongly
        ({"if_match": "garbage"}, Precondition.FAILED),
        ({"if_unmodified_since": AT}, Precondition.PROCEED),
        ({"if_unmodified_since": AFTER}, Precondition.PROCEED),
        ({"if_unmodified_since": BEFORE}, Precondition.FAILED),
        ({"if_unmodified_since": "not a date"}, Precondition.PROCEED),
        # If-Unmodified-Since is not evaluated when If-Match is present (step 2).
        ({"if_match": ETAG, "if_unmodified_since": BEFORE}, Precondition.PROCEED),
        ({"if_none_match": ETAG}, Precondition.NOT_MODIFIED),
        ({"if_none_match": "W/" + ETAG}, Precondition.NOT_MODIFIED),  # weak comparison
        ({"if_none_match": "*"}, Precondition.NOT_MODIFIED),
        ({"if_none_match": f'{OTHER}, W/{ETAG}'}, Precondition.NOT_MODIFIED),
        ({"if_none_match": OTHER}, Precondition.PROCEED),
        ({"if_modified_since": AT}, Precondition.NOT_MODIFIED),
        ({"if_modified_since": AFTER}, Precondition.NOT_MODIFIED),
        ({"if_modified_since": BEFORE}, Precondition.PROCEED),
        ({"if_modified_since": "garbage"}, Precondition.PROCEED),
        # If-Modified-Since is not evaluated when If-None-Match is present (step 4).
        ({"if_none_match": OTHER, "if_modified_since": AFTER}, Precondition.PROCEED),
        # 412 comes first.
        ({"if_match": OTHER, "if_none_match": ETAG}, Precondition.FAILED),
        ({"if_unmodified_since": BEFORE, "if_modified_since": AFTER}, Precondition.FAILED),
        ({"if_match": ETAG, "if_none_match": ETAG}, Precondition.NOT_MODIFIED),
    ],
)
def test_evaluate_preconditions(headers, expected):
    assert preconditions(**headers) is expected


def test_last_modified_is_compared_in_whole_seconds():
    precise = LAST_MODIFIED + datetime.timedelta(microseconds=999_999)
    assert evaluate_preconditions(Conditions(if_modified_since=AT), ETAG, precise) is (
        Precondition.NOT_MODIFIED)


@pytest.mark.parametrize(
    "if_range, allowed",
    [
        (None, True),
        (ETAG, True),
        (f" {ETAG} ", True),
        ("W/" + ETAG, False),
        (OTHER, False),
        (AT, False),  # a date never matches, even Last-Modified itself
        ("garbage", False),
        (f"{ETAG}, {ETAG}", False),
    ],
)
def test_if_range_allows(if_range, allowed):
    assert if_range_allows(if_range, ETAG) is allowed


def test_plan_serves_several_ranges_as_multipart_only_when_smaller():
    def status(size: int, header: str) -> int:
        return plan(Conditions(range=header), size, ETAG, LAST_MODIFIED, CONTENT_TYPE).status

    # Two 1-byte parts cost about 2 * 130 bytes of part headers.
    assert status(10_000, "bytes=0-0,-1") == 206
    assert status(200, "bytes=0-0,-1") == 200
    # The threshold is exact: find the size where it flips and check it is the body length.
    flip = next(s for s in range(2, 1000) if status(s, "bytes=0-0,1-1") == 206)
    layout_bytes = (
        len("--") + 32 + 2 + len(f"Content-Type: {CONTENT_TYPE}\r\n")
        + len(f"Content-Range: bytes 0-0/{flip}\r\n\r\n") + 1
        + 2 + len("--") + 32 + 2 + len(f"Content-Type: {CONTENT_TYPE}\r\n")
        + len(f"Content-Range: bytes 1-1/{flip}\r\n\r\n") + 1
        + len("\r\n--") + 32 + len("--\r\n")
    )
    assert flip == layout_bytes + 1


def test_plan_leaves_representation_headers_out_only_after_a_matching_if_range():
    base = {"range": "bytes=0-9"}
    assert plan(Conditions(**base), 100, ETAG, LAST_MODIFIED, CONTENT_TYPE).representation_headers
    matched = plan(Conditions(**base, if_range=ETAG), 100, ETAG, LAST_MODIFIED, CONTENT_TYPE)
    assert (matched.status, matched.representation_headers) == (206, False)
    other = plan(Conditions(**base, if_range=OTHER), 100, ETAG, LAST_MODIFIED, CONTENT_TYPE)
    assert (other.status, other.representation_headers) == (200, True)


def test_conditions_join_repeated_headers():
    from multidict import CIMultiDict

    headers = CIMultiDict([("If-None-Match", '"a"'), ("if-none-match", '"b"'),
                           ("Range", "bytes=0-1"), ("Range", "bytes=2-3")])
    conditions = Conditions.from_headers(headers)
    assert conditions.if_none_match == '"a", "b"'
    assert parse_range(conditions.range, 10) is None  # two Range fields: ignored
    assert Conditions.from_headers({"Range": "bytes=0-1"}).range == "bytes=0-1"


# ---- over HTTP: whole files and headers ----------------------------------------------------


def assert_common_headers(response: aiohttp.ClientResponse, etag: str, modified: datetime.datetime):
    h = response.headers
    assert h["Accept-Ranges"] == "bytes"
    assert h["ETag"] == etag
    assert h["Cache-Control"] == ALWAYS["Cache-Control"]
    assert parse_http_date(h["Last-Modified"]) == modified.replace(microsecond=0)
    date = parse_http_date(h["Date"])
    assert date is not None
    assert abs((datetime.datetime.now(UTC) - date).total_seconds()) < 5
    assert parse_http_date(h["Last-Modified"]) <= date


def assert_representation_headers(response: aiohttp.ClientResponse, content_type: str,
                                  present: bool = True):
    h = response.headers
    if present:
        assert h["Content-Type"] == content_type
        for name, value in ENTITY_HEADERS.items():
            assert h[name] == value
    else:
        assert "Content-Type" not in h
        for name in ENTITY_HEADERS:
            assert name not in h


@pytest.mark.asyncio
async def test_whole_bytes_entity(client, entity):
    response = await client.get("/bytes")
    assert response.status == 200
    assert await response.read() == entity.data
    assert response.headers["Content-Length"] == str(BYTES_SIZE)
    assert "Content-Range" not in response.headers
    assert_common_headers(response, ETAG, LAST_MODIFIED)
    assert_representation_headers(response, CONTENT_TYPE)


@pytest.mark.asyncio
async def test_whole_virtual_file(client, virtual_file):
    vf, full = virtual_file
    assert len(full) > 4 * VF_CHUNK  # several reads, across sample files
    response = await client.get("/vf")
    assert response.status == 200
    assert await response.read() == full
    assert_common_headers(response, vf.etag, vf.last_modified)
    assert_representation_headers(response, vf.content_type)
    assert vf.content_type.startswith('video/mp4; codecs="avc1.')


@pytest.mark.asyncio
async def test_reads_are_chunked_and_off_the_event_loop(client, entity):
    response = await client.get("/bytes")
    assert await response.read() == entity.data
    assert threading.get_ident() not in entity.threads
    assert all(length <= BYTES_CHUNK for _, length in entity.reads)
    assert sorted(entity.reads) == [
        (o, min(BYTES_CHUNK, BYTES_SIZE - o)) for o in range(0, BYTES_SIZE, BYTES_CHUNK)]


@pytest.mark.asyncio
async def test_last_modified_never_after_date(aiohttp_client):
    future = BytesEntity(b"x" * 10, last_modified=datetime.datetime(2999, 1, 1, tzinfo=UTC))
    client = await aiohttp_client(make_app({"f": future}, {"f": 4}))
    response = await client.get("/f")
    assert response.status == 200
    assert response.headers["Last-Modified"] == response.headers["Date"]


@pytest.mark.asyncio
async def test_empty_entity(aiohttp_client):
    client = await aiohttp_client(make_app({"e": BytesEntity(b"")}, {"e": 4}))
    response = await client.get("/e")
    assert (response.status, await response.read()) == (200, b"")
    assert response.headers["Content-Length"] == "0"
    response = await client.get("/e", headers={"Range": "bytes=0-"})
    assert (response.status, response.headers["Content-Range"]) == (416, "bytes */0")


@pytest.mark.asyncio
async def test_other_methods_are_refused(client):
    response = await client.post("/bytes", data=b"x")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


# ---- over HTTP: ranges ---------------------------------------------------------------------


def parse_content_range(value: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value)
    assert match, value
    first, last, size = map(int, match.groups())
    return first, last + 1, size


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["bytes", "vf"])
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("{a}-{b}", lambda size: (100, 1201)),
        ("{a}-", lambda size: (100, size)),  # open
        ("-{n}", lambda size: (size - 777, size)),  # suffix
        ("{a}-{past}", lambda size: (100, size)),  # an end past the file is clamped
        ("-{past}", lambda size: (0, size)),  # a suffix longer than the file
        ("0-0", lambda size: (0, 1)),
        ("{last}-{last}", lambda size: (size - 1, size)),
    ],
)
async def test_single_range(client, references, name, spec, expected):
    ref = references[name]
    size = len(ref.data)
    header = "bytes=" + spec.format(a=100, b=1200, n=777, past=size * 3, last=size - 1)
    response = await client.get(f"/{name}", headers={"Range": header})
    assert response.status == 206, header
    start, stop = expected(size)
    assert parse_content_range(response.headers["Content-Range"]) == (start, stop, size)
    body = await response.read()
    assert body == ref.data[start:stop]
    assert int(response.headers["Content-Length"]) == stop - start
    assert_common_headers(response, ref.etag, ref.last_modified)
    assert_representation_headers(response, ref.content_type)


@pytest.mark.asyncio
async def test_single_range_of_bytes_entity_is_exact(client, entity):
    response = await client.get("/bytes", headers={"Range": "bytes=650-2150"})
    assert response.status == 206
    assert await response.read() == entity.data[650:2151]
    # Only the bytes asked for were read, in chunks of at most BYTES_CHUNK.
    assert sorted(entity.reads) == [(650, 700), (1350, 700), (2050, 101)]


async def read_multipart(response: aiohttp.ClientResponse) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, bytes) of each part, parsed by aiohttp's reader."""
    reader = aiohttp.MultipartReader.from_response(response)
    parts = []
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        parts.append((part.headers["Content-Type"], part.headers["Content-Range"],
                      bytes(await part.read())))
    return parts


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["bytes", "vf"])
async def test_several_ranges_are_multipart(client, entity, virtual_file, name):
    vf, vf_full = virtual_file
    full, content_type = (vf_full, vf.content_type) if name == "vf" else (
        entity.data, CONTENT_TYPE)
    size = len(full)
    asked = [(0, 99), (4000, 4999), (size - 10, size + 500), (50, 60)]
    header = "bytes=" + ", ".join(f"{a}-{b}" for a, b in asked) + ",-3"
    response = await client.get(f"/{name}", headers={"Range": header})
    assert response.status == 206
    assert response.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert "Content-Range" not in response.headers
    for key, value in ENTITY_HEADERS.items():
        assert response.headers[key] == value
    assert_common_headers(response, vf.etag if name == "vf" else ETAG,
                          vf.last_modified if name == "vf" else LAST_MODIFIED)
    parts = await read_multipart(response)
    expected = [(a, min(b + 1, size)) for a, b in asked] + [(size - 3, size)]
    assert [parse_content_range(r)[:2] for _, r, _ in parts] == expected
    assert [data for _, _, data in parts] == [full[a:b] for a, b in expected]
    assert {t for t, _, _ in parts} == {content_type}
    assert {parse_content_range(r)[2] for _, r, _ in parts} == {size}


@pytest.mark.asyncio
async def test_multipart_body_length_is_exact(client, entity):
    response = await client.get("/bytes", headers={"Range": "bytes=0-9,20-29"})
    body = await response.read()
    assert len(body) == int(response.headers["Content-Length"])
    boundary = response.headers["Content-Type"].split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"\r\n--{boundary}--\r\n".encode())


@pytest.mark.asyncio
async def test_several_ranges_bigger_than_the_file_get_it_whole(client, entity):
    """Many small ranges: their part headers would outweigh the whole 5000 bytes."""
    header = "bytes=" + ",".join(f"{i * 100}-{i * 100}" for i in range(40))
    response = await client.get("/bytes", headers={"Range": header})
    assert response.status == 200
    assert await response.read() == entity.data
    assert_representation_headers(response, CONTENT_TYPE)


@pytest.mark.asyncio
async def test_one_satisfiable_range_of_several_is_a_plain_206(client, entity):
    response = await client.get("/bytes", headers={"Range": f"bytes=10-19,{BYTES_SIZE}-"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 10-19/{BYTES_SIZE}"
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert await response.read() == entity.data[10:20]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["bytes", "vf"])
@pytest.mark.parametrize("spec", ["{size}-", "{size}-{past}", "-0", "{past}-,{size}-"])
async def test_no_satisfiable_range_is_416(client, virtual_file, name, spec):
    size = virtual_file[0].size if name == "vf" else BYTES_SIZE
    header = "bytes=" + spec.format(size=size, past=size + 10)
    response = await client.get(f"/{name}", headers={"Range": header})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert response.headers["Cache-Control"] == ALWAYS["Cache-Control"]
    assert await response.read() == b""


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "header", ["items=0-5", "bytes=5-3", "bytes=abc", "bytes 0-5", "bytes=0-5;x", "=0-5",
               "bytes=-", "bytes=0x10-0x20"],
)
async def test_unparseable_or_non_bytes_range_is_ignored(client, entity, header):
    response = await client.get("/bytes", headers={"Range": header})
    assert response.status == 200
    assert await response.read() == entity.data
    assert "Content-Range" not in response.headers


# ---- over HTTP: If-Range -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["bytes", "vf"])
async def test_if_range_with_the_strong_etag_gives_206_without_representation_headers(
    client, entity, virtual_file, name
):
    vf, vf_full = virtual_file
    etag, full = (vf.etag, vf_full) if name == "vf" else (ETAG, entity.data)
    response = await client.get(f"/{name}", headers={"Range": "bytes=10-4009", "If-Range": etag})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 10-4009/{len(full)}"
    assert await response.read() == full[10:4010]
    assert_common_headers(response, etag, vf.last_modified if name == "vf" else LAST_MODIFIED)
    assert_representation_headers(response, "", present=False)


@pytest.mark.asyncio
async def test_if_range_match_with_several_ranges_is_multipart(client, entity):
    response = await client.get(
        "/bytes", headers={"Range": "bytes=0-9,100-109", "If-Range": ETAG})
    assert response.status == 206
    assert response.headers["Content-Type"].startswith("multipart/byteranges")
    for name in ENTITY_HEADERS:
        assert name not in response.headers
    parts = await read_multipart(response)
    assert [data for _, _, data in parts] == [entity.data[0:10], entity.data[100:110]]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "if_range",
    [OTHER, "W/" + ETAG, AT, AFTER, "Sun, 06 Nov 1994 08:49:37 GMT", "garbage"],
    ids=["other-etag", "weak-etag", "date-at-last-modified", "later-date", "old-date", "garbage"],
)
async def test_if_range_other_etag_or_any_date_gives_200_whole(client, entity, if_range):
    response = await client.get("/bytes", headers={"Range": "bytes=10-19", "If-Range": if_range})
    assert response.status == 200
    assert await response.read() == entity.data
    assert "Content-Range" not in response.headers
    assert_representation_headers(response, CONTENT_TYPE)


@pytest.mark.asyncio
async def test_if_range_without_range_is_ignored(client, entity):
    response = await client.get("/bytes", headers={"If-Range": ETAG})
    assert response.status == 200
    assert_representation_headers(response, CONTENT_TYPE)
    assert await response.read() == entity.data


# ---- over HTTP: If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since -------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {"If-None-Match": ETAG},
        {"If-None-Match": "W/" + ETAG},
        {"If-None-Match": "*"},
        {"If-None-Match": f'{OTHER}, {ETAG}'},
        {"If-Modified-Since": AT},
        {"If-Modified-Since": AFTER},
        {"If-None-Match": ETAG, "Range": "bytes=0-9"},
        {"If-None-Match": ETAG, "If-Modified-Since": BEFORE},  # the date is not looked at
        {"If-Match": ETAG, "If-None-Match": ETAG},
    ],
)
async def test_not_modified(client, headers):
    response = await client.get("/bytes", headers=headers)
    assert response.status == 304
    assert await response.read() == b""
    assert_common_headers(response, ETAG, LAST_MODIFIED)
    assert "Content-Type" not in response.headers
    assert "Content-Range" not in response.headers
    for name in ENTITY_HEADERS:
        assert name not in response.headers


@pytest.mark.asyncio
async def test_not_modified_virtual_file(client, virtual_file):
    vf, _ = virtual_file
    response = await client.get("/vf", headers={"If-None-Match": vf.etag})
    assert response.status == 304
    assert response.headers["ETag"] == vf.etag
    response = await client.get("/vf", headers={"If-None-Match": ETAG})
    assert response.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {"If-None-Match": OTHER},
        {"If-None-Match": OTHER, "If-Modified-Since": AFTER},  # a non-match ignores the date
        {"If-Modified-Since": BEFORE},
        {"If-Modified-Since": "not a date"},
        {"If-Match": ETAG},
        {"If-Match": "*"},
        {"If-Unmodified-Since": AT},
        {"If-Match": ETAG, "If-Unmodified-Since": BEFORE},  # the date is not looked at
    ],
)
async def test_conditions_that_let_the_request_through(client, entity, headers):
    response = await client.get("/bytes", headers=headers)
    assert response.status == 200
    assert await response.read() == entity.data


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": OTHER},
        {"If-Match": "W/" + ETAG},
        {"If-Unmodified-Since": BEFORE},
        {"If-Match": OTHER, "If-None-Match": ETAG},
        {"If-Match": OTHER, "Range": "bytes=0-9", "If-Range": ETAG},
        {"If-Unmodified-Since": BEFORE, "Range": "bytes=0-9"},
    ],
)
async def test_precondition_failed(client, headers):
    response = await client.get("/bytes", headers=headers)
    assert response.status == 412
    assert await response.read() == b""
    assert_common_headers(response, ETAG, LAST_MODIFIED)
    assert "Content-Range" not in response.headers
    for name in ENTITY_HEADERS:
        assert name not in response.headers


@pytest.mark.asyncio
async def test_if_match_and_if_range_together_give_206(client, entity):
    response = await client.get(
        "/bytes", headers={"If-Match": ETAG, "If-None-Match": OTHER, "Range": "bytes=5-9",
                           "If-Range": ETAG})
    assert response.status == 206
    assert await response.read() == entity.data[5:10]
    assert "Content-Type" not in response.headers


# ---- HEAD ----------------------------------------------------------------------------------


HEAD_CASES = [
    {},
    {"Range": "bytes=10-19"},
    {"Range": "bytes=0-9,100-109"},
    {"Range": f"bytes={BYTES_SIZE}-"},
    {"Range": "bytes=10-19", "If-Range": ETAG},
    {"Range": "bytes=10-19", "If-Range": OTHER},
    {"If-None-Match": ETAG},
    {"If-Match": OTHER},
]


def comparable(headers) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k not in ("Date",)}
    if out.get("Content-Type", "").startswith("multipart/byteranges"):
        out["Content-Type"] = "multipart/byteranges; boundary=*"
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", HEAD_CASES)
async def test_head_gets_the_gets_status_and_headers_and_no_body(client, entity, headers):
    get = await client.get("/bytes", headers=headers)
    await get.read()
    reads = len(entity.reads)
    head = await client.head("/bytes", headers=headers)
    assert head.status == get.status
    assert comparable(head.headers) == comparable(get.headers)
    assert await head.read() == b""
    assert len(entity.reads) == reads, "HEAD read nothing"


@pytest.mark.asyncio
async def test_head_sends_no_body_bytes_on_a_kept_alive_connection(client, entity):
    """Raw bytes: a HEAD then a GET pipelined on one connection; the GET's status line must
    follow the HEAD's headers immediately (aiohttp would otherwise write body bytes)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    request = "{} /bytes HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"
    writer.write((request.format("HEAD") + request.format("GET")).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206 ") and b"Content-Length: 10\r\n" in head
    get = await reader.readuntil(b"\r\n\r\n")
    assert get.startswith(b"HTTP/1.1 206 "), get
    assert await reader.readexactly(10) == entity.data[:10]
    writer.close()
    await writer.wait_closed()


# ---- disconnects and failures --------------------------------------------------------------


class Problems(logging.Handler):
    """Collects log records at WARNING or above and any record with a traceback; and this
    module's debug lines apart."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.debug: list[logging.LogRecord] = []  # this module's debug lines

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info:
            self.records.append(record)
        elif record.name == "moonfire.web.http_entity":
            self.debug.append(record)


@pytest.fixture
def problems() -> Iterator[Problems]:
    handler = Problems()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(app: web.Application, **kwargs: Any) -> AsyncIterator[int]:
    """``app`` on a loopback port of a real ``AppRunner`` (as ``moonfire run`` serves it;
    aiohttp's ``TestServer`` always turns ``handler_cancellation`` on), yielding the port."""
    runner = web.AppRunner(app, **kwargs)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
@pytest.mark.parametrize("cancellation", [False, True], ids=["default", "handler_cancellation"])
async def test_client_disconnecting_mid_body_is_quiet_and_leaks_nothing(problems, cancellation):
    """With aiohttp's default the handler sees the write fail (ConnectionResetError); with
    ``handler_cancellation`` it is cancelled, usually while a read runs.  Either way: no
    traceback, no warning, no read still running when ``serve_entity`` is over (view.mp4
    closes the sample file directory then) or lost, and reading stops."""
    slow = BytesEntity(random_bytes(8 << 20, seed=3), delay=0.003)
    finished = {"slow": asyncio.Event()}
    app = make_app({"slow": slow}, {"slow": 64 << 10}, finished)
    async with running(app, handler_cancellation=cancellation) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readexactly(100_000) == slow.data[:100_000]
        writer.transport.abort()  # a reset, like a closed browser tab
        await asyncio.wait_for(finished["slow"].wait(), 10)
        assert slow.active_at_return == [0], "no read outlives serve_entity"
        total_chunks = (8 << 20) // (64 << 10)
        assert len(slow.reads) < total_chunks, "reading stopped when the client left"
        # The server still serves.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/slow",
                                   headers={"Range": "bytes=0-9"}) as response:
                assert await response.read() == slow.data[:10]
        gc.collect()
        await asyncio.sleep(0.05)
    assert [r.getMessage() for r in problems.records] == []
    went_away = [r for r in problems.debug if "client went away mid-body" in r.getMessage()]
    assert len(went_away) == (0 if cancellation else 1)


@pytest.mark.asyncio
async def test_a_read_failing_mid_body_truncates_and_closes(aiohttp_client, problems):
    failing = BytesEntity(random_bytes(BYTES_SIZE), fail_at=2 * BYTES_CHUNK)
    client = await aiohttp_client(make_app({"f": failing}, {"f": BYTES_CHUNK}))
    response = await client.get("/f")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    await wait_for(lambda: any("closing the connection" in r.getMessage()
                               for r in problems.records))
    messages = [r.getMessage() for r in problems.records]
    assert len(messages) == 1 and "Input/output error" in messages[0], messages
    assert problems.records[0].name == "moonfire.web.http_entity"
    # A fresh connection works.
    response = await client.get("/f", headers={"Range": "bytes=0-9"})
    assert await response.read() == failing.data[:10]


@pytest.mark.asyncio
async def test_a_short_read_mid_body_truncates_and_closes(aiohttp_client, problems):
    short = BytesEntity(random_bytes(BYTES_SIZE), short_at=BYTES_CHUNK)
    client = await aiohttp_client(make_app({"s": short}, {"s": BYTES_CHUNK}))
    response = await client.get("/s")
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    await wait_for(lambda: bool(problems.records))
    assert "returned 699 bytes" in problems.records[0].getMessage()


@pytest.mark.asyncio
async def test_a_first_read_failing_is_raised_before_any_header(aiohttp_client):
    failing = BytesEntity(random_bytes(BYTES_SIZE), fail_at=0)
    app = web.Application()
    seen: list[BaseException] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await serve_entity(request, failing)
        except OSError as e:
            seen.append(e)
            raise web.HTTPNotFound(text="gone") from e

    app.router.add_get("/f", handler)
    client = await aiohttp_client(app)
    response = await client.get("/f")
    assert (response.status, await response.text()) == (404, "gone")
    assert len(seen) == 1


# ---- Hypothesis: Range headers over HTTP ---------------------------------------------------


class Server:
    """A real app on its own event loop, for the sync Hypothesis tests: ``fetch`` runs one
    request through aiohttp's test client and returns what came back, multipart parsed."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()

        async def start() -> TestClient:
            client = TestClient(TestServer(app))
            await client.start_server()
            return client

        self.client = self.loop.run_until_complete(start())

    def fetch(self, path: str, headers: dict[str, str]) -> tuple[int, Any, bytes, list]:
        async def go() -> tuple[int, Any, bytes, list]:
            response = await self.client.get(path, headers=headers)
            parts: list = []
            if response.headers.get("Content-Type", "").startswith("multipart/"):
                parts = await read_multipart(response)
                body = b""
            else:
                body = await response.read()
            return response.status, response.headers, body, parts

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def server(virtual_file) -> Iterator[tuple[Server, dict[str, tuple[bytes, str]]]]:
    vf, vf_full = virtual_file
    data = random_bytes(BYTES_SIZE, seed=11)
    app = make_app({"bytes": BytesEntity(data), "vf": vf},
                   {"bytes": BYTES_CHUNK, "vf": VF_CHUNK})
    s = Server(app)
    try:
        yield s, {"bytes": (data, CONTENT_TYPE), "vf": (vf_full, vf.content_type)}
    finally:
        s.close()


def model(specs: list[tuple[int | None, int | None]], size: int) -> list[tuple[int, int]] | None:
    """RFC 9110 §14.1: the ranges to send for parsed specs ((None, n) is the suffix -n), or
    None when the set is invalid (some last < first) and the header must be ignored."""
    if any(first is not None and last is not None and last < first for first, last in specs):
        return None
    out = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last > 0 and size > 0:
                out.append((max(0, size - last), size))
        elif first < size:
            out.append((first, size if last is None else min(last + 1, size)))
    return out


def multipart_size(ranges: list[tuple[int, int]], size: int, content_type: str) -> int:
    """The length of the multipart body: delimiters of a 32-character boundary, two part
    headers each, the bytes; written out here independently of the implementation."""
    total = 0
    for i, (a, b) in enumerate(ranges):
        total += (0 if i == 0 else 2) + 2 + 32 + 2
        total += len(f"Content-Type: {content_type}\r\nContent-Range: bytes {a}-{b - 1}/{size}\r\n")
        total += 2 + (b - a)
    return total + 2 + 2 + 32 + 2 + 2


OWS = st.sampled_from(["", " ", "\t", "  ", " \t"])


@st.composite
def numbers(draw, size: int) -> tuple[int, str]:
    value = draw(st.one_of(
        st.integers(0, size + 2),
        st.integers(0, 10**30),
        st.integers(10**19, 10**45),  # past the point where the parser stops converting
        st.just(10**200),
    ))
    zeros = draw(st.sampled_from(["", "0", "000"]))
    return value, zeros + str(value)


@st.composite
def range_headers(draw, size: int) -> tuple[str, list[tuple[int | None, int | None]]]:
    """A syntactically valid ``Range`` header and the specs it holds."""
    specs: list[tuple[int | None, int | None]] = []
    texts = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["closed", "open", "suffix"]))
        if kind == "suffix":
            n, text = draw(numbers(size))
            specs.append((None, n))
            texts.append(f"-{text}")
        else:
            a, a_text = draw(numbers(size))
            if kind == "open":
                specs.append((a, None))
                texts.append(f"{a_text}-")
            else:
                b, b_text = draw(numbers(size))
                specs.append((a, b))
                texts.append(f"{a_text}-{b_text}")
    elements = []
    for text in texts:
        elements.append(draw(OWS) + text + draw(OWS))
        if draw(st.integers(0, 9)) == 0:
            elements.append(draw(OWS))  # an empty list element
    unit = draw(st.sampled_from(["bytes", "BYTES", "Bytes"]))
    return f"{draw(OWS)}{unit}={','.join(elements)}{draw(OWS)}", specs


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])


@FUZZ
@given(data=st.data(), name=st.sampled_from(["bytes", "vf"]))
def test_fuzzed_valid_ranges_get_exactly_the_right_bytes(server, data, name):
    srv, entities = server
    full, content_type = entities[name]
    size = len(full)
    header, specs = data.draw(range_headers(size))
    status, headers, body, parts = srv.fetch(f"/{name}", {"Range": header})
    expected = model(specs, size)
    if expected is None:
        assert (status, body) == (200, full)
    elif not expected:
        assert status == 416
        assert headers["Content-Range"] == f"bytes */{size}"
    elif len(expected) == 1:
        (a, b), = expected
        assert status == 206
        assert headers["Content-Range"] == f"bytes {a}-{b - 1}/{size}"
        assert body == full[a:b]
    elif multipart_size(expected, size, content_type) < size:
        assert status == 206
        assert int(headers["Content-Length"]) == multipart_size(expected, size, content_type)
        assert [r for _, r, _ in parts] == [f"bytes {a}-{b - 1}/{size}" for a, b in expected]
        assert [d for _, _, d in parts] == [full[a:b] for a, b in expected]
        assert {t for t, _, _ in parts} == {content_type}
    else:
        assert (status, body) == (200, full)


GARBAGE_TOKENS = ["bytes", "BYTES", "items", "=", "-", ",", " ", "\t", ";", "+", "0x", "0",
                  "1", "9" * 25, "99", "*", "/", "e", "\u0663", "é", "bytes=", '"']


@FUZZ
@given(
    name=st.sampled_from(["bytes", "vf"]),
    header=st.one_of(
        st.lists(st.sampled_from(GARBAGE_TOKENS), max_size=20).map("".join),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"),
                max_size=60),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
            lambda t: "bytes=" + t),
        st.text("0123456789", min_size=1, max_size=5000).map(lambda t: f"bytes={t}-"),
        st.text("0123456789", min_size=1, max_size=5000).map(lambda t: f"bytes=-{t}"),
    ),
    if_range=st.sampled_from([None, ETAG, OTHER, AT]),
)
def test_fuzzed_any_range_header_never_500_never_a_wrong_byte(server, name, header, if_range):
    srv, entities = server
    full, _ = entities[name]
    size = len(full)
    headers = {"Range": header}
    if if_range is not None:
        headers["If-Range"] = if_range
    status, response_headers, body, parts = srv.fetch(f"/{name}", headers)
    assert status in (200, 206, 416), (header, status)
    if status == 200:
        assert body == full
    elif status == 416:
        assert response_headers["Content-Range"] == f"bytes */{size}"
    elif parts:
        assert len(parts) > 1
        for _, content_range, data in parts:
            a, b, total = parse_content_range(content_range)
            assert total == size and data == full[a:b] and b > a
    else:
        a, b, total = parse_content_range(response_headers["Content-Range"])
        assert total == size and body == full[a:b] and b > a
    # Whatever happened, the pure parser predicted it.
    if status == 206 or status == 416:
        assert parse_range(header, size) is not None


@FUZZ
@given(
    if_none_match=st.sampled_from([None, ETAG, "W/" + ETAG, OTHER, "*", f"{OTHER}, {ETAG}"]),
    if_match=st.sampled_from([None, ETAG, "W/" + ETAG, OTHER, "*"]),
    if_range=st.sampled_from([None, ETAG, "W/" + ETAG, OTHER, AT]),
    if_modified_since=st.sampled_from([None, BEFORE, AT, AFTER]),
    if_unmodified_since=st.sampled_from([None, BEFORE, AT, AFTER]),
    ranged=st.booleans(),
)
def test_fuzzed_conditional_combinations(server, if_none_match, if_match, if_range,
                                         if_modified_since, if_unmodified_since, ranged):
    """Every combination against RFC 9110 §13.2.2, stated here as a table of rules."""
    srv, entities = server
    full, _ = entities["bytes"]
    headers = {k: v for k, v in {
        "If-None-Match": if_none_match, "If-Match": if_match, "If-Range": if_range,
        "If-Modified-Since": if_modified_since, "If-Unmodified-Since": if_unmodified_since,
        "Range": "bytes=7-99" if ranged else None,
    }.items() if v is not None}
    status, response_headers, body, _ = srv.fetch("/bytes", headers)

    if if_match is not None:
        failed = if_match not in (ETAG, "*")
    else:
        failed = if_unmodified_since == BEFORE
    if if_none_match is not None:
        not_modified = if_none_match != OTHER
    else:
        not_modified = if_modified_since in (AT, AFTER)
    if failed:
        assert status == 412
    elif not_modified:
        assert status == 304
    elif ranged and if_range in (None, ETAG):
        assert status == 206
        assert body == full[7:100]
        assert ("Content-Type" in response_headers) == (if_range is None)
        assert ("X-Entity" in response_headers) == (if_range is None)
    else:
        assert status == 200
        assert body == full
        assert response_headers["Content-Type"] == CONTENT_TYPE
    assert response_headers["ETag"] == ETAG
    assert response_headers["Cache-Control"] == ALWAYS["Cache-Control"]


def test_bytes_entity_reads_slices():
    """The test entity itself: reads give the slice and are recorded."""
    e = BytesEntity(bytes(range(10)))
    assert e.read(3, 4) == bytes([3, 4, 5, 6])
    assert e.reads == [(3, 4)] and e.size == 10


# ---- spans: file ranges sent with sendfile -------------------------------------------------


class SpansOnly:
    """An entity delegating to a ``SpansEntity`` whose ``read`` fails the test: whatever it
    serves came from ``spans``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.size = inner.size
        self.etag = inner.etag
        self.last_modified = inner.last_modified
        self.content_type = inner.content_type

    def read(self, offset: int, length: int) -> bytes:
        raise AssertionError(f"read({offset}, {length}) used: spans were not")

    def spans(self, offset: int, length: int) -> Iterator[Any]:
        return self.inner.spans(offset, length)


@pytest.fixture
def sendfile_calls(monkeypatch) -> list[int]:
    """The byte count of every ``os.sendfile`` call that sent something."""
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        n = real(out_fd, in_fd, offset, count)
        calls.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


@pytest.mark.asyncio
async def test_a_virtual_file_is_sent_from_its_spans_in_every_kind_of_response(
        aiohttp_client, virtual_file, sendfile_calls):
    vf, full = virtual_file
    client = await aiohttp_client(make_app({"vf": SpansOnly(vf)}, {"vf": VF_CHUNK}))
    moov_end = vf.media_data_offset
    response = await client.get("/vf")
    assert (response.status, await response.read()) == (200, full)
    assert sum(sendfile_calls) == len(full) - moov_end, "every sample byte, by sendfile"
    assert_common_headers(response, vf.etag, vf.last_modified)
    assert_representation_headers(response, vf.content_type)
    for a, b in [(0, 10), (moov_end - 5, moov_end + 5), (moov_end + 100, len(full)),
                 (len(full) - 1, len(full))]:
        response = await client.get("/vf", headers={"Range": f"bytes={a}-{b - 1}"})
        assert response.status == 206
        assert await response.read() == full[a:b]
    response = await client.get(
        "/vf", headers={"Range": f"bytes=5-9,{moov_end}-{moov_end + 99},-3"})
    parts = await read_multipart(response)
    assert [d for _, _, d in parts] == [full[5:10], full[moov_end:moov_end + 100], full[-3:]]
    response = await client.get("/vf", headers={"Range": "bytes=-4000", "If-Range": vf.etag})
    assert (response.status, await response.read()) == (206, full[-4000:])
    assert_representation_headers(response, vf.content_type, present=False)
    response = await client.head("/vf", headers={"Range": "bytes=-4000"})
    assert (response.status, response.headers["Content-Length"]) == (206, "4000")
    assert await response.read() == b""
    response = await client.get("/vf", headers={"If-None-Match": vf.etag})
    assert response.status == 304
    # The connection is still good after all of it.
    response = await client.get("/vf")
    assert await response.read() == full


@dataclass(frozen=True)
class Span:
    """A ``FileSpan`` of a path."""

    path: str
    offset: int
    length: int

    def open(self) -> int:
        return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)


class SplitFile:
    """A file as a ``SpansEntity`` cutting every range at random places into in-memory pieces
    and file spans (the cuts depend on the range, so every request is cut differently)."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        self.etag = ETAG
        self.last_modified = LAST_MODIFIED
        self.content_type = CONTENT_TYPE

    def read(self, offset: int, length: int) -> bytes:
        raise AssertionError("read() used: spans were not")

    def spans(self, offset: int, length: int) -> Iterator[bytes | Span]:
        rng = random.Random(offset * 1_000_003 + length)
        stop = min(offset + length, self.size)
        while offset < stop:
            n = min(stop - offset, rng.choice([1, 2, 100, 1000, 5000, 100_000]))
            if rng.random() < 0.4:
                yield self.data[offset : offset + n]
            else:
                yield Span(self.path, offset, n)
            offset += n


@pytest.fixture(scope="module")
def spans_server(tmp_path_factory) -> Iterator[tuple[Server, bytes]]:
    data = random_bytes(300_000, seed=13)
    path = tmp_path_factory.mktemp("split") / "data"
    path.write_bytes(data)
    s = Server(make_app({"split": SplitFile(str(path), data)}, {"split": 4096}))
    try:
        yield s, data
    finally:
        s.close()


@FUZZ
@given(data=st.data())
def test_fuzzed_ranges_of_a_spans_entity_get_exactly_the_right_bytes(spans_server, data):
    """Any mix of in-memory pieces and file spans, cut anywhere, for any set of ranges: the
    body is the file's bytes, single or multipart."""
    srv, full = spans_server
    size = len(full)
    header, specs = data.draw(range_headers(size))
    status, headers, body, parts = srv.fetch("/split", {"Range": header})
    expected = model(specs, size)
    if expected is None or (len(expected) > 1
                            and multipart_size(expected, size, CONTENT_TYPE) >= size):
        assert (status, body) == (200, full)
    elif not expected:
        assert status == 416
    elif len(expected) == 1:
        (a, b), = expected
        assert (status, body) == (206, full[a:b])
    else:
        assert status == 206
        assert [d for _, _, d in parts] == [full[a:b] for a, b in expected]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory, testdata) -> tuple[VirtualFile, bytes]:
    """A 24 MiB ``VirtualFile`` (three 8 MiB sample files): far more than the socket buffers
    hold, so a client that stops reading stalls the server mid-body."""
    files = SampleFiles(tmp_path_factory.mktemp("big"))
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    segments = []
    start = 1_780_000_000 * 90_000
    for rid in (1, 2, 3):
        rec = make_recording([3000] * 128, [64 << 10] * 128, [i % 30 == 0 for i in range(128)],
                             recording_id=rid, run_offset=rid - 1, start_time_90k=start)
        files.write(rec.row, random_bytes(rec.row.sample_file_bytes, seed=20 + rid))
        segments.append(Segment(rec.row, rec.video_index, (0, rec.row.duration_90k)))
        start = rec.row.end_time_90k
    vf = build_mp4(segments, {1: sample_entry(avc1)}, files.open)
    return vf, vf.read(0, vf.size)


async def raw_request(port: int, path: str, headers: dict[str, str] | None = None,
                      method: str = "GET"
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
    """Sends one request on a new connection; returns the streams, the status and the headers
    (the body is left to read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", "Host: x"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, _, v in (line.partition(": ") for line in head[1:] if line)}
    return reader, writer, int(head[0].split()[1]), fields


def counting_app(entities: dict[str, Any]) -> tuple[web.Application, list[str]]:
    """``/NAME`` serves an entity; the list gets the name each time a handler is over."""
    app = web.Application()
    done: list[str] = []
    for name, entity in entities.items():
        async def handler(request: web.Request, entity=entity, name=name) -> web.StreamResponse:
            try:
                return await serve_entity(request, entity)
            finally:
                done.append(name)

        app.router.add_route("*", f"/{name}", handler)
    return app, done


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
@pytest.mark.parametrize("cancellation", [False, True], ids=["default", "handler_cancellation"])
async def test_no_descriptor_outlives_its_response(big_file, virtual_file, problems,
                                                   cancellation):
    """Many responses sent from spans (whole, ranges, multipart, HEAD, 304) and many left
    mid-body (a reset, a plain close, a stall and then a reset): once every handler is over
    and the connections are closed, this process holds as many descriptors as before any
    request, and nothing was logged."""
    big, big_full = big_file
    vf, full = virtual_file
    app, done = counting_app({"big": big, "vf": vf})
    async with running(app, handler_cancellation=cancellation) as port:
        async def complete(path: str, headers: dict[str, str] | None = None,
                           method: str = "GET") -> bytes:
            reader, writer, status, fields = await raw_request(port, path, headers, method)
            body = await reader.readexactly(int(fields.get("content-length", "0"))
                                            if method == "GET" else 0)
            writer.close()
            await writer.wait_closed()
            return body

        before = open_descriptors()  # the listening socket, no connection
        assert await complete("/vf") == full
        requests = 1
        for _ in range(2):
            assert await complete("/big") == big_full
            requests += 1
        for i in range(10):
            a = 997 * i
            assert await complete("/vf", {"Range": f"bytes={a}-{a + 50_000}"}) == \
                full[a : a + 50_001]
            parts = await complete("/vf", {"Range": f"bytes=0-9,{a + 2000}-{a + 2999}"})
            assert full[a + 2000 : a + 3000] in parts
            await complete("/vf", method="HEAD")
            await complete("/vf", {"If-None-Match": vf.etag})
            requests += 4
        for how in ["reset"] * 8 + ["close"] * 4 + ["stall"] * 2:
            reader, writer, status, _ = await raw_request(port, "/big")
            assert await reader.readexactly(100_000) == big_full[:100_000]
            if how == "stall":
                await asyncio.sleep(0.3)
            if how == "close":
                writer.close()
            else:
                writer.transport.abort()
            requests += 1
        await wait_for(lambda: len(done) == requests, timeout=20)
        gc.collect()
        # The server closes its end of each connection soon after the client's end.
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: open_descriptors() == before)
        assert open_descriptors() == before
    assert [r.getMessage() for r in problems.records] == []


@pytest.mark.asyncio
async def test_a_stalled_client_holds_no_thread_and_gets_every_byte_when_it_reads_again(
        big_file, monkeypatch):
    """A client that stops reading: the thread sending the body gives up waiting after
    ``SENDFILE_WAIT_SECONDS`` and the loop waits for the socket instead, holding no thread;
    when the client reads again, the rest of the body comes, every byte in its place."""
    big, big_full = big_file
    lock = threading.Lock()
    running_calls = [0]
    outcomes: list[str] = []
    real_run = http_entity._Pump.run

    def watched(self: Any, wait: float, seconds: float) -> str:
        with lock:
            running_calls[0] += 1
        try:
            outcome = real_run(self, wait, seconds)
            outcomes.append(outcome)
            return outcome
        finally:
            with lock:
                running_calls[0] -= 1

    monkeypatch.setattr(http_entity._Pump, "run", watched)
    app, done = counting_app({"big": big})
    async with running(app) as port:
        reader, writer, status, fields = await raw_request(port, "/big")
        try:
            assert (status, int(fields["content-length"])) == (200, len(big_full))
            got = await reader.readexactly(1 << 20)
            assert http_entity.SENDFILE_WAIT_SECONDS <= 0.1
            await asyncio.sleep(0.6)
            assert "blocked" in outcomes
            assert running_calls[0] == 0, "no thread waits for the stalled client"
            assert done == []
            got += await reader.readexactly(len(big_full) - len(got))
            assert got == big_full
            await wait_for(lambda: done == ["big"])
        finally:
            writer.transport.abort()  # a failed test leaves no server thread waiting


@pytest.mark.asyncio
async def test_a_file_system_refusing_sendfile_gets_its_spans_read(
        aiohttp_client, virtual_file, monkeypatch, problems):
    vf, full = virtual_file

    def refuse(*args: Any) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", refuse)
    client = await aiohttp_client(make_app({"vf": SpansOnly(vf)}, {"vf": 1000}))
    response = await client.get("/vf")
    assert (response.status, await response.read()) == (200, full)
    response = await client.get("/vf", headers={"Range": "bytes=-50000"})
    assert (response.status, await response.read()) == (206, full[-50000:])
    assert any("sendfile refused" in r.getMessage() for r in problems.debug)
    assert problems.records == []


@pytest.fixture
def fragile_file(tmp_path, testdata) -> tuple[VirtualFile, bytes, SampleFiles, list]:
    """A two-recording ``VirtualFile`` over sample files this test may spoil."""
    files = SampleFiles(tmp_path)
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    recs = []
    start = 1_780_000_000 * 90_000
    for rid in (1, 2):
        rec = make_recording([3000] * 40, [3000] * 40, [i % 20 == 0 for i in range(40)],
                             recording_id=rid, run_offset=rid - 1, start_time_90k=start)
        files.write(rec.row, random_bytes(rec.row.sample_file_bytes, seed=40 + rid))
        recs.append(rec)
        start = rec.row.end_time_90k
    vf = build_mp4([Segment(r.row, r.video_index, (0, r.row.duration_90k)) for r in recs],
                   {1: sample_entry(avc1)}, files.open)
    return vf, vf.read(0, vf.size), files, recs


@pytest.mark.asyncio
async def test_a_sample_file_too_short_mid_body_truncates_and_closes(
        aiohttp_client, fragile_file, problems):
    vf, full, files, recs = fragile_file
    files.path(recs[1].row).write_bytes(b"\0" * 100)
    client = await aiohttp_client(make_app({"vf": SpansOnly(vf)}, {"vf": VF_CHUNK}))
    response = await client.get("/vf")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    await wait_for(lambda: bool(problems.records))
    (message,) = [r.getMessage() for r in problems.records]
    assert "closing the connection" in message
    assert "recording 1/2" in message and "the file holds 100 bytes" in message
    # What doesn't need the spoiled file is still served.
    response = await client.get("/vf", headers={"Range": "bytes=0-999"})
    assert await response.read() == full[:1000]


@pytest.mark.asyncio
async def test_a_first_span_failing_is_raised_before_any_header(aiohttp_client, fragile_file):
    vf, full, files, recs = fragile_file
    files.path(recs[1].row).unlink()
    app = web.Application()
    seen: list[BaseException] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await serve_entity(request, SpansOnly(vf))
        except FileNotFoundError as e:
            seen.append(e)
            raise web.HTTPNotFound(text="gone") from e

    app.router.add_get("/vf", handler)
    client = await aiohttp_client(app)
    response = await client.get("/vf", headers={"Range": "bytes=-1000"})
    assert (response.status, await response.text()) == (404, "gone")
    assert len(seen) == 1


class StubTransport:
    def __init__(self, closing: bool = False, **extra: Any) -> None:
        self.extra = extra
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def test_sendfile_only_on_a_plain_stream_socket_and_an_uncompressed_body():
    """TLS (the transport encrypts: raw bytes on its socket would corrupt the stream), no
    socket, a closing transport, or a compressed body: the entity's ``read`` serves."""
    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
        plain = web.StreamResponse()
        assert http_entity._can_sendfile(StubTransport(socket=tcp), plain)
        assert not http_entity._can_sendfile(StubTransport(socket=udp), plain)
        tls = StubTransport(socket=tcp, sslcontext=ssl.create_default_context())
        assert not http_entity._can_sendfile(tls, plain)
        assert not http_entity._can_sendfile(StubTransport(), plain)
        assert not http_entity._can_sendfile(StubTransport(closing=True, socket=tcp), plain)
        compressed = web.StreamResponse()
        compressed.enable_compression()
        assert not http_entity._can_sendfile(StubTransport(socket=tcp), compressed)


@dataclass
class SlowAt(BytesEntity):
    """A bytes entity whose read at ``slow_offset`` takes ``slow`` seconds."""

    slow_offset: int = 0
    slow: float = 0.0

    def read(self, offset: int, length: int) -> bytes:
        if offset == self.slow_offset:
            with self.lock:
                self.active += 1
            try:
                time.sleep(self.slow)
            finally:
                with self.lock:
                    self.active -= 1
        return super().read(offset, length)


@pytest.mark.asyncio
async def test_a_cancelled_response_waits_for_the_read_it_was_waiting_for(problems):
    """With ``handler_cancellation`` a client leaving cancels the handler while it awaits a
    read; that read's thread runs on, and ``serve_entity`` must not return before it ends
    (view.mp4 closes the sample file directory then)."""
    entity = SlowAt(random_bytes(10 * 1000), slow_offset=2000, slow=0.6)
    finished = {"e": asyncio.Event()}
    app = make_app({"e": entity}, {"e": 1000}, finished)
    async with running(app, handler_cancellation=True) as port:
        reader, writer, status, _ = await raw_request(port, "/e")
        assert await reader.readexactly(2000) == entity.data[:2000]
        await asyncio.sleep(0.1)  # the read at 2000 is being awaited, the one at 3000 done
        writer.transport.abort()
        await asyncio.wait_for(finished["e"].wait(), 10)
        assert entity.active_at_return == [0]
    assert [r.getMessage() for r in problems.records] == []


async def slow_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response's head and (``Content-Length``) body, the body read 16 KiB at a time
    with a pause after each."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"Content-Length: (\d+)", head, re.I)
    assert match, head
    remaining = int(match.group(1))
    body = b""
    while remaining:
        chunk = await reader.read(min(remaining, 16 << 10))
        assert chunk, "connection closed mid-body"
        body += chunk
        remaining -= len(chunk)
        await asyncio.sleep(0.001)
    return head, body


@pytest.mark.asyncio
async def test_spans_wait_for_what_the_transport_still_holds(virtual_file):
    """Two pipelined requests on a connection with tiny socket buffers and a slow reader: the
    first answer, written through aiohttp, is still partly in the transport's buffer when the
    second starts; the second's spans, written to the socket directly, must come after it."""
    vf, full = virtual_file
    first = BytesEntity(random_bytes(512 << 10, seed=17))
    app = web.Application()

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return await serve_entity(request, first, chunk_size=64 << 10)

    async def spans(request: web.Request) -> web.StreamResponse:
        return await serve_entity(request, SpansOnly(vf))

    app.router.add_get("/first", handler)
    app.router.add_get("/vf", spans)
    async with running(app) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /vf HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        for expected in (first.data, full):
            head, body = await asyncio.wait_for(slow_response(reader), 20)
            assert head.startswith(b"HTTP/1.1 200")
            assert body == expected
        writer.close()


@pytest.mark.asyncio
async def test_an_empty_spans_entity(aiohttp_client, tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    client = await aiohttp_client(
        make_app({"e": SplitFile(str(tmp_path / "empty"), b"")}, {"e": 4}))
    response = await client.get("/e")
    assert (response.status, await response.read()) == (200, b"")
    assert response.headers["Content-Length"] == "0"


@pytest.mark.asyncio
async def test_many_pieces_to_a_slow_client_through_tiny_socket_buffers(tmp_path):
    """The socket is full again and again, at any point of a piece, its first byte included:
    every byte still arrives, in order."""
    data = random_bytes(400_000, seed=23)
    (tmp_path / "data").write_bytes(data)
    entity = SplitFile(str(tmp_path / "data"), data)
    app = web.Application()

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return await serve_entity(request, entity)

    app.router.add_get("/split", handler)
    async with running(app) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
        for header in ("bytes=0-", "bytes=10-20,3000-290000,-1000"):
            writer.write(f"GET /split HTTP/1.1\r\nHost: x\r\nRange: {header}\r\n\r\n".encode())
            head, body = await asyncio.wait_for(slow_response(reader), 30)
            assert head.startswith(b"HTTP/1.1 206")
            if header == "bytes=0-":
                assert body == data
            else:
                for a, b in ((10, 21), (3000, 290001), (399_000, 400_000)):
                    assert f"Content-Range: bytes {a}-{b - 1}/400000".encode() in body
                    assert data[a:b] in body
        writer.close()


@pytest.mark.asyncio
async def test_the_next_file_is_opened_while_the_socket_is_full_and_fails_in_turn(
        tmp_path, testdata, problems, monkeypatch):
    """A pump opens the next sample file while it waits for a full socket, so the open is
    hidden behind the client's reading; a file found short then is still reported only
    once every byte before it was sent, naming that file, and no descriptor stays open."""
    files = SampleFiles(tmp_path)
    avc1 = (testdata / "avc1_1920x1080").read_bytes()
    recs = []
    start = 1_780_000_000 * 90_000
    for rid in (1, 2):  # 8 MiB each: far more than the socket buffers hold
        rec = make_recording([3000] * 128, [64 << 10] * 128, [i % 30 == 0 for i in range(128)],
                             recording_id=rid, run_offset=rid - 1, start_time_90k=start)
        files.write(rec.row, random_bytes(rec.row.sample_file_bytes, seed=60 + rid))
        recs.append(rec)
        start = rec.row.end_time_90k
    opened: list[tuple[int, int]] = []  # (recording id, body bytes sent when opened)
    pumps: list[http_entity._Pump] = []
    real_init = http_entity._Pump.__init__

    def tracked_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        pumps.append(self)

    def open_sample_file(row):
        opened.append((row.recording_id, pumps[0].position if pumps else -1))
        return os.open(files.path(row), os.O_RDONLY | os.O_CLOEXEC)

    monkeypatch.setattr(http_entity._Pump, "__init__", tracked_init)
    vf = build_mp4([Segment(r.row, r.video_index, (0, r.row.duration_90k)) for r in recs],
                   {1: sample_entry(avc1)}, open_sample_file)
    full = vf.read(0, vf.size)
    opened.clear()
    first_span_end = vf.size - recs[1].row.sample_file_bytes  # where recording 2's data begins
    files.path(recs[1].row).write_bytes(b"\0" * 100)
    before = len(os.listdir("/proc/self/fd"))
    app, done = counting_app({"vf": vf})
    async with running(app) as port:
        reader, writer, status, _ = await raw_request(port, "/vf")
        assert status == 200
        received = bytearray()
        while chunk := await reader.read(1 << 16):
            received += chunk
            await asyncio.sleep(0.0005)  # a slow reader: the socket fills
        writer.close()
        await wait_for(lambda: done == ["vf"])
    # Recording 2's file was opened while recording 1's bytes were still being sent...
    ((first, _), (second, sent_then)) = opened
    assert (first, second) == (1, 2) and sent_then < first_span_end
    # ... yet its failure came only after all of them: the body stops exactly there.
    assert bytes(received) == full[:first_span_end]
    await wait_for(lambda: bool(problems.records))
    (message,) = [r.getMessage() for r in problems.records]
    assert "recording 1/2" in message and "the file holds 100 bytes" in message
    await wait_for(lambda: len(os.listdir("/proc/self/fd")) <= before)
