"""Selector for Annex B → AVC conversion (brief §4.1): compiled or pure-Python twin."""

from typing import TYPE_CHECKING

from ._compat import FALLBACKS, NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._annexb_py import annex_b_to_avc, is_annex_b, split_annex_b
else:
    try:
        from ._annexb_c import annex_b_to_avc, is_annex_b, split_annex_b
    except ImportError:
        FALLBACKS.add("annexb")
        from ._annexb_py import annex_b_to_avc, is_annex_b, split_annex_b

__all__ = ["annex_b_to_avc", "is_annex_b", "split_annex_b"]
