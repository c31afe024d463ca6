"""Progress bars that render in notebooks and terminals alike (tqdm's ``auto`` front end)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or one updated by hand), resized to the window; ``enabled=False`` draws nothing.

    ``options`` go to tqdm (``total``, ``unit``, ``desc``, ``initial``, ``leave``, ...).
    """
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **options)
