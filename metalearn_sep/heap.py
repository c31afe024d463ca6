"""Keeping a long loop's resident memory flat: :class:`HeapGuard`.

Separating a song window by window allocates and frees the same large buffers again and
again; glibc's allocator can leave the freed pages fragmented, so the resident set creeps
up from window to window although nothing is kept. Handing freed heap memory back to the
operating system (``malloc_trim``) stops that.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries and systems."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def resident_bytes() -> int | None:
    """This process's resident set size in bytes (Linux ``/proc``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapGuard:
    """Trims the heap when the resident set has grown more than ``slack`` since the first window.

    Call :meth:`after_window` after each window. The first call records the resident set;
    later ones call ``malloc_trim`` (glibc) only when the resident set is more than
    ``slack`` above it. Trimming after *every* window would also bound the memory, but each
    trim hands back pages the next window must fault in again, which makes cheap windows
    (small models) several times slower. Elsewhere than on glibc it does nothing.
    """

    def __init__(self, slack: float = 0.1) -> None:
        self.slack, self.limit = slack, None

    def after_window(self) -> None:
        trim, resident = _malloc_trim(), resident_bytes()
        if trim is None or resident is None:
            return
        if self.limit is None:
            self.limit = (1 + self.slack) * resident
        elif resident > self.limit:
            trim(0)
