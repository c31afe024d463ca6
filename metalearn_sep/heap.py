"""The C heap during separation: large buffers reused (:func:`reused_heap`), resident memory kept flat (:class:`HeapGuard`).

Separating a song window by window allocates and frees the same large buffers again and
again (at 32 kHz one stage tensor of a 22 s window is 250 MB). glibc serves every
allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it
with ``munmap`` when freed, so each of them is faulted in and zeroed by the kernel anew:
measured with the full model, a fifth of the CPU time went to the kernel.
:func:`reused_heap` raises the thresholds while the windows are separated, so freed buffers
stay in the heap and the next window reuses them. Only the streamed path uses it: with the
in-memory path's song-sized buffers around, the heap fragmented and a 3-minute song's peak
rose from 3.6 to 4-5.8 GB over the runs measured. The resident set can creep up from
window to window either way;
:class:`HeapGuard` hands freed memory back (``malloc_trim``) when it has grown too far. Both
do nothing outside glibc. ``benchmarks/RESULTS.md`` has the measured figures.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters

REUSED_THRESHOLD = 1 << 30
"""While :func:`reused_heap` runs, allocations under 1 GiB come from the heap and freed memory stays there
(every buffer of a default 22 s window of the released model is under 400 MiB)."""

DEFAULT_THRESHOLDS = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20}
"""What :func:`reused_heap` restores: the largest values glibc's own dynamic thresholds reach (32 and 64 MiB)."""


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None on other C libraries and systems."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if all(hasattr(libc, name) for name in ("malloc_trim", "mallopt")) else None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on other C libraries and systems."""
    libc = _libc()
    return libc.malloc_trim if libc is not None else None


@contextmanager
def reused_heap() -> Iterator[None]:
    """Within the block, freed buffers under :data:`REUSED_THRESHOLD` stay in the C heap for reuse.

    Afterwards they are handed back.

    Process-wide (the thresholds are the C library's): on exit the thresholds go back to
    :data:`DEFAULT_THRESHOLDS` and the free heap is trimmed.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    for parameter in DEFAULT_THRESHOLDS:
        libc.mallopt(parameter, REUSED_THRESHOLD)
    try:
        yield
    finally:
        for parameter, value in DEFAULT_THRESHOLDS.items():
            libc.mallopt(parameter, value)
        libc.malloc_trim(0)


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
