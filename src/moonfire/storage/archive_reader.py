"""Reading archived-only recordings back from S3-compatible object storage.

A recording whose local sample file is gone (its ``recording_archive`` row has
``local_deleted_time_sec`` set, schema 7) still plays: ``view.mp4``/``view.m4s`` and
``moonfire export`` read its bytes from the archive's data object instead of the file.
``ArchivedSampleFile`` stands for such a recording's sample file; ``Segment.archived``
holds one and ``moonfire.playback.mp4`` reads through it.

Two ways to read, because the two callers want different things:

* **ranged** (``view.mp4``): a player asks for ranges, usually sequential.  Each miss
  fetches ``FETCH_BYTES`` (the block asked for and the next one: the read-ahead) with one
  ranged ``GET`` and keeps whole ``BLOCK_BYTES`` blocks in a per-archive LRU cache of at
  most ``CACHE_BYTES``, so a player's sequential reads cost one round trip per 2 MiB, not
  one per read.  Memory: ``CACHE_BYTES`` (16 MiB) per archive, plus ``FETCH_BYTES`` per
  read in flight (the web side's read threads bound those).  An object read in order from
  its first byte (a player playing a recording through) has a running SHA-1, checked when
  its last bytes arrive; a mismatch fails that read, naming the recording.
* **whole** (``moonfire export``): each object is fetched once, whole, and its SHA-1
  checked against the catalog before a byte of it is used; the current object is kept
  while the export reads its pieces (memory: one recording, tens of MB at most).

Errors name what failed: ``ArchiveUnavailableError`` (the store can't be reached, refused
the credentials, or timed out: ``view.mp4`` answers 503 with it) names the archive;
``ArchiveReadError`` (an object missing, short or with other bytes) names the recording
and the key.  Every request is bounded by ``moonfire.storage.archive``'s client timeouts
(3 s connect, 5 s read), and all of this blocks: callers run it off the event loop
(``moonfire.web.http_entity`` advances a body's pieces in executor threads).
"""

from __future__ import annotations

import collections
import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from moonfire.db import ArchiveRow, Database
from moonfire.errors import MoonfireError
from moonfire.storage.archive import describe_client_error, make_client

#: The unit of the ranged cache.
BLOCK_BYTES = 1 << 20
#: Blocks fetched after the one asked for, in the same ``GET`` (the read-ahead).
READ_AHEAD_BLOCKS = 1
FETCH_BYTES = BLOCK_BYTES * (1 + READ_AHEAD_BLOCKS)
#: Cached blocks per archive (all readers of one archive in a process share them).
CACHE_BYTES = 16 << 20
#: Objects whose running SHA-1 is kept at once (a few players, each reading one recording).
_DIGESTS = 64


class ArchiveUnavailableError(MoonfireError):
    """The archive can't be reached (down, refusing the credentials, timing out): a
    passing condition, unlike a bad object.  The message names the archive."""


class ArchiveReadError(MoonfireError):
    """An archived object is missing, short, or holds other bytes than the catalog's; the
    message names the recording and the key."""


#: botocore's errors meaning "the store didn't answer", by class name (botocore is
#: imported only when an archive is used).
_UNREACHABLE = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
    "ConnectionClosedError", "ProxyConnectionError", "NoCredentialsError",
    "ResponseStreamingError", "IncompleteReadError",
})
#: Store error codes meaning "not now, or not with these credentials".
_REFUSED_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "NoSuchBucket",
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "503",
})


class ArchiveReader:
    """Reads one archive's data objects for this process (thread-safe: the boto3 client
    is, and the cache is under a lock).  Get them from ``ArchiveReaders``."""

    def __init__(self, archive: ArchiveRow, client: Any = None) -> None:
        self.archive = archive
        self._client = client
        self._client_lock = threading.Lock()
        self._lock = threading.Lock()
        #: (key, block number) -> bytes, least recently used first.
        self._blocks: collections.OrderedDict[tuple[str, int], bytes] = (
            collections.OrderedDict())
        self._cached_bytes = 0
        #: data key -> (bytes hashed from the object's start, their SHA-1 so far), for
        #: objects being read in order: a player reading a recording through checks it
        #: when its last block comes, as ``export`` does (at most ``_DIGESTS`` at a time).
        self._digests: collections.OrderedDict[str, tuple[int, Any]] = (
            collections.OrderedDict())
        #: ``GET`` requests made (for tests and the read-ahead's measurements).
        self.requests = 0

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.archive)
            return self._client

    @property
    def where(self) -> str:
        return f"archive {self.archive.name!r} ({self.archive.url})"

    # ---- ranged reads (view.mp4) ----------------------------------------------------------

    def read_range(self, file: ArchivedSampleFile, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of ``file``'s object, through the cache."""
        if offset < 0 or length < 0 or offset + length > file.size:
            raise ValueError(f"{file}: bytes {offset}-{offset + length - 1} are outside its "
                             f"{file.size} bytes")
        parts = []
        at, stop = offset, offset + length
        while at < stop:
            number = at // BLOCK_BYTES
            block = self._block(file, number)
            begin = at - number * BLOCK_BYTES
            take = min(stop - at, len(block) - begin)
            if take <= 0:
                raise ArchiveReadError(f"{file}: object {file.data_key} ended at byte "
                                       f"{number * BLOCK_BYTES + len(block)}, expected "
                                       f"{file.size} bytes")
            parts.append(block[begin:begin + take] if (begin, take) != (0, len(block))
                         else block)
            at += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _block(self, file: ArchivedSampleFile, number: int) -> bytes:
        with self._lock:
            block = self._blocks.get((file.data_key, number))
            if block is not None:
                self._blocks.move_to_end((file.data_key, number))
                return block
        start = number * BLOCK_BYTES
        stop = min(start + FETCH_BYTES, file.size)
        data = self._get(file, start, stop)
        if len(data) != stop - start:
            raise ArchiveReadError(f"{file}: object {file.data_key} gave {len(data)} bytes "
                                   f"at offset {start}, expected {stop - start}")
        self._hash_in_order(file, start, data)
        blocks = [(n, data[(n - number) * BLOCK_BYTES:(n - number + 1) * BLOCK_BYTES])
                  for n in range(number, number + 1 + READ_AHEAD_BLOCKS)]
        with self._lock:
            for n, piece in blocks:
                if piece and (file.data_key, n) not in self._blocks:
                    self._blocks[(file.data_key, n)] = piece
                    self._cached_bytes += len(piece)
            while self._cached_bytes > CACHE_BYTES and self._blocks:
                _key, evicted = self._blocks.popitem(last=False)
                self._cached_bytes -= len(evicted)
        return blocks[0][1]

    def _hash_in_order(self, file: ArchivedSampleFile, start: int, data: bytes) -> None:
        """Adds fetched bytes to the object's running SHA-1 when they continue it from byte
        0, and checks it once they reach the end: every byte served of a recording read
        through was the catalog's, or the read that completes it fails (naming it) and its
        cached blocks are dropped.  Bytes fetched out of order (a seek) add nothing."""
        with self._lock:
            hashed, digest = self._digests.pop(file.data_key, (0, None))
            if start > hashed or start + len(data) <= hashed:
                if digest is not None:
                    self._digests[file.data_key] = (hashed, digest)
                return
            if digest is None:
                digest = hashlib.sha1()
            digest.update(memoryview(data)[hashed - start:])
            hashed = start + len(data)
            if hashed < file.size:
                self._digests[file.data_key] = (hashed, digest)
                while len(self._digests) > _DIGESTS:
                    self._digests.popitem(last=False)
                return
            if digest.digest() == file.sha1:
                return
            for key in [k for k in self._blocks if k[0] == file.data_key]:
                self._cached_bytes -= len(self._blocks.pop(key))
        raise ArchiveReadError(
            f"{file}: object {file.data_key} in {self.where} has SHA-1 "
            f"{digest.hexdigest()}, the catalog says {file.sha1.hex()} (corrupted in the store)"
        )

    # ---- whole objects (export) -----------------------------------------------------------

    def read_whole(self, file: ArchivedSampleFile) -> bytes:
        """All of ``file``'s object, its size and SHA-1 checked against the catalog."""
        data = self._get(file, 0, None)
        if len(data) != file.size:
            raise ArchiveReadError(f"{file}: object {file.data_key} holds {len(data)} bytes, "
                                   f"the catalog says {file.size}")
        file.verify(data)
        return data

    # ---- requests -------------------------------------------------------------------------

    def probe(self, file: ArchivedSampleFile) -> None:
        """A ``HEAD`` of ``file``'s object: raises as a read would if the archive can't be
        reached or the object is missing (``export`` asks before writing anything)."""
        self._request(file, lambda: self.client.head_object(
            Bucket=self.archive.bucket, Key=file.data_key))

    def _get(self, file: ArchivedSampleFile, start: int, stop: int | None) -> bytes:
        """One ``GET`` of the object, ranged unless ``stop`` is None."""
        def get() -> bytes:
            extra = {} if stop is None else {"Range": f"bytes={start}-{stop - 1}"}
            response = self.client.get_object(
                Bucket=self.archive.bucket, Key=file.data_key, **extra)
            body = response["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        self.requests += 1
        result: bytes = self._request(file, get)
        return result

    def _request(self, file: ArchivedSampleFile, call: Any) -> Any:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            return call()
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _REFUSED_CODES:
                raise ArchiveUnavailableError(describe_client_error(self.archive, e)) from None
            if code in ("NoSuchKey", "404", "InvalidRange", "416"):
                raise ArchiveReadError(
                    f"{file}: object {file.data_key} is missing from {self.where} ({code})"
                ) from None
            raise ArchiveReadError(f"{file}: object {file.data_key}: "
                                   f"{describe_client_error(self.archive, e)}") from None
        except (BotoCoreError, OSError) as e:
            if type(e).__name__ == "NoCredentialsError":
                raise ArchiveUnavailableError(describe_client_error(self.archive, e)) from None
            if type(e).__name__ in _UNREACHABLE or isinstance(e, OSError):
                raise ArchiveUnavailableError(f"{self.where} can't be reached: {e}") from None
            raise ArchiveReadError(f"{file}: object {file.data_key}: "
                                   f"{describe_client_error(self.archive, e)}") from None


@dataclass(frozen=True, slots=True, eq=False)
class ArchivedSampleFile:
    """The sample file of an archived-only recording: its object, size and SHA-1, and the
    reader that fetches it.  ``mode`` is ``"ranged"`` (``view.mp4``) or ``"whole"``
    (``export``; see the module docstring)."""

    reader: ArchiveReader
    #: ``stream/recording``, for messages.
    recording: str
    data_key: str
    size: int
    sha1: bytes
    mode: str = "ranged"

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of the sample file (blocking)."""
        if self.mode == "whole":
            data = _WHOLE.get(self)
            return data[offset:offset + length]
        return self.reader.read_range(self, offset, length)

    def verify(self, data: bytes) -> None:
        actual = hashlib.sha1(data).digest()
        if actual != self.sha1:
            raise ArchiveReadError(
                f"{self}: object {self.data_key} in {self.reader.where} has SHA-1 "
                f"{actual.hex()}, the catalog says {self.sha1.hex()} (corrupted in the store)"
            )

    def __str__(self) -> str:
        return f"recording {self.recording}"


class _WholeObjects:
    """The one whole object an export is reading, per thread: an export reads its
    recordings in order, so each is fetched (and checked) once and dropped for the next."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, file: ArchivedSampleFile) -> bytes:
        held = getattr(self._local, "held", None)
        if held is not None and held[0] is file:
            data: bytes = held[1]
            return data
        self._local.held = None  # drop the previous one before fetching the next
        data = file.reader.read_whole(file)
        self._local.held = (file, data)
        return data


_WHOLE = _WholeObjects()


class ArchiveReaders:
    """This process's ``ArchiveReader`` per archive id, made on first use (a ``View`` or an
    export holds one; ``clients`` lets tests give their own boto3 clients)."""

    def __init__(self, clients: dict[int, Any] | None = None) -> None:
        self._readers: dict[int, ArchiveReader] = {}
        self._clients = clients or {}
        self._lock = threading.Lock()

    def get(self, db: Database, archive_id: int) -> ArchiveReader:
        with self._lock:
            reader = self._readers.get(archive_id)
            if reader is None:
                reader = ArchiveReader(db.get_archive(archive_id), self._clients.get(archive_id))
                self._readers[archive_id] = reader
            return reader

    def archived_files(
        self, db: Database, stream_id: int, first_id: int, last_id: int,
        sizes: dict[int, int], mode: str = "ranged",
    ) -> dict[int, ArchivedSampleFile]:
        """Composite id -> ``ArchivedSampleFile`` of the stream's archived-only recordings
        ``first_id..last_id`` (``sizes``: their ``sample_file_bytes`` by composite id; ids
        not in it are left out)."""
        found = {}
        stream_name: str | None = None
        for cid, (archive_id, data_key, sha1) in db.list_archived_only(
                stream_id, first_id, last_id).items():
            if cid in sizes:
                if stream_name is None:
                    stream_name = db.stream_name(stream_id)
                found[cid] = ArchivedSampleFile(
                    self.get(db, archive_id), f"{stream_name}/{cid & 0xFFFF_FFFF}", data_key,
                    sizes[cid], sha1, mode)
        return found
