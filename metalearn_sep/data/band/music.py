"""Musical building blocks of the band: pitch, keys and chords, and a song's time grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
"""Mode -> the pitch classes of its scale, in semitones above the tonic."""
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (0, 3, 0, 4), (1, 4, 0, 0), (0, 2, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (0, 6, 5, 4)),
}
"""Mode -> four-bar progressions, as scale degrees (0 = tonic), one chord per bar."""
_QUALITIES = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 7, 11): "maj7", (4, 7, 10): "7", (3, 7, 10): "m7", (3, 6, 10): "m7b5"}


@dataclass(frozen=True)
class Chord:
    """A chord: its root's pitch class, its intervals (semitones above the root, root first) and its name."""

    root: int
    intervals: tuple[int, ...]
    name: str


def diatonic_chord(tonic: int, mode: str, degree: int, seventh: bool) -> Chord:
    """The triad (or seventh chord) on scale ``degree`` of the key ``tonic`` (pitch class) ``mode``."""
    scale = SCALES[mode]
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)  # stacked thirds, in scale steps
    semitones = [scale[(degree + step) % 7] + 12 * ((degree + step) // 7) for step in steps]
    intervals = tuple(semitone - semitones[0] for semitone in semitones)
    root = (tonic + semitones[0]) % 12
    return Chord(root, intervals, NOTE_NAMES[root] + _QUALITIES[intervals[1:]])


def place(pitch_class: int, low: int) -> int:
    """The MIDI pitch of ``pitch_class`` in ``[low, low + 12)``."""
    return low + (pitch_class - low) % 12


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray | float:
    """The frequency (Hz) of MIDI pitch ``midi`` (69 = A4 = 440 Hz); fractional pitches bend between notes."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


class Grid:
    """A song's time grid: 4/4 bars of 16 sixteenth steps, with swing on the off-beats.

    Attributes:
        bar: s; length of one bar.
        step: s; length of one sixteenth.
        swing: fraction of a sixteenth by which the off-beat eighths are late (the other
            odd sixteenths half as much).
    """

    def __init__(self, tempo: float, swing: float) -> None:
        self.bar = 240.0 / tempo
        self.step = self.bar / 16
        self.swing = swing

    def at(self, bar: int, step: float) -> float:
        """The time (s) of sixteenth ``step`` of ``bar``, swung."""
        delay = self.swing * self.step * (1.0 if step % 4 == 2 else 0.5 if step % 2 == 1 else 0.0)
        return bar * self.bar + step * self.step + delay
