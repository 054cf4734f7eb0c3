"""Exceptions shared by both twins, so they raise the very same classes."""


class CorruptIndexError(ValueError):
    """A ``video_index`` blob breaks the format; the message names offset and rule."""
