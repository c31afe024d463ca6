"""A song from its seed: tempo, key, chords, silent bars, gains and pans, and the four stems' parts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ... import SOURCES
from ...checks import check_seed
from .common import LOOP_BARS, SONG, pick, stream, uniform
from .music import NOTE_NAMES, PROGRESSIONS, Grid, diatonic_chord
from .parts import Part, compose_bass, compose_drums, compose_other, compose_vocals

_MASTER = 0.04  # common gain of all songs: mixtures peak around 0.37 (8 kHz mono) to 0.55 (44.1 kHz stereo)
# RMS (dB) of each instrument variant over the bars it plays, at gain 1, measured on 300 songs at
# 44.1 kHz; dividing by it brings every variant to the same nominal level before the stem gains.
_LEVEL_DB = {
    "acoustic kit": -11.1, "electronic kit": -9.4, "lo-fi kit": -10.4,
    "sub bass": -1.1, "finger bass": -5.1, "pick bass": -6.2, "synth bass": -10.2,
    "organ": -0.7, "pad": 3.6, "electric piano": -1.8,
    "pluck arpeggio": -6.4, "mallet arpeggio": -5.6, "electric piano arpeggio": -4.1,
    "soprano voice": -16.3, "alto voice": -14.8, "tenor voice": -14.4, "baritone voice": -14.2,
}
_GAIN_MEANS_DB = (-1.0, 0.0, 0.25, -0.25)  # mean stem gains (drums, bass, other, vocals), around realistic balance


@dataclass(frozen=True)
class SongInfo:
    """What a seed's song is, for notebooks (``print(song_info(3))``).

    Attributes:
        seed: the song's seed.
        tempo: beats per minute (4/4 time).
        key: e.g. ``"F# minor"``.
        bar_seconds: length of one bar.
        progression: the chord of each bar of the arrangement (``LOOP_BARS`` names).
        instruments: stem -> instrument variants playing it.
        patterns: stem -> rhythmic patterns (groove, bass line, comping, arpeggio, phrases).
        silent_bars: stem -> bars of the arrangement where the stem is exactly zero; bar ``b``
            of a render is silent when ``b % LOOP_BARS`` is listed.
        gains_db: stem -> its gain relative to the band's nominal level.
        pans: stem -> its centre, -1 (left) .. 1 (right).
        melody: the sung notes of one pass: ``(start s, length s, MIDI pitch, vowel)``.
    """

    seed: int
    tempo: float
    key: str
    bar_seconds: float
    progression: tuple[str, ...]
    instruments: dict[str, tuple[str, ...]]
    patterns: dict[str, tuple[str, ...]]
    silent_bars: dict[str, tuple[int, ...]]
    gains_db: dict[str, float]
    pans: dict[str, float]
    melody: tuple[tuple[float, float, float, str], ...] = field(repr=False)

    @property
    def loop_seconds(self) -> float:
        """Length of one pass of the arrangement."""
        return LOOP_BARS * self.bar_seconds


@dataclass
class Song:
    """A composed song: its description, its parts, each stem's silent bars and gain.

    Attributes:
        info: what :func:`song_info` returns.
        parts: every instrument, in rendering order.
        silent: per stem index, the bars of one pass where it is silent.
        gains: ``(4,)`` linear stem gains, the master gain included.
    """

    info: SongInfo
    parts: list[Part]
    silent: list[frozenset[int]]
    gains: np.ndarray


def _draw_silences(rng: np.random.Generator) -> list[set[int]]:
    """Per stem, the bars of one pass where it is silent: whole sung sections, single bars of the others."""
    silent: list[set[int]] = [set() for _ in SOURCES]
    for section in range(LOOP_BARS // 2):
        if rng.random() < 0.12:
            silent[3] |= {2 * section, 2 * section + 1}
    for stem, chance in ((0, 0.05), (1, 0.05), (2, 0.03)):
        silent[stem] |= {bar for bar in range(LOOP_BARS) if rng.random() < chance}
    for bar in range(LOOP_BARS):  # at least two stems play in every bar
        while sum(bar in bars for bars in silent) > 2:
            silent[min(stem for stem, bars in enumerate(silent) if bar in bars)].discard(bar)
    return silent


def compose(seed: int) -> Song:
    """The song of ``seed`` (a non-negative integer, not checked here)."""
    rng = stream(seed, SONG)
    tempo = float(rng.integers(84, 141))
    tonic = int(rng.integers(12))
    mode = "major" if rng.random() < 0.55 else "minor"
    degrees = list(pick(rng, PROGRESSIONS[mode])) * (LOOP_BARS // 4)
    if rng.random() < 0.3:
        degrees[-1] = 4  # a dominant turnaround
    seventh = bool(rng.random() < 0.35)
    chords = [diatonic_chord(tonic, mode, degree, seventh) for degree in degrees]
    grid = Grid(tempo, uniform(rng, 0.05, 0.3) if rng.random() < 0.35 else 0.0)
    silent = [frozenset(bars) for bars in _draw_silences(rng)]
    gains_db = [float(np.clip(rng.normal(mean, 1.0), mean - 3, mean + 3)) for mean in _GAIN_MEANS_DB]
    pans = [0.0, uniform(rng, -0.1, 0.1), uniform(rng, -0.4, 0.4), uniform(rng, -0.15, 0.15)]

    drums, groove = compose_drums(seed, grid, silent[0])
    bass, bass_line = compose_bass(seed, grid, chords, silent[1], pans[1])
    others, other_patterns = compose_other(seed, grid, tempo, chords, silent[2], pans[2])
    vocals, form, melody = compose_vocals(seed, grid, mode, tonic, chords, silent[3], pans[3])
    parts = [drums, bass, *others, vocals]
    for part in parts:
        part.gain *= 10 ** (-_LEVEL_DB[part.name] / 20)
    info = SongInfo(
        seed=seed, tempo=tempo, key=f"{NOTE_NAMES[tonic]} {mode}", bar_seconds=grid.bar,
        progression=tuple(chord.name for chord in chords),
        instruments={name: tuple(part.name for part in parts if part.stem == j) for j, name in enumerate(SOURCES)},
        patterns=dict(zip(SOURCES, ((groove + " groove",), (bass_line,), other_patterns, (form,)))),
        silent_bars={name: tuple(sorted(bars)) for name, bars in zip(SOURCES, silent)},
        gains_db={name: round(gain, 2) for name, gain in zip(SOURCES, gains_db)},
        pans={name: round(pan, 3) for name, pan in zip(SOURCES, pans)},
        melody=melody,
    )
    gains = _MASTER * 10.0 ** (np.array(gains_db) / 20.0)
    return Song(info, parts, silent, gains)


def song_info(seed: int) -> SongInfo:
    """Describe the song of ``seed``: tempo, key, chords, instruments, silent bars, gains, melody."""
    return compose(check_seed(seed)).info
