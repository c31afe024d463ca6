"""The synthetic band: seeded four-stem songs with exact ground truth, at any sample rate.

:func:`synthesize` ``(seed, sample_rate, duration, stereo)`` returns the stems ``s_j`` of one
song as ``(4, channel, time)`` float32, in :data:`~metalearn_sep.SOURCES` order (drums, bass,
other, vocals); the mixture is their exact sum ``x = Σ_j s_j``, the signal model of
Meta-TasNet and of every separator in the course.

A song is *composed* from its seed alone, then *rendered* at the requested rate:

* composition — tempo, key and a four-chord progression shared by all stems; an arrangement
  of :data:`LOOP_BARS` bars (repeated when a render is longer) with bars where a stem is
  silent (exact zeros there, as in MUSDB18); instrument variants and their timbre
  parameters, gains and pans are drawn per song. :func:`song_info` describes it.
* rendering — every sound is a function of continuous time sampled at ``t = n / rate``, and
  partials above ``BAND_EDGE * rate`` (a CD's 20 kHz at 44.1 kHz) are dropped, so nothing
  aliases and the same seed at 8 kHz and at 32 kHz is the same song, the 8 kHz one
  band-limited. Noise is drawn as a spectrum (1 Hz bins up to :data:`MAX_FREQ`) and
  inverse-transformed at each rate, so it too is the same band-limited signal at every rate.

The stems:

* drums — kick (pitch-dropping sine, click, drive), snare (tone and noise burst) or clap,
  closed and open hi-hats, crash, toms; three kits, five grooves, fills, swing.
* bass — a band-limited harmonic tone (Moorer's discrete summation formula, whose
  brightness ``a`` decays like a filter envelope) on the chord roots, fifths and approach
  notes; its harmonics reach well into the other stems' range.
* other — a chord part (organ drawbars, detuned pad or electric piano) and/or an arpeggio
  (plucked string, mallet or electric piano).
* vocals — a sung melody in phrases with rests: a glottal-like pulse train with vibrato,
  glides and breath noise, through vowel formants that change per syllable (filtered in
  the STFT domain), and fricatives on some syllables; four voice types.

Level: stems have per-song gains around realistic relative loudness, and one master gain
common to all songs; if a render's mixture would peak above :data:`MAX_PEAK` (not one song
in 300 does, at 8 kHz mono or 44.1 kHz stereo), all four stems are scaled by one common
factor so that it peaks at :data:`MAX_PEAK`. Mono renders are the mean of the stereo
channels (pans are linear, ``(1 - p, 1 + p)``). Any excerpt of a song can be rendered
alone, bit-identical to the same samples of a longer render: a short render is the start
of a long one, and :class:`BandDataset` renders only its crops.

:class:`BandDataset` serves ``(mixture, stems)`` crops of generated songs from disjoint
train / valid / test seed ranges (:func:`split_seed`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import SOURCES
from ..checks import check_duration, check_rate, check_seed

BAND_EDGE = 0.45
"""Partials above ``BAND_EDGE * sample_rate`` are dropped (0.45 * 44.1 kHz = 19.8 kHz)."""
MAX_FREQ = 20_000.0
"""No sound has content above this frequency (Hz), whatever the rate."""
MAX_PEAK = 0.95
"""The mixture never exceeds this absolute value."""
LOOP_BARS = 8
"""Bars in one pass of a song's arrangement; longer renders repeat it."""
SPLIT_SIZE = 1_000_000
"""Songs in each split; split ``s`` uses seeds ``SPLIT_OFFSETS[s] + [0, SPLIT_SIZE)``."""
SPLIT_OFFSETS: dict[str, int] = {"train": 0, "valid": 1_000_000, "test": 2_000_000}
DEFAULT_SIZES: dict[str, int] = {"train": 100_000, "valid": 16, "test": 16}

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
_FADE_S = 0.02  # a stem fades out over this long before a bar where it is silent
_NOISE_PERIOD = 1  # seconds; noise textures are periodic with this period
_TWO_PI = 2.0 * math.pi

# Independent random streams of a seed (np.random.SeedSequence([seed, stream, ...])).
_SONG, _DRUMS, _BASS, _OTHER, _VOCALS, _NOISE, _CROP = range(7)

# ----------------------------------------------------------------------------- harmony

_NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_PROGRESSIONS = {  # scale degrees (0 = tonic), one chord per bar
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (0, 3, 0, 4), (1, 4, 0, 0), (0, 2, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (0, 6, 5, 4)),
}
_QUALITIES = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 7, 11): "maj7", (4, 7, 10): "7", (3, 7, 10): "m7", (3, 6, 10): "m7b5"}


@dataclass(frozen=True)
class _Chord:
    root: int  # pitch class
    intervals: tuple[int, ...]  # semitones above the root, root first
    name: str


def _chord(tonic: int, mode: str, degree: int, seventh: bool) -> _Chord:
    scale = _SCALES[mode]
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    semis = [scale[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in steps]
    intervals = tuple(s - semis[0] for s in semis)
    root = (tonic + semis[0]) % 12
    return _Chord(root, intervals, _NOTE_NAMES[root] + _QUALITIES[intervals[1:]])


def _place(pc: int, low: int) -> int:
    """The MIDI pitch of pitch class ``pc`` in ``[low, low + 12)``."""
    return low + (pc - low) % 12


def _hz(midi: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


# ----------------------------------------------------------------------------- the song


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
class _Part:
    """One instrument of one stem: a renderer, its timbre parameters and its events.

    Note events are ``(start s, length s, MIDI pitch, velocity, pan)``; drum events
    ``(start s, piece, velocity, pan)``; vocal phrases are tuples of notes
    ``(start, length, pitch, velocity, vowel index, fricative)``.
    """

    stem: int
    instrument: str  # the renderer
    name: str  # the variant, as SongInfo.instruments lists it
    params: dict
    events: list = field(default_factory=list)
    gain: float = 1.0


@dataclass
class _Song:
    info: SongInfo
    parts: list[_Part]
    silent: list[frozenset[int]]  # per stem index
    gains: np.ndarray  # (4,) linear


class _Grid:
    """The song's time grid: bars of 16 sixteenth steps, with swing on the off-beats."""

    def __init__(self, tempo: float, swing: float) -> None:
        self.bar = 240.0 / tempo
        self.step = self.bar / 16
        self.swing = swing

    def at(self, bar: int, step: float) -> float:
        delay = self.swing * self.step * (1.0 if step % 4 == 2 else 0.5 if step % 2 == 1 else 0.0)
        return bar * self.bar + step * self.step + delay


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# ---- drums

_GROOVES: dict[str, dict[str, tuple[int, ...]]] = {  # piece -> sixteenth steps of one bar
    "rock": {"kick": (0, 8), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)},
    "four on the floor": {"kick": (0, 4, 8, 12), "snare": (4, 12), "hat": (0, 4, 8, 12), "open": (2, 6, 10, 14)},
    "half-time": {"kick": (0, 10), "snare": (8,), "hat": tuple(range(16))},
    "funk": {"kick": (0, 3, 10), "snare": (4, 12), "ghost": (7, 9, 14), "hat": tuple(range(16))},
    "hip-hop": {"kick": (0, 7, 10), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)},
}


def _drum_kit(rng: np.random.Generator) -> tuple[str, dict]:
    kit = _pick(rng, ("acoustic", "electronic", "lo-fi"))
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731
    if kit == "acoustic":
        p = dict(kick_start=u(110, 170), kick_end=u(45, 60), kick_bend=u(0.012, 0.03), kick_decay=u(0.09, 0.2),
                 click=u(0.15, 0.4), drive=(u(0.0, 0.2), u(0.0, 0.2)), clap=False, body=u(170, 240), body_decay=u(0.03, 0.07),
                 body_mix=u(0.3, 0.55), snare_centre=u(2500, 5000), snare_decay=u(0.06, 0.14),
                 hat_cut=u(5000, 8000), hat_decay=u(0.015, 0.04), open_decay=u(0.12, 0.3), crash_cut=u(2500, 4500),
                 crash_decay=u(0.6, 1.2), tom=u(90, 150))
    elif kit == "electronic":
        p = dict(kick_start=u(150, 260), kick_end=u(40, 52), kick_bend=u(0.025, 0.07), kick_decay=u(0.15, 0.32),
                 click=u(0.0, 0.15), drive=(u(0.0, 0.3), u(0.0, 0.3)), clap=bool(rng.random() < 0.6), body=u(180, 280),
                 body_decay=u(0.02, 0.05), body_mix=u(0.2, 0.45), snare_centre=u(1500, 4000),
                 snare_decay=u(0.05, 0.15), hat_cut=u(6000, 9000), hat_decay=u(0.01, 0.03), open_decay=u(0.1, 0.25),
                 crash_cut=u(3500, 6000), crash_decay=u(0.5, 1.0), tom=u(110, 180))
    else:
        p = dict(kick_start=u(100, 150), kick_end=u(42, 56), kick_bend=u(0.02, 0.05), kick_decay=u(0.1, 0.25),
                 click=u(0.0, 0.2), drive=(u(0.1, 0.4), u(0.1, 0.4)), clap=bool(rng.random() < 0.3), body=u(150, 220),
                 body_decay=u(0.03, 0.08), body_mix=u(0.35, 0.6), snare_centre=u(1200, 2500),
                 snare_decay=u(0.05, 0.12), hat_cut=u(3000, 5000), hat_decay=u(0.02, 0.05), open_decay=u(0.1, 0.2),
                 crash_cut=u(2000, 3500), crash_decay=u(0.4, 0.8), tom=u(80, 130))
    width = u(0.3, 0.7)
    side = 1.0 if rng.random() < 0.5 else -1.0
    p.update(levels=dict(kick=u(0.9, 1.1), snare=u(0.7, 1.0), ghost=u(0.7, 1.0), hat=u(0.25, 0.45),
                         open=u(0.25, 0.4), crash=u(0.25, 0.4), tom=u(0.6, 0.9)),
             pans=dict(kick=0.0, snare=u(-0.1, 0.1), ghost=u(-0.1, 0.1), hat=side * width, open=side * width,
                       crash=-side * width * u(0.5, 1.0), tom_hi=0.4 * width, tom_lo=-0.4 * width))
    return kit, p


def _compose_drums(seed: int, grid: _Grid, silent: frozenset[int]) -> tuple[_Part, str]:
    rng = _rng(seed, _DRUMS)
    kit, params = _drum_kit(rng)
    groove_name = _pick(rng, tuple(_GROOVES))
    groove = _GROOVES[groove_name]
    fills = _uniform(rng, 0.0, 0.6)
    part = _Part(0, "drums", f"{kit} kit", params)
    for bar in range(LOOP_BARS):
        if bar in silent:
            continue
        hits: dict[int, tuple[str, float]] = {}
        for piece in ("hat", "open"):
            for s in groove.get(piece, ()):
                if rng.random() > 0.05:
                    hits[s] = (piece, (1.0 if s % 4 == 0 else 0.75 if s % 2 == 0 else 0.55) * _uniform(rng, 0.85, 1.0))
        kicks = list(groove["kick"])
        if rng.random() < 0.2:
            kicks.append(int(rng.integers(1, 8)) * 2)
        drum_hits = [(s, "kick", _uniform(rng, 0.85, 1.0)) for s in kicks]
        drum_hits += [(s, "snare", _uniform(rng, 0.85, 1.0)) for s in groove["snare"]]
        drum_hits += [(s, "ghost", _uniform(rng, 0.2, 0.35)) for s in groove.get("ghost", ())]
        if bar % 4 == 3 and rng.random() < fills:
            drum_hits = [h for h in drum_hits if h[0] < 12]
            hits = {s: h for s, h in hits.items() if s < 12}
            drum_hits += [(s, _pick(rng, ("snare", "tom_hi", "tom_lo")), _uniform(rng, 0.6, 1.0)) for s in range(12, 16)]
        if bar % 4 == 0 and rng.random() < 0.5:
            hits.pop(0, None)
            drum_hits.append((0, "crash", _uniform(rng, 0.8, 1.0)))
        for s, (piece, vel) in hits.items():
            drum_hits.append((s, piece, vel))
        for s, piece, vel in drum_hits:
            start = grid.at(bar, s) + _uniform(rng, 0.0, 0.004)
            pan = params["pans"][piece]
            part.events.append((start, piece, vel * params["levels"]["tom" if piece.startswith("tom") else piece], pan))
    return part, groove_name


# ---- bass

_BASS_LINES = {
    "long roots": (0, 8),
    "eighths": (0, 2, 4, 6, 8, 10, 12, 14),
    "syncopated": (0, 3, 6, 8, 11, 14),
    "kick-locked": (0, 7, 8, 10),
    "walking": (0, 4, 8, 12),
}


def _bass_sound(rng: np.random.Generator) -> tuple[str, dict]:
    name = _pick(rng, ("sub", "finger", "pick", "synth"))
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731
    bright = {"sub": (u(0.4, 0.5), u(0.3, 0.4)), "finger": (u(0.6, 0.72), u(0.35, 0.5)),
              "pick": (u(0.72, 0.84), u(0.4, 0.55)), "synth": (u(0.7, 0.82), u(0.4, 0.55))}[name]
    decay = {"sub": u(1.0, 2.0), "finger": u(0.5, 1.0), "pick": u(0.3, 0.6), "synth": u(0.6, 1.5)}[name]
    return name, dict(bright=bright[0], dark=bright[1], bright_decay=u(0.05, 0.25), decay=decay,
                      sustain=u(0.3, 0.7), release=u(0.03, 0.07), sine=0.8 if name == "sub" else u(0.0, 0.4),
                      detune=u(0.001, 0.003) if name == "synth" else 0.0)


def _compose_bass(seed: int, grid: _Grid, chords: list[_Chord], silent: frozenset[int], pan: float) -> tuple[_Part, str]:
    rng = _rng(seed, _BASS)
    sound, params = _bass_sound(rng)
    line = _pick(rng, tuple(_BASS_LINES))
    steps = _BASS_LINES[line]
    low = 33 + int(rng.integers(0, 8))
    legato = _uniform(rng, 0.5, 0.95)
    part = _Part(1, "bass", f"{sound} bass", params)
    for bar in range(LOOP_BARS):
        if bar in silent:
            continue
        chord, nxt = chords[bar], chords[(bar + 1) % LOOP_BARS]
        root = _place(chord.root, low)
        for i, s in enumerate(steps):
            if s == 0:
                pitch = root
            elif line == "walking":
                pitch = {4: root + _pick(rng, chord.intervals[1:3]), 8: root + _pick(rng, (7, 12)),
                         12: _place(nxt.root, low) + _pick(rng, (-1, 1, 2))}[s]
            elif s >= 12 and rng.random() < 0.25:
                pitch = _place(nxt.root, low) + _pick(rng, (-1, 1, 2))
            else:
                pitch = root + _pick(rng, (0, 0, 0, 0, 0, 12, 12, 7, 7, chord.intervals[1]))
            end = steps[i + 1] if i + 1 < len(steps) else 16
            length = max(0.06, (grid.at(bar, end) - grid.at(bar, s)) * legato)
            start = grid.at(bar, s) + _uniform(rng, 0.0, 0.004)
            part.events.append((start, length, float(pitch), _uniform(rng, 0.8, 1.0) * (1.0 if s % 8 == 0 else 0.9), pan))
    return part, f"{line} bass line"


# ---- other

_COMP_RHYTHMS = {  # (sixteenth step, length in steps)
    "sustained": ((0, 16),),
    "half notes": ((0, 8), (8, 8)),
    "off-beat skank": ((2, 1.5), (6, 1.5), (10, 1.5), (14, 1.5)),
    "stabs": ((0, 2), (6, 2), (10, 3)),
    "syncopated": ((0, 3), (3, 3), (6, 4), (10, 2), (12, 4)),
    "eighth pulse": tuple((s, 1.5) for s in range(0, 16, 2)),
}
_COMP_STYLES = {"organ": ("sustained", "off-beat skank", "half notes"), "pad": ("sustained", "half notes"),
                "electric piano": ("stabs", "syncopated", "half notes", "eighth pulse")}
_ARP_ORDERS = ("up", "down", "up-down", "random")


def _other_sound(rng: np.random.Generator, name: str) -> dict:
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731
    if name == "organ":
        presets = ((8, 8, 8, 0, 0, 0), (8, 6, 4, 2, 0, 0), (8, 0, 8, 0, 4, 0), (6, 8, 4, 4, 2, 0))  # harmonics 1 2 3 4 6 8
        drawbars = np.array(_pick(rng, presets), float)
        drawbars = np.clip(drawbars + rng.uniform(-1, 1, 6), 0, 8) / 8
        return dict(drawbars=tuple(float(d) for d in drawbars), percussion=u(0.0, 0.6), leslie=u(4.5, 7.0),
                    leslie_depth=u(0.05, 0.25), attack=u(0.005, 0.02), release=u(0.04, 0.1))
    if name == "pad":
        return dict(bright=u(0.3, 0.55), detune=u(0.001, 0.0025), attack=u(0.08, 0.4), release=u(0.2, 0.5),
                    sweep=u(0.1, 0.4), spread=u(0.2, 0.6))
    if name == "electric piano":
        return dict(bright=u(0.4, 0.6), dark=u(0.1, 0.25), bright_decay=u(0.15, 0.4), decay=u(0.8, 2.0),
                    tine=u(0.15, 0.4), tine_ratio=u(6.8, 7.2), tine_decay=u(0.02, 0.06), tremolo=u(0.0, 0.2),
                    release=u(0.05, 0.12))
    if name == "pluck":
        return dict(bright=u(0.85, 0.94), dark=u(0.25, 0.45), bright_decay=u(0.04, 0.15), decay=u(0.2, 0.7),
                    release=u(0.04, 0.1))
    return dict(ratios=(1.0, u(3.9, 4.1), u(9.4, 10.4)), amps=(1.0, u(0.25, 0.5), u(0.08, 0.2)), decay=u(0.25, 0.7),
                release=u(0.05, 0.1))  # mallet


def _compose_other(seed: int, grid: _Grid, tempo: float, chords: list[_Chord], silent: frozenset[int], pan: float):
    rng = _rng(seed, _OTHER)
    draw = rng.random()
    parts, patterns = [], []
    width = _uniform(rng, 0.1, 0.4)
    if draw >= 0.15:  # a chord part
        name = _pick(rng, tuple(_COMP_STYLES))
        rhythm_name = _pick(rng, _COMP_STYLES[name])
        centre = 57 + int(rng.integers(0, 9))
        part = _Part(2, name, name, _other_sound(rng, name))
        for bar in range(LOOP_BARS):
            if bar in silent:
                continue
            chord = chords[bar]
            voicing = chord.intervals  # triads whole, sevenths without their fifth
            if len(voicing) == 4:
                voicing = voicing[:2] + voicing[3:]
            pitches = sorted(_place((chord.root + i) % 12, centre - 6) for i in voicing)
            pans = np.linspace(-width, width, len(pitches)) + pan
            for s, length in _COMP_RHYTHMS[rhythm_name]:
                vel = _uniform(rng, 0.75, 1.0)
                start = grid.at(bar, s) + _uniform(rng, 0.0, 0.004)
                for pitch, p in zip(pitches, pans):
                    part.events.append((start, length * grid.step, float(pitch), vel, float(p)))
        parts.append(part)
        patterns.append(f"{rhythm_name} chords")
    if draw < 0.6:  # an arpeggio
        name = _pick(rng, ("pluck", "mallet", "electric piano"))
        order = _pick(rng, _ARP_ORDERS)
        inc = 1 if tempo <= 110 and rng.random() < 0.5 else 2
        base = 57 + int(rng.integers(0, 10))
        ping_pong = rng.random() < 0.5
        rests = _uniform(rng, 0.0, 0.2)
        part = _Part(2, name, f"{name} arpeggio", _other_sound(rng, name))
        for bar in range(LOOP_BARS):
            if bar in silent:
                continue
            chord = chords[bar]
            first = _place(chord.root, base)
            tones = sorted({first + i + o for o in (0, 12) for i in chord.intervals})[:7]
            cycle = tones + tones[-2:0:-1] if order == "up-down" else tones[::-1] if order == "down" else tones
            for k, s in enumerate(range(0, 16, inc)):
                if rng.random() < rests:
                    continue
                pitch = _pick(rng, tones) if order == "random" else cycle[k % len(cycle)]
                p = pan + (width if k % 2 else -width) if ping_pong else pan
                start = grid.at(bar, s) + _uniform(rng, 0.0, 0.004)
                length = inc * grid.step * _uniform(rng, 1.0, 2.0)
                part.events.append((start, length, float(pitch), _uniform(rng, 0.7, 1.0), p))
        parts.append(part)
        patterns.append(f"{order} arpeggio in {'sixteenths' if inc == 1 else 'eighths'}")
    if len(parts) == 2:  # each at -3 dB, their balance drawn
        balance = _uniform(rng, -3.0, 3.0)
        parts[0].gain, parts[1].gain = 10 ** ((balance - 6) / 40), 10 ** ((-balance - 6) / 40)
    return parts, tuple(patterns)


# ---- vocals

_VOWELS = "aeiou"
# Formants F1..F5 of a tenor-like voice: centre frequencies (Hz), bandwidths (Hz), levels (dB).
_FORMANT_HZ = np.array([[650, 1080, 2650, 2900, 3250], [400, 1700, 2600, 3200, 3580], [290, 1870, 2800, 3250, 3540],
                        [400, 800, 2600, 2800, 3000], [350, 600, 2700, 2900, 3300]], float)
_FORMANT_BW = 1.5 * np.array([[80, 90, 120, 130, 140], [70, 80, 100, 120, 120], [50, 90, 100, 120, 120],
                              [50, 80, 100, 120, 120], [50, 80, 100, 120, 120]], float)
_FORMANT_DB = np.array([[0, -6, -7, -8, -22], [0, -14, -12, -14, -20], [0, -15, -18, -20, -30],
                        [0, -10, -12, -12, -26], [0, -20, -17, -14, -26]], float)
_VOICES = {"soprano": (62, 79, 1.17), "alto": (55, 72, 1.1), "tenor": (52, 69, 1.0), "baritone": (47, 64, 0.93)}


def _phrase_rhythm(rng: np.random.Generator) -> list[tuple[int, int]]:
    """Notes ``(eighth, length in eighths)`` of a two-bar phrase ending in a rest of at least two eighths."""
    pos, end, notes = int(rng.integers(0, 3)), int(rng.integers(12, 15)), []
    while pos < end:
        length = min(int(_pick(rng, (1, 1, 2, 2, 2, 3, 4))), end - pos)
        notes.append((pos, length))
        pos += length + (int(rng.integers(1, 3)) if rng.random() < 0.15 else 0)
    return notes


def _compose_vocals(seed: int, grid: _Grid, mode: str, tonic: int, chords: list[_Chord], silent: frozenset[int], pan: float):
    rng = _rng(seed, _VOCALS)
    voice = _pick(rng, tuple(_VOICES))
    low, high, formant_scale = _VOICES[voice]
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731
    params = dict(formant_scale=formant_scale * u(0.96, 1.04), bright=u(0.86, 0.93), breath=u(0.01, 0.05),
                  vibrato_rate=u(4.5, 6.5), vibrato_depth=u(0.3, 0.6), vibrato_delay=u(0.12, 0.3),
                  glide=u(0.03, 0.08), attack=u(0.02, 0.06), release=u(0.06, 0.12), fricative=u(0.15, 0.35),
                  fricative_cut=u(2500, 5000))
    scale_pitches = [m for m in range(low, high + 1) if (m - tonic) % 12 in _SCALES[mode]]
    centre = (low + high) / 2 + u(-2, 2)
    legato = u(0.85, 1.0)
    templates = [_phrase_rhythm(rng), _phrase_rhythm(rng)]
    part = _Part(3, "vocals", f"{voice} voice", params)
    melody = []
    for section in range(LOOP_BARS // 2):
        if 2 * section in silent:
            continue
        which = section % 2
        prng = _rng(seed, _VOCALS, 1 + which)  # the same words and contour each time a phrase returns
        cur = int(np.argmin([abs(m - centre) for m in scale_pitches]))
        notes = []
        for eighth, length in templates[which]:
            cur = int(np.clip(cur + _pick(prng, (-2, -1, -1, 0, 1, 1, 2, -3, 3, 4)), 0, len(scale_pitches) - 1))
            pitch = scale_pitches[cur]
            bar = 2 * section + eighth // 8
            if eighth % 2 == 0:  # on a beat: the nearest chord tone
                chord = chords[bar]
                tones = [m for m in range(low, high + 1) if (m - chord.root) % 12 in [i % 12 for i in chord.intervals]]
                pitch = min(tones, key=lambda m: abs(m - pitch))
                cur = int(np.argmin([abs(m - pitch) for m in scale_pitches]))
            start = grid.at(2 * section, 2 * eighth)
            stop = grid.at(2 * section, 2 * (eighth + length))
            vowel = int(prng.integers(len(_VOWELS)))
            notes.append((start, (stop - start) * legato, float(pitch), float(prng.uniform(0.8, 1.0)), vowel,
                          bool(prng.random() < params["fricative"])))
            melody.append((round(start, 4), round((stop - start) * legato, 4), float(pitch), _VOWELS[vowel]))
        part.events.append((tuple(notes), pan))
    form = "".join("-" if 2 * s in silent else "AB"[s % 2] for s in range(LOOP_BARS // 2))
    return part, f"phrases {form}", tuple(melody)


# ---- the whole song


def _draw_silences(rng: np.random.Generator) -> list[set[int]]:
    silent: list[set[int]] = [set() for _ in SOURCES]
    for section in range(LOOP_BARS // 2):
        if rng.random() < 0.12:
            silent[3] |= {2 * section, 2 * section + 1}
    for stem, p in ((0, 0.05), (1, 0.05), (2, 0.03)):
        silent[stem] |= {b for b in range(LOOP_BARS) if rng.random() < p}
    for bar in range(LOOP_BARS):  # at least two stems play in every bar
        while sum(bar in s for s in silent) > 2:
            silent[min(i for i, s in enumerate(silent) if bar in s)].discard(bar)
    return silent


def _compose(seed: int) -> _Song:
    rng = _rng(seed, _SONG)
    tempo = float(rng.integers(84, 141))
    tonic = int(rng.integers(12))
    mode = "major" if rng.random() < 0.55 else "minor"
    degrees = list(_pick(rng, _PROGRESSIONS[mode])) * (LOOP_BARS // 4)
    if rng.random() < 0.3:
        degrees[-1] = 4  # a dominant turnaround
    seventh = bool(rng.random() < 0.35)
    chords = [_chord(tonic, mode, d, seventh) for d in degrees]
    grid = _Grid(tempo, _uniform(rng, 0.05, 0.3) if rng.random() < 0.35 else 0.0)
    silent = [frozenset(s) for s in _draw_silences(rng)]
    means = (-1.0, 0.0, 0.25, -0.25)
    gains_db = [float(np.clip(rng.normal(m, 1.0), m - 3, m + 3)) for m in means]
    pans = [0.0, _uniform(rng, -0.1, 0.1), _uniform(rng, -0.4, 0.4), _uniform(rng, -0.15, 0.15)]

    drums, groove = _compose_drums(seed, grid, silent[0])
    bass, bass_line = _compose_bass(seed, grid, chords, silent[1], pans[1])
    others, other_patterns = _compose_other(seed, grid, tempo, chords, silent[2], pans[2])
    vocals, form, melody = _compose_vocals(seed, grid, mode, tonic, chords, silent[3], pans[3])
    parts = [drums, bass, *others, vocals]
    for part in parts:
        part.gain *= 10 ** (-_LEVEL_DB[part.name] / 20)
    info = SongInfo(
        seed=seed, tempo=tempo, key=f"{_NOTE_NAMES[tonic]} {mode}", bar_seconds=grid.bar,
        progression=tuple(c.name for c in chords),
        instruments={name: tuple(p.name for p in parts if p.stem == j) for j, name in enumerate(SOURCES)},
        patterns=dict(zip(SOURCES, ((groove + " groove",), (bass_line,), other_patterns, (form,)))),
        silent_bars={name: tuple(sorted(s)) for name, s in zip(SOURCES, silent)},
        gains_db={name: round(g, 2) for name, g in zip(SOURCES, gains_db)},
        pans={name: round(p, 3) for name, p in zip(SOURCES, pans)},
        melody=melody,
    )
    gains = _MASTER * 10.0 ** (np.array(gains_db) / 20.0)
    return _Song(info, parts, silent, gains)


# ----------------------------------------------------------------------------- rendering


def _frac(cycles: np.ndarray) -> np.ndarray:
    """The phase within the cycle, ``cycles mod 1``, in float32 (reduced in the input's precision)."""
    return (cycles - np.floor(cycles)).astype(np.float32)


def _sin(cycles: np.ndarray) -> np.ndarray:
    """``sin(2π cycles)`` in float32, accurate for any phase (reduced modulo one cycle first)."""
    return np.sin(np.float32(_TWO_PI) * _frac(cycles))


def _dsf(cycles: np.ndarray, freq, a, cap: float) -> np.ndarray:
    """A band-limited harmonic tone: ``Σ_k a^k sin(2π k c)`` over partials ``k f <= cap``, RMS ~ 1/√2.

    Moorer's discrete summation formula gives the sum of the first ``N`` partials in closed
    form, ``[a sin φ - a^{N+1} sin((N+1)φ) + a^{N+2} sin(Nφ)] / (1 - 2a cos φ + a²)``, so
    the cost does not grow with the number of partials. With ``K = floor(cap / f)``
    partials fit; the top one fades in as it moves away from ``cap`` (its weight is a
    smoothstep of ``frac(cap / f)``), so a gliding or vibrating ``f`` never switches a
    partial on or off abruptly. ``f``, ``a`` (brightness, < 0.98) may vary per sample.
    The phase is reduced to one cycle in float64, the rest is float32 (the partial phases
    ``k c`` then err by under 1e-4 cycle).
    """
    x = np.float32(cap) / np.asarray(freq, dtype=np.float32)
    k = np.floor(x)
    g = x - k
    g = g * g * (3 - 2 * g)
    a = np.asarray(a, dtype=np.float32)
    ak = np.exp(k * np.log(a))
    c = _frac(cycles)
    s1 = _sin(c)
    c1 = _sin(c + np.float32(0.25))
    sk = _sin(k * c)
    sk1 = _sin((k - 1) * c)
    head = (a * s1 + ak * a * sk1 - ak * sk) / (1 + a * a - 2 * a * c1)
    return (head + g * ak * sk) * (np.sqrt(1 - a * a) / a)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _envelope(
    t: np.ndarray, attack: float, length: float, release: float, decay: float = math.inf, sustain: float = 1.0
) -> np.ndarray:
    """Smoothstep attack, exponential decay towards ``sustain``, exponential release after ``length`` (all seconds)."""
    env = _smoothstep(t / attack)
    if math.isfinite(decay):
        env = env * (sustain + (1 - sustain) * np.exp(-t / decay))
    return env * np.exp(-np.maximum(t - length, 0.0) / release)


class _Canvas:
    """What one render covers: samples ``[first, end)`` of the song at one rate, and its noise textures.

    Sample indices ``n`` are absolute (time ``n / rate`` from the song's start); buffers hold
    the window only.
    """

    def __init__(self, seed: int, rate: int, first: int, samples: int, stereo: bool, loop: float) -> None:
        self.seed, self.rate, self.first, self.end, self.loop = seed, rate, first, first + samples, loop
        self.channels = 2 if stereo else 1
        self.cap = min(BAND_EDGE * rate, MAX_FREQ)
        self._textures: dict[str, np.ndarray] = {}

    def times(self, start: float, length: float) -> tuple[int, np.ndarray] | None:
        """First sample and local times ``n / rate - start`` (float64) of ``[start, start + length)`` in the window."""
        n0 = max(self.first, math.ceil(start * self.rate))
        n1 = min(self.end, math.ceil((start + length) * self.rate))
        if n1 <= n0:
            return None
        return n0, np.arange(n0, n1) / self.rate - start

    def occurrences(self, start: float) -> list[float]:
        """The times an event of one pass of the arrangement happens before the window's end."""
        end = self.end / self.rate
        return [start + r * self.loop for r in range(math.ceil(end / self.loop) + 1) if start + r * self.loop < end]

    def add(self, out: np.ndarray, n0: int, y: np.ndarray, pan: float) -> None:
        """Mix mono ``y``, starting at sample ``n0``, into the window ``out``: pan gains ``(1 - pan, 1 + pan)``, 1 in mono."""
        a, b = max(n0, self.first), min(n0 + len(y), self.end)
        if b <= a:
            return
        y = y[a - n0 : b - n0]
        a, b = a - self.first, b - self.first
        if self.channels == 1:
            out[0, a:b] += y
        else:
            pan = min(max(pan, -1.0), 1.0)
            out[0, a:b] += (1 - pan) * y
            out[1, a:b] += (1 + pan) * y

    def noise(self, name: str, shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """A periodic noise texture with magnitude spectrum ``shape(f)``, of unit expected RMS before band-limiting.

        Its Fourier coefficients (bins ``k / _NOISE_PERIOD`` Hz) are complex Gaussians drawn in
        order of frequency from the seed and the texture's name; only those up to ``cap`` are
        drawn and kept, so every rate gets the same noise, band-limited.
        """
        if name not in self._textures:
            rng = _rng(self.seed, _NOISE, sum(ord(ch) << (8 * i) for i, ch in enumerate(name)))
            freqs = np.arange(1, int(MAX_FREQ * _NOISE_PERIOD) + 1) / _NOISE_PERIOD
            gains = shape(freqs)
            gains /= 2 * np.sqrt(np.sum(gains**2))  # E|c_k|^2 = 2 gain_k^2; RMS^2 = 2 Σ E|c_k|^2 = 1
            keep = int(np.sum(freqs <= self.cap))
            draws = rng.standard_normal(2 * keep)
            n = self.rate * _NOISE_PERIOD
            spec = np.zeros(n // 2 + 1, complex)
            spec[1 : keep + 1] = (draws[0::2] + 1j * draws[1::2]) * gains[:keep]
            self._textures[name] = (np.fft.irfft(spec, n) * n).astype(np.float32)
        return self._textures[name]

    def texture(self, tex: np.ndarray, n0: int, count: int) -> np.ndarray:
        """Samples ``n0 .. n0 + count - 1`` of a periodic texture."""
        return tex[np.arange(n0, n0 + count) % len(tex)]


def _highpass(cut: float, order: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: (f / cut) ** order / (1 + (f / cut) ** order)


def _band(centre: float, octaves: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: 1 / (1 + (np.log2(f / centre) / octaves) ** 2)


# ---- drums


def _drum_hit(c: _Canvas, p: dict, piece: str, start: float) -> tuple[int, np.ndarray] | None:
    decay = {"kick": p["kick_decay"], "snare": p["snare_decay"], "ghost": p["snare_decay"], "hat": p["hat_decay"],
             "open": p["open_decay"], "crash": p["crash_decay"], "tom_hi": 0.15, "tom_lo": 0.2}[piece]
    span = c.times(start, min(6 * decay, 4.0))
    if span is None:
        return None
    n0, t = span
    t32 = t.astype(np.float32)
    onset = _smoothstep(t32 / 0.001)

    def tone(freq: float, cycles: np.ndarray) -> np.ndarray:  # a sine whose highest frequency is freq, if it fits
        return _sin(cycles) if freq <= c.cap else np.zeros(len(t), np.float32)

    if piece == "kick":  # a falling sine, with 2nd and 3rd harmonics for drive, and a click
        fs, fe, bend = p["kick_start"], p["kick_end"], p["kick_bend"]
        cycles = fe * t + (fs - fe) * bend * (1 - np.exp(-t / bend))
        y = tone(fs, cycles) + sum(h * tone(k * fs, k * cycles) for k, h in zip((2, 3), p["drive"]))
        hat = c.noise("hat", _highpass(p["hat_cut"]))
        return n0, onset * (y * np.exp(-t32 / decay) + p["click"] * c.texture(hat, n0, len(t)) * np.exp(-t32 / 0.004))
    if piece in ("snare", "ghost"):
        noise = c.texture(c.noise("snare", _band(p["snare_centre"], 1.5)), n0, len(t))
        if p["clap"]:  # three quick bursts, then the tail
            since = [t32 - 0.011 * j for j in range(3)]
            bursts = sum(_smoothstep(d / 0.001) * np.exp(-np.maximum(d, 0) / 0.006) for d in since)
            return n0, noise * (0.8 * bursts + onset * np.exp(-t32 / decay))
        body = tone(p["body"], p["body"] * t) + 0.5 * tone(1.47 * p["body"], 1.47 * p["body"] * t)
        body *= np.exp(-t32 / p["body_decay"])
        return n0, onset * (p["body_mix"] * body + (1 - p["body_mix"]) * 1.5 * noise * np.exp(-t32 / decay))
    if piece in ("hat", "open"):
        return n0, onset * c.texture(c.noise("hat", _highpass(p["hat_cut"])), n0, len(t)) * np.exp(-t32 / decay)
    if piece == "crash":
        return n0, onset * c.texture(c.noise("crash", _highpass(p["crash_cut"], 1)), n0, len(t)) * np.exp(-t32 / decay)
    f = p["tom"] * (1.0 if piece == "tom_lo" else 1.5)
    y = tone(1.5 * f, f * t + 0.5 * f * 0.03 * (1 - np.exp(-t / 0.03))) * np.exp(-t32 / decay)
    noise = c.texture(c.noise("snare", _band(p["snare_centre"], 1.5)), n0, len(t))
    return n0, onset * (y + 0.15 * noise * np.exp(-t32 / 0.04))


def _render_drums(c: _Canvas, part: _Part, out: np.ndarray) -> None:
    for start, piece, vel, pan in part.events:
        for when in c.occurrences(start):
            hit = _drum_hit(c, part.params, piece, when)
            if hit is not None:
                c.add(out, hit[0], part.gain * vel * hit[1], pan)


# ---- pitched instruments: one function per instrument, (canvas, params, local times, Hz, length) -> mono


def _bass(c: _Canvas, p: dict, t: np.ndarray, f: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    a = p["dark"] + (p["bright"] - p["dark"]) * np.exp(-t32 / p["bright_decay"])
    y = _dsf(f * t, f, a, c.cap)
    if p["detune"]:
        y = 0.5 * (y + _dsf(f * (1 + p["detune"]) * t + 0.3, f * (1 + p["detune"]), a, c.cap))
    if p["sine"] and f <= c.cap:
        y = y + p["sine"] * _sin(f * t)
    return y * _envelope(t32, 0.005, length, p["release"], p["decay"], p["sustain"])


def _organ(c: _Canvas, p: dict, t: np.ndarray, f: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    y = np.zeros(len(t), np.float32)
    for k, level in zip((1, 2, 3, 4, 6, 8), p["drawbars"]):
        if level > 0 and k * f <= c.cap:
            y += level * _sin(k * f * t + 0.1 * k)
    if p["percussion"] and 3 * f <= c.cap:
        y += p["percussion"] * _sin(3 * f * t) * np.exp(-t32 / 0.2)
    y *= (1 + p["leslie_depth"] * _sin(p["leslie"] * t)) / math.sqrt(sum(d * d for d in p["drawbars"]))
    return y * _envelope(t32, p["attack"], length, p["release"])


def _pad(c: _Canvas, p: dict, t: np.ndarray, f: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    a = p["bright"] + p["sweep"] * 0.2 * _sin(0.25 * t)
    env = _envelope(t32, p["attack"], length, p["release"])
    detuned = (f * (1 - p["detune"]), f * (1 + p["detune"]))
    return np.stack([_dsf(g * t + 0.37 * i, g, a, c.cap) * env for i, g in enumerate(detuned)])


def _electric_piano(c: _Canvas, p: dict, t: np.ndarray, f: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    a = p["dark"] + (p["bright"] - p["dark"]) * np.exp(-t32 / p["bright_decay"])
    y = _dsf(f * t, f, a, c.cap)
    if p["tine_ratio"] * f <= c.cap:
        y += p["tine"] * _sin(p["tine_ratio"] * f * t) * np.exp(-t32 / p["tine_decay"])
    if p["tremolo"]:
        y *= 1 + p["tremolo"] * _sin(5.0 * t)
    return y * _envelope(t32, 0.002, length, p["release"], p["decay"], 0.0)


def _pluck(c: _Canvas, p: dict, t: np.ndarray, f: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    a = p["dark"] + (p["bright"] - p["dark"]) * np.exp(-t32 / p["bright_decay"])
    return _dsf(f * t, f, a, c.cap) * _envelope(t32, 0.001, length, p["release"], p["decay"], 0.0)


def _mallet(c: _Canvas, p: dict, t: np.ndarray, f: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    y = np.zeros(len(t), np.float32)
    for i, (ratio, amp) in enumerate(zip(p["ratios"], p["amps"])):
        if ratio * f <= c.cap:
            y += amp * _sin(ratio * f * t) * np.exp(-t32 / (p["decay"] / (1 + 2 * i)))
    return y * _envelope(t32, 0.001, length, p["release"])


_NOTE_RENDERERS = {"bass": (_bass, 8.0), "organ": (_organ, 5.0), "pad": (_pad, 5.0), "electric piano": (_electric_piano, 6.0),
                   "pluck": (_pluck, 6.0), "mallet": (_mallet, 5.0)}  # renderer, tail in release times


def _render_notes(c: _Canvas, part: _Part, out: np.ndarray) -> None:
    render, tail = _NOTE_RENDERERS[part.instrument]
    p = part.params
    spread = p.get("spread", 0.0)
    for start, length, pitch, vel, pan in part.events:
        tail_s = tail * p["release"]
        if part.instrument in ("electric piano", "pluck", "mallet"):
            tail_s = min(tail_s + length, 7 * p["decay"]) - length
        for when in c.occurrences(start):
            span = c.times(when, length + tail_s)
            if span is None:
                continue
            n0, t = span
            y = part.gain * vel * render(c, p, t, float(_hz(pitch)), length)
            if y.ndim == 2:  # a pad's two detuned oscillators, spread apart
                c.add(out, n0, y[0], pan - spread)
                c.add(out, n0, y[1], pan + spread)
            else:
                c.add(out, n0, y, pan)


# ---- vocals


def _formant_envelope(freqs: np.ndarray, hz: np.ndarray, bw: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """``(frames, bins)`` magnitude: a sum of Lorentzian resonances ``A / sqrt(1 + ((f - F)/(B/2))²)`` and a floor."""
    x = (freqs[None, :, None] - hz[:, None, :]) / (bw[:, None, :] / 2)
    return np.sum(amp[:, None, :] / np.sqrt(1 + x * x), axis=-1) + np.float32(0.003)


def _overlap_add(frames: np.ndarray, hop: int, first: int) -> np.ndarray:
    """Sum frames ``(count, 4 * hop)`` placed ``hop`` apart, frame ``i`` being frame ``first + i`` of a sequence.

    Frames four apart tile without overlapping, so each class of frame index mod 4 is one
    contiguous add; adding the classes in a fixed order gives a sample the same sum
    whichever other frames of the sequence are present.
    """
    count, win = frames.shape
    out = np.zeros((count - 1) * hop + win, frames.dtype)
    for r in range(4):
        i = (r - first) % 4
        block = frames[i::4].reshape(-1)
        out[i * hop : i * hop + len(block)] += block
    return out


def _sing(c: _Canvas, p: dict, notes: tuple, offset: float) -> tuple[int, np.ndarray] | None:
    """One phrase, where it meets the window: pulse train with glides and vibrato, breath, formants, fricatives."""
    onsets = np.array([n[0] for n in notes]) + offset
    lengths = np.array([n[1] for n in notes])
    pitches = np.array([n[2] for n in notes])
    n0, n1 = math.ceil(onsets[0] * c.rate), math.ceil((onsets[-1] + lengths[-1] + 6 * p["release"]) * c.rate)
    if n0 >= c.end or n1 <= c.first:
        return None
    t = np.arange(n0, n1) / c.rate  # the whole phrase: pitch, phase and loudness are cheap

    def span(start: float, stop: float) -> slice:  # the samples of t in [start, stop)
        return slice(max(0, math.ceil(start * c.rate) - n0), max(0, math.ceil(stop * c.rate) - n0))

    pitch = np.full(len(t), pitches[0])
    for i in range(1, len(notes)):  # glide from note to note over p["glide"] s around each onset
        glide = span(onsets[i] - p["glide"] / 2, onsets[i] + p["glide"] / 2)
        pitch[glide] += (pitches[i] - pitches[i - 1]) * _smoothstep((t[glide] - onsets[i] + p["glide"] / 2) / p["glide"])
        pitch[glide.stop :] += pitches[i] - pitches[i - 1]
    current = np.clip(np.searchsorted(onsets, t, side="right") - 1, 0, len(notes) - 1)
    depth = p["vibrato_depth"] * _smoothstep((t - onsets[current] - p["vibrato_delay"]) / 0.25)
    f0 = _hz(pitch + depth * _sin(p["vibrato_rate"] * t) + 0.06 * _sin(0.7 * t + 0.2))
    # phase since the onset (trapezoidal rule), so every rate samples the same waveform
    cycles = f0[0] * (t[0] - onsets[0]) + np.concatenate([[0.0], np.cumsum((f0[1:] + f0[:-1]) / 2)]) / c.rate
    env = np.zeros(len(t), np.float32)
    for on, length, note in zip(onsets, lengths, notes):  # syllables: the louder envelope wins
        sung = span(on, on + length + 6 * p["release"])
        note_env = note[3] * _envelope((t[sung] - on).astype(np.float32), p["attack"], length, p["release"])
        np.maximum(env[sung], note_env, out=env[sung])

    # Formants, applied to the frames of a short-time Fourier transform (Hann window of four
    # hops, 32 ms; frame k centred on phrase sample k * hop): the vowel of the current
    # syllable, smoothed over 50 ms. Only the frames that touch the window are computed.
    hop = max(4, round(0.008 * c.rate))
    win = 4 * hop
    count = len(t) // hop + 1
    frame_t = (n0 + np.arange(count) * hop) / c.rate
    vowel = np.array([n[4] for n in notes])[np.clip(np.searchsorted(onsets, frame_t, side="right") - 1, 0, len(notes) - 1)]
    smooth = max(1, round(0.05 * c.rate / hop))

    def track(table: np.ndarray) -> np.ndarray:  # (count, 5) moving average of the syllables' values
        rows = np.pad(table[vowel], ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        return np.stack([np.convolve(rows[:, i], np.ones(smooth) / smooth, mode="valid") for i in range(5)], axis=1)

    tracks = np.concatenate([track(_FORMANT_HZ * p["formant_scale"]), track(_FORMANT_BW), 10 ** (track(_FORMANT_DB) / 20)], 1)
    a, b = max(n0, c.first) - n0, min(n1, c.end) - n0
    k0, k1 = max(0, (a - 2 * hop) // hop + 1), min(count - 1, -(-(b + 2 * hop) // hop) - 1)
    s0, s1 = (k0 - 2) * hop, (k1 + 2) * hop  # the samples those frames cover
    lo, hi = max(0, s0), min(len(t), s1)
    breath = c.texture(c.noise("breath", _band(2500.0, 1.5)), n0 + lo, hi - lo)
    source = np.zeros(s1 - s0, np.float32)
    source[lo - s0 : hi - s0] = (_dsf(cycles[lo:hi], f0[lo:hi], p["bright"], c.cap) + p["breath"] * breath) * env[lo:hi]
    window = (0.5 - 0.5 * np.cos(_TWO_PI * np.arange(win) / win)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(source, win)[::hop] * window
    rows = tracks[k0 : k1 + 1].astype(np.float32)
    new = np.concatenate([[True], np.any(rows[1:] != rows[:-1], axis=1)])  # steady vowels repeat a state
    freqs = (np.arange(win // 2 + 1) * c.rate / win).astype(np.float32)
    gain = _formant_envelope(freqs, *np.split(rows[new], 3, axis=1))[np.cumsum(new) - 1]
    voiced = _overlap_add(np.fft.irfft(np.fft.rfft(frames) * gain, win) * window, hop, k0)
    norm = _overlap_add(np.broadcast_to(window * window, frames.shape), hop, k0)
    voiced = voiced[a - s0 : b - s0] / norm[a - s0 : b - s0]

    fricative = c.texture(c.noise("fricative", _highpass(p["fricative_cut"])), n0 + a, b - a)
    hiss = np.zeros(len(t), np.float32)
    for on, note in zip(onsets, notes):  # a 25 ms hiss 50 ms into some syllables
        if note[5]:
            burst = span(on, on + 0.15)
            hiss[burst] += np.exp(-(((t[burst] - on - 0.05) / 0.025) ** 2))
    return n0 + a, voiced + 0.35 * fricative * hiss[a:b]


def _render_vocals(c: _Canvas, part: _Part, out: np.ndarray) -> None:
    for notes, pan in part.events:
        for offset in c.occurrences(0.0):
            sung = _sing(c, part.params, notes, offset)
            if sung is not None:
                c.add(out, sung[0], part.gain * sung[1], pan)


def _gate(c: _Canvas, silent: frozenset[int], bar: float, out: np.ndarray) -> None:
    """Zero the window ``out`` in every silent bar, fading out over ``_FADE_S`` before each."""
    for b in range(int(c.first / c.rate / bar), math.ceil(c.end / c.rate / bar) + 1):
        if b % LOOP_BARS not in silent:
            continue
        n0, n1 = max(c.first, math.ceil(b * bar * c.rate)), min(c.end, math.ceil((b + 1) * bar * c.rate))
        out[:, max(0, n0 - c.first) : max(0, n1 - c.first)] = 0.0
        span = c.times(b * bar - _FADE_S, _FADE_S)
        if span is not None:
            f0, t = span
            out[:, f0 - c.first : f0 - c.first + len(t)] *= 0.5 + 0.5 * np.cos(np.pi * t / _FADE_S)



def song_info(seed: int) -> SongInfo:
    """Describe the song of ``seed``: tempo, key, chords, instruments, silent bars, gains, melody."""
    return _compose(check_seed(seed)).info


def synthesize(seed: int, sample_rate: int, duration: float, stereo: bool = False) -> torch.Tensor:
    """Render the four stems of song ``seed``.

    Args:
        seed: non-negative integer; the song (everything musical) depends on it alone.
        sample_rate: Hz, any positive integer (8000, 16000, 32000, 44100, ...).
        duration: seconds; ``round(duration * sample_rate)`` samples.
        stereo: two panned channels instead of one (mono is their mean).

    Returns:
        ``(4, channel, time)`` float32 stems ``s_j`` in SOURCES order; the mixture is ``stems.sum(0)``.
        Deterministic: the same arguments give bit-identical stems, and a shorter render
        is the start of a longer one.
    """
    seed = check_seed(seed)
    rate = check_rate(sample_rate)
    samples = round(check_duration(duration) * rate)
    if samples < 1:
        raise ValueError(f"duration must give at least one sample at {rate} Hz, got {duration!r} s.")
    return _render(seed, rate, 0, samples, bool(stereo))


def _render(seed: int, rate: int, first: int, samples: int, stereo: bool) -> torch.Tensor:
    """Stems ``(4, channel, samples)`` of samples ``[first, first + samples)`` of song ``seed``.

    The window is what ``synthesize`` gives for those samples; only the safety rescale (when
    the mixture would exceed MAX_PEAK) looks at the window alone.
    """
    song = _compose(seed)
    canvas = _Canvas(seed, rate, first, samples, stereo, song.info.loop_seconds)
    stems = np.zeros((len(SOURCES), canvas.channels, samples), np.float32)
    renderers = {"drums": _render_drums, "vocals": _render_vocals}
    for part in song.parts:
        renderers.get(part.instrument, _render_notes)(canvas, part, stems[part.stem])
    for j, silent in enumerate(song.silent):
        _gate(canvas, silent, song.info.bar_seconds, stems[j])
        stems[j] *= song.gains[j]
    peak = float(np.abs(stems.sum(0, dtype=np.float64)).max())
    if peak > MAX_PEAK:
        stems *= MAX_PEAK / peak
    return torch.from_numpy(stems)


# ----------------------------------------------------------------------------- dataset


def split_seed(split: str, index: int) -> int:
    """The song seed of item ``index`` of ``split`` (train, valid, test: disjoint ranges of SPLIT_SIZE)."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}.")
    if not 0 <= index < SPLIT_SIZE:
        raise IndexError(f"index must be in [0, {SPLIT_SIZE}) for the {split} split, got {index}.")
    return SPLIT_OFFSETS[split] + index


class BandDataset(torch.utils.data.Dataset):
    """Songs of the synthetic band, generated on the fly: item ``i`` is ``(mixture, stems)``.

    ``mixture`` is ``(channel, time)`` and ``stems`` ``(4, channel, time)`` float32, with
    ``mixture == stems.sum(0)`` exactly: ``segment`` seconds of the ``song_duration`` s song
    of seed ``split_seed(split, i)``, from sample :meth:`crop_start` on. Only the crop is
    rendered; it equals ``synthesize(seed, sample_rate, song_duration, stereo)[..., start:
    start + n]``. Random crops start at an offset drawn from the item's seed, so an item is
    a pure function of ``(split, i, constructor arguments)`` and a run resumes exactly;
    shuffle with the DataLoader's sampler.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"`` (disjoint seeds).
        sample_rate: Hz.
        segment: crop length in seconds (at most ``song_duration``), or None for whole songs.
        song_duration: length of each generated song in seconds.
        stereo: two channels instead of one.
        size: number of items; default 100 000 for train, 16 for valid and test.
        random_crop: crop at a random offset; default True for train, False (offset 0) otherwise.
    """

    def __init__(self, split: str = "train", sample_rate: int = 8000, segment: float | None = 1.0,
                 song_duration: float = 4.0, stereo: bool = False, size: int | None = None,
                 random_crop: bool | None = None) -> None:
        if split not in SPLIT_OFFSETS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}.")
        self.split = split
        self.sample_rate = check_rate(sample_rate)
        self.song_duration = check_duration(song_duration, "song_duration")
        self.segment = None if segment is None else check_duration(segment, "segment")
        if self.segment is not None and self.segment > self.song_duration:
            raise ValueError(f"segment ({self.segment} s) must not be longer than song_duration ({self.song_duration} s).")
        size = DEFAULT_SIZES[split] if size is None else size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 0 < size <= SPLIT_SIZE:
            raise ValueError(f"size must be an integer in [1, {SPLIT_SIZE}], got {size!r}.")
        self.size = int(size)
        self.stereo = bool(stereo)
        self.random_crop = split == "train" if random_crop is None else bool(random_crop)
        self.song_samples = round(self.song_duration * self.sample_rate)
        self.segment_samples = self.song_samples if self.segment is None else max(1, round(self.segment * self.sample_rate))

    def __len__(self) -> int:
        return self.size

    def crop_start(self, index: int) -> int:
        """The first sample of item ``index``'s crop within its song."""
        spare = self.song_samples - self.segment_samples
        if not self.random_crop or spare <= 0:
            return 0
        return int(_rng(split_seed(self.split, index), _CROP).integers(0, spare + 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = operator.index(index)
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} is out of range for a {self.split} BandDataset of {self.size} songs.")
        index %= self.size
        seed, start = split_seed(self.split, index), self.crop_start(index)
        stems = _render(seed, self.sample_rate, start, self.segment_samples, self.stereo)
        return stems.sum(0), stems
