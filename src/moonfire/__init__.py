"""moonfire: a security-camera recorder that never loses what it has committed.

This package is the pure-Python policy layer (database, syncer, streamers,
virtual .mp4, CLI) over the compiled core in ``moonfire_core``.
"""

__version__ = "0.1.0"
