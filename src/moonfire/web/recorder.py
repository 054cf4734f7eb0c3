"""What the web side may see of the recorder running beside it (``moonfire run``).

The application is built over a database alone in tests and tools; when the
recording daemon runs in the same process, ``moonfire run`` hands
``build_app`` a ``RecorderView`` over it (``moonfire.cli.run`` adapts the
``Daemon``: ``web`` must not import ``cli``, and needs no more of the daemon
than this).  Every method is cheap and thread-safe enough to call from the web
thread: they read counters the recorder's threads keep, never wait on them.

The stream states are the ones ``moonfire status`` prints (the daemon's
``statuses_by_stream_id``, which its status file is written from), so the two
agree; a stream the daemon doesn't record is ``NOT_RECORDED``, the words
``moonfire status`` uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from moonfire.ingest.live import LiveFeeds
    from moonfire.storage.syncer import Syncer
    from moonfire.web.unsaved import RecorderState

#: The state of a stream no streamer of this process records (``moonfire status`` says so).
NOT_RECORDED = "not recorded by this daemon"


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One stream the daemon records (or streams for live view only), as it last saw it."""

    #: ``recording``, ``retrying``, ``failed``, ``ended`` or ``live only``
    #: (``moonfire.ingest.status_file``).
    state: str
    #: Why it is retrying, failed or ended, or a live-only stream is idle; None while
    #: recording or streaming.
    reason: str | None
    #: Frames received since the daemon started.
    frames: int
    #: Sessions that ended in an error (each one was, or will be, retried).
    errors: int
    #: Seconds since the last frame arrived (to about a second); None before the first.
    last_frame_age_sec: float | None


class RecorderView(Protocol):
    """The recording daemon as the web side sees it."""

    @property
    def live(self) -> LiveFeeds | None:
        """Where the streamers publish frames for the live view (None: no live view)."""
        ...

    def stream_statuses(self) -> Mapping[int, StreamStatus]:
        """Every stream the daemon records, streams live only or failed to start, by id."""
        ...

    def syncers(self) -> Mapping[int, Syncer]:
        """The syncer of each sample file directory the daemon opened, by directory id."""
        ...

    def dir_errors(self) -> Mapping[int, str]:
        """Why each failed sample file directory failed, by directory id."""
        ...

    def recorder_state(self, stream_id: int) -> RecorderState | None:
        """The stream's recordings not yet committed (None: no streamer records it here)."""
        ...

    def start_new_streams(self) -> list[str]:
        """Start recording every stream that should record and has no streamer yet (a
        camera the setup page just added); their names.  Blocks briefly (it may open a
        sample file directory): call it off the event loop."""
        ...
