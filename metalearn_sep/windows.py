"""How a song is cut into windows for separation: the course's aligned grid and the original code's chunks.

A window is a stretch of the song the model sees at once; only its *core* is kept, the rest
(the context) gives the model's receptive field and its normalisation statistics real
signal on both sides. Positions are samples at the first stage's rate R_0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import round_up


@dataclass(frozen=True)
class Window:
    """One chunk, in samples at the first stage's rate R_0.

    The model sees ``[start, start + length)`` (zeros past the song's end); the output keeps
    the core ``[core_start, core_stop)``.
    """

    start: int
    length: int
    core_start: int
    core_stop: int


def plan_windows(total: int, core: int, context: int, multiple: int = 1, minimum: int = 1) -> list[Window]:
    """Tile ``total`` samples with cores of ``core`` samples, each extended by ``context`` on both sides.

    The context is clipped at the song's ends; every window's length is rounded up to a
    multiple of ``multiple`` and to at least ``minimum`` (the model pads nothing itself).
    """
    if total < 1 or core < 1 or context < 0:
        raise ValueError(f"plan_windows needs total >= 1, core >= 1 and context >= 0, got {total}, {core}, {context}.")
    windows = []
    for core_start in range(0, total, core):
        core_stop = min(core_start + core, total)
        start, stop = max(0, core_start - context), min(total, core_stop + context)
        length = max(round_up(stop - start, multiple), round_up(minimum, multiple))
        windows.append(Window(start, length, core_start, core_stop))
    return windows


def original_windows(total: int, chunks: int, context: int, multiple: int, minimum: int = 1) -> list[Window]:
    """The windows of the original code's ``MultiTasNet.inference``: ``chunks`` equal cores, ``context`` each side.

    Core c spans ``[round(total c / chunks), round(total (c + 1) / chunks))``; its window adds
    ``context`` samples on both sides, clipped at the song's ends, then trimmed to a multiple
    of ``multiple`` (the stride) at its end for the first window and at its start for the
    others, as the original does. Unlike the original, a window never ends before its core
    and is at least ``minimum`` long (both only matter for songs shorter than the context):
    it is lengthened with zeros past the end instead.
    """
    if total < 1 or chunks < 1 or context < 0:
        raise ValueError(f"original_windows needs total >= 1, chunks >= 1 and context >= 0, got {total}, {chunks}, {context}.")
    borders = [int(total / chunks * c + 0.5) for c in range(chunks)] + [total]
    windows = []
    for core_start, core_stop in zip(borders, borders[1:]):
        if core_stop <= core_start:
            continue
        start, stop = max(0, core_start - context), min(total, core_stop + context)
        if start == 0:
            stop -= (stop - start) % multiple
        else:
            start += (stop - start) % multiple
        length = max(round_up(max(stop, core_stop) - start, multiple), round_up(minimum, multiple))
        windows.append(Window(start, length, core_start, core_stop))
    return windows


@dataclass(frozen=True)
class WindowInput:
    """What the model needs for one window, for every channel.

    Attributes:
        window: the chunk.
        inputs: the normalised stage inputs, one ``(C, 1, window.length * 2**s)`` per stage.
        song: song samples around the window at the song's rate ``(C, t)``, starting at
            ``song_start``, for readers that need the mixture of the core (the streamed
            rescaling); ``None`` for the in-memory path.
    """

    window: Window
    inputs: list[torch.Tensor]
    song: torch.Tensor | None = None
    song_start: int = 0

    def mixture(self, begin: int, end: int) -> torch.Tensor:
        """Song samples ``[begin, end)`` ``(C, end - begin)``; only when :attr:`song` was given."""
        if self.song is None:
            raise ValueError("This window carries no song samples.")
        return self.song[:, begin - self.song_start : end - self.song_start]


def window_slice(x: torch.Tensor, window: Window, factor: int) -> torch.Tensor:
    """A stage input ``(C, T_s)`` cut to ``window`` (its samples scaled by ``factor`` = 2^s): ``(C, 1, length)``."""
    start, size = window.start * factor, window.length * factor
    piece = x[:, start : start + size]
    return torch.nn.functional.pad(piece, (0, size - piece.shape[-1])).unsqueeze(1)
