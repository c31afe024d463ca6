"""What each stem plays: drum grooves, bass lines, chord comping and arpeggios, sung phrases.

Each ``compose_*`` function draws from its own random stream of the song's seed (see
:mod:`.common`) and writes the events of one pass of the arrangement (:data:`LOOP_BARS`
bars), leaving out the stem's silent bars; renders repeat the pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Union

import numpy as np

from .common import BASS, DRUMS, LOOP_BARS, OTHER, VOCALS, pick, stream, uniform
from .music import SCALES, Chord, Grid, place
from .sounds import VOWELS, DrumKit, NoteSound, Voice, draw_bass_sound, draw_drum_kit, draw_other_sound, draw_voice


class DrumHit(NamedTuple):
    """One drum hit: ``start`` s, ``piece`` (kick, snare, ghost, hat, open, crash, tom_hi, tom_lo), gain, pan."""

    start: float
    piece: str
    velocity: float
    pan: float


class Note(NamedTuple):
    """One note: ``start`` and ``length`` in s, MIDI ``pitch``, ``velocity`` (gain), ``pan`` (-1 .. 1)."""

    start: float
    length: float
    pitch: float
    velocity: float
    pan: float


class SungNote(NamedTuple):
    """One syllable: ``start`` and ``length`` s, MIDI ``pitch``, gain, index into ``VOWELS``, with a fricative or not."""

    start: float
    length: float
    pitch: float
    velocity: float
    vowel: int
    fricative: bool


class Phrase(NamedTuple):
    """A sung phrase: its syllables, sung legato, and its pan."""

    notes: tuple[SungNote, ...]
    pan: float


@dataclass
class Part:
    """One instrument of one stem: which renderer, its sound, its events and its gain.

    Attributes:
        stem: index into SOURCES.
        instrument: the renderer (``drums``, ``vocals``, or a pitched instrument's name).
        name: the variant, as :attr:`SongInfo.instruments` lists it.
        sound: the instrument's timbre parameters.
        events: :class:`DrumHit`, :class:`Note` or :class:`Phrase` events of one pass.
        gain: linear; the instrument's level within its stem.
    """

    stem: int
    instrument: str
    name: str
    sound: Union[DrumKit, NoteSound, Voice]
    events: list = field(default_factory=list)
    gain: float = 1.0


# ---- drums

_GROOVES: dict[str, dict[str, tuple[int, ...]]] = {  # piece -> sixteenth steps of one bar
    "rock": {"kick": (0, 8), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)},
    "four on the floor": {"kick": (0, 4, 8, 12), "snare": (4, 12), "hat": (0, 4, 8, 12), "open": (2, 6, 10, 14)},
    "half-time": {"kick": (0, 10), "snare": (8,), "hat": tuple(range(16))},
    "funk": {"kick": (0, 3, 10), "snare": (4, 12), "ghost": (7, 9, 14), "hat": tuple(range(16))},
    "hip-hop": {"kick": (0, 7, 10), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)},
}


def compose_drums(seed: int, grid: Grid, silent: frozenset[int]) -> tuple[Part, str]:
    """The drum part (a groove with fills, crashes and dropped hats) and the groove's name."""
    rng = stream(seed, DRUMS)
    kit_name, kit = draw_drum_kit(rng)
    groove_name = pick(rng, tuple(_GROOVES))
    groove = _GROOVES[groove_name]
    fill_chance = uniform(rng, 0.0, 0.6)  # of a fill in the last bar of each four
    part = Part(0, "drums", f"{kit_name} kit", kit)
    for bar in range(LOOP_BARS):
        if bar in silent:
            continue
        cymbals: dict[int, tuple[str, float]] = {}  # step -> (hat or open, velocity): one per step
        for piece in ("hat", "open"):
            for step in groove.get(piece, ()):
                if rng.random() > 0.05:
                    accent = 1.0 if step % 4 == 0 else 0.75 if step % 2 == 0 else 0.55
                    cymbals[step] = (piece, accent * uniform(rng, 0.85, 1.0))
        kicks = list(groove["kick"])
        if rng.random() < 0.2:
            kicks.append(int(rng.integers(1, 8)) * 2)
        hits = [(step, "kick", uniform(rng, 0.85, 1.0)) for step in kicks]
        hits += [(step, "snare", uniform(rng, 0.85, 1.0)) for step in groove["snare"]]
        hits += [(step, "ghost", uniform(rng, 0.2, 0.35)) for step in groove.get("ghost", ())]
        if bar % 4 == 3 and rng.random() < fill_chance:  # the last beat becomes a fill
            hits = [hit for hit in hits if hit[0] < 12]
            cymbals = {step: hit for step, hit in cymbals.items() if step < 12}
            hits += [(step, pick(rng, ("snare", "tom_hi", "tom_lo")), uniform(rng, 0.6, 1.0)) for step in range(12, 16)]
        if bar % 4 == 0 and rng.random() < 0.5:
            cymbals.pop(0, None)
            hits.append((0, "crash", uniform(rng, 0.8, 1.0)))
        for step, (piece, velocity) in cymbals.items():
            hits.append((step, piece, velocity))
        for step, piece, velocity in hits:
            start = grid.at(bar, step) + uniform(rng, 0.0, 0.004)
            pan = kit.pans[piece]
            part.events.append(DrumHit(start, piece, velocity * kit.levels["tom" if piece.startswith("tom") else piece], pan))
    return part, groove_name


# ---- bass

_BASS_LINES = {  # sixteenth steps of the notes of one bar
    "long roots": (0, 8),
    "eighths": (0, 2, 4, 6, 8, 10, 12, 14),
    "syncopated": (0, 3, 6, 8, 11, 14),
    "kick-locked": (0, 7, 8, 10),
    "walking": (0, 4, 8, 12),
}


def compose_bass(seed: int, grid: Grid, chords: list[Chord], silent: frozenset[int], pan: float) -> tuple[Part, str]:
    """The bass part (roots, fifths, octaves and approach notes to the next chord) and its line's name."""
    rng = stream(seed, BASS)
    sound_name, sound = draw_bass_sound(rng)
    line = pick(rng, tuple(_BASS_LINES))
    steps = _BASS_LINES[line]
    low = 33 + int(rng.integers(0, 8))  # MIDI pitch of the lowest root
    legato = uniform(rng, 0.5, 0.95)  # fraction of the time to the next note that a note lasts
    part = Part(1, "bass", f"{sound_name} bass", sound)
    for bar in range(LOOP_BARS):
        if bar in silent:
            continue
        chord, next_chord = chords[bar], chords[(bar + 1) % LOOP_BARS]
        root = place(chord.root, low)
        for i, step in enumerate(steps):
            if step == 0:
                pitch = root
            elif line == "walking":  # all three beats' choices are drawn, the step's kept
                pitch = {4: root + pick(rng, chord.intervals[1:3]), 8: root + pick(rng, (7, 12)),
                         12: place(next_chord.root, low) + pick(rng, (-1, 1, 2))}[step]
            elif step >= 12 and rng.random() < 0.25:  # approach the next chord
                pitch = place(next_chord.root, low) + pick(rng, (-1, 1, 2))
            else:
                pitch = root + pick(rng, (0, 0, 0, 0, 0, 12, 12, 7, 7, chord.intervals[1]))
            end = steps[i + 1] if i + 1 < len(steps) else 16
            length = max(0.06, (grid.at(bar, end) - grid.at(bar, step)) * legato)
            start = grid.at(bar, step) + uniform(rng, 0.0, 0.004)
            velocity = uniform(rng, 0.8, 1.0) * (1.0 if step % 8 == 0 else 0.9)
            part.events.append(Note(start, length, float(pitch), velocity, pan))
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
_ARP_INSTRUMENTS = ("pluck", "mallet", "electric piano")
_ARP_ORDERS = ("up", "down", "up-down", "random")


def _compose_chords(rng: np.random.Generator, grid: Grid, chords: list[Chord], silent: frozenset[int], pan: float,
                    width: float) -> tuple[Part, str]:
    """A chord part (organ, pad or electric piano) comping in one rhythm, its voices spread over ``width``."""
    name = pick(rng, tuple(_COMP_STYLES))
    rhythm_name = pick(rng, _COMP_STYLES[name])
    centre = 57 + int(rng.integers(0, 9))  # MIDI pitch the voicings sit around
    part = Part(2, name, name, draw_other_sound(rng, name))
    for bar in range(LOOP_BARS):
        if bar in silent:
            continue
        chord = chords[bar]
        voicing = chord.intervals  # triads whole, sevenths without their fifth
        if len(voicing) == 4:
            voicing = voicing[:2] + voicing[3:]
        pitches = sorted(place((chord.root + interval) % 12, centre - 6) for interval in voicing)
        pans = np.linspace(-width, width, len(pitches)) + pan
        for step, length in _COMP_RHYTHMS[rhythm_name]:
            velocity = uniform(rng, 0.75, 1.0)
            start = grid.at(bar, step) + uniform(rng, 0.0, 0.004)
            for pitch, note_pan in zip(pitches, pans):
                part.events.append(Note(start, length * grid.step, float(pitch), velocity, float(note_pan)))
    return part, f"{rhythm_name} chords"


def _compose_arpeggio(rng: np.random.Generator, grid: Grid, tempo: float, chords: list[Chord], silent: frozenset[int],
                      pan: float, width: float) -> tuple[Part, str]:
    """An arpeggio (pluck, mallet or electric piano) over two octaves of each chord, maybe panned ping-pong."""
    name = pick(rng, _ARP_INSTRUMENTS)
    order = pick(rng, _ARP_ORDERS)
    step_size = 1 if tempo <= 110 and rng.random() < 0.5 else 2  # sixteenths or eighths
    base = 57 + int(rng.integers(0, 10))  # MIDI pitch of the lowest root
    ping_pong = rng.random() < 0.5
    rest_chance = uniform(rng, 0.0, 0.2)
    part = Part(2, name, f"{name} arpeggio", draw_other_sound(rng, name))
    for bar in range(LOOP_BARS):
        if bar in silent:
            continue
        chord = chords[bar]
        lowest = place(chord.root, base)
        tones = sorted({lowest + interval + octave for octave in (0, 12) for interval in chord.intervals})[:7]
        cycle = tones + tones[-2:0:-1] if order == "up-down" else tones[::-1] if order == "down" else tones
        for k, step in enumerate(range(0, 16, step_size)):
            if rng.random() < rest_chance:
                continue
            pitch = pick(rng, tones) if order == "random" else cycle[k % len(cycle)]
            note_pan = pan + (width if k % 2 else -width) if ping_pong else pan
            start = grid.at(bar, step) + uniform(rng, 0.0, 0.004)
            length = step_size * grid.step * uniform(rng, 1.0, 2.0)
            part.events.append(Note(start, length, float(pitch), uniform(rng, 0.7, 1.0), note_pan))
    return part, f"{order} arpeggio in {'sixteenths' if step_size == 1 else 'eighths'}"


def compose_other(seed: int, grid: Grid, tempo: float, chords: list[Chord], silent: frozenset[int],
                  pan: float) -> tuple[list[Part], tuple[str, ...]]:
    """The "other" stem: a chord part, an arpeggio, or both (each at -3 dB, balance drawn); and their patterns."""
    rng = stream(seed, OTHER)
    layout = rng.random()  # < 0.15: arpeggio alone, < 0.6: both, else chords alone
    parts, patterns = [], []
    width = uniform(rng, 0.1, 0.4)  # pan spread of the chords' voices, or of a ping-pong arpeggio
    if layout >= 0.15:
        part, pattern = _compose_chords(rng, grid, chords, silent, pan, width)
        parts.append(part)
        patterns.append(pattern)
    if layout < 0.6:
        part, pattern = _compose_arpeggio(rng, grid, tempo, chords, silent, pan, width)
        parts.append(part)
        patterns.append(pattern)
    if len(parts) == 2:
        balance = uniform(rng, -3.0, 3.0)  # dB
        parts[0].gain, parts[1].gain = 10 ** ((balance - 6) / 40), 10 ** ((-balance - 6) / 40)
    return parts, tuple(patterns)


# ---- vocals


def _phrase_rhythm(rng: np.random.Generator) -> list[tuple[int, int]]:
    """Notes ``(eighth, length in eighths)`` of a two-bar phrase ending in a rest of at least two eighths."""
    eighth, end, notes = int(rng.integers(0, 3)), int(rng.integers(12, 15)), []
    while eighth < end:
        length = min(int(pick(rng, (1, 1, 2, 2, 2, 3, 4))), end - eighth)
        notes.append((eighth, length))
        eighth += length + (int(rng.integers(1, 3)) if rng.random() < 0.15 else 0)
    return notes


def compose_vocals(seed: int, grid: Grid, mode: str, tonic: int, chords: list[Chord], silent: frozenset[int],
                   pan: float) -> tuple[Part, str, tuple[tuple[float, float, float, str], ...]]:
    """The sung part: two-bar phrases A and B alternating (AB AB), each the same words and contour when it returns.

    Returns the part, the form (e.g. ``"phrases AB-B"``, ``-`` for a silent section) and the
    melody as :attr:`SongInfo.melody` lists it.
    """
    rng = stream(seed, VOCALS)
    voice_name, voice = draw_voice(rng)
    low, high = voice.lowest, voice.highest
    scale_pitches = [m for m in range(low, high + 1) if (m - tonic) % 12 in SCALES[mode]]
    centre = (low + high) / 2 + uniform(rng, -2, 2)  # MIDI pitch each phrase starts near
    legato = uniform(rng, 0.85, 1.0)
    templates = [_phrase_rhythm(rng), _phrase_rhythm(rng)]
    part = Part(3, "vocals", f"{voice_name} voice", voice)
    melody = []
    for section in range(LOOP_BARS // 2):
        if 2 * section in silent:
            continue
        phrase = section % 2  # 0: A, 1: B
        phrase_rng = stream(seed, VOCALS, 1 + phrase)  # the same words and contour each time a phrase returns
        degree = int(np.argmin([abs(m - centre) for m in scale_pitches]))  # index into scale_pitches
        notes = []
        for eighth, length in templates[phrase]:
            degree = int(np.clip(degree + pick(phrase_rng, (-2, -1, -1, 0, 1, 1, 2, -3, 3, 4)), 0, len(scale_pitches) - 1))
            pitch = scale_pitches[degree]
            bar = 2 * section + eighth // 8
            if eighth % 2 == 0:  # on a beat: the nearest chord tone
                chord = chords[bar]
                tones = [m for m in range(low, high + 1) if (m - chord.root) % 12 in [i % 12 for i in chord.intervals]]
                scale_pitch = pitch
                pitch = min(tones, key=lambda m: abs(m - scale_pitch))
                degree = int(np.argmin([abs(m - pitch) for m in scale_pitches]))
            start = grid.at(2 * section, 2 * eighth)
            stop = grid.at(2 * section, 2 * (eighth + length))
            vowel = int(phrase_rng.integers(len(VOWELS)))
            notes.append(SungNote(start, (stop - start) * legato, float(pitch), float(phrase_rng.uniform(0.8, 1.0)), vowel,
                                  bool(phrase_rng.random() < voice.fricative_chance)))
            melody.append((round(start, 4), round((stop - start) * legato, 4), float(pitch), VOWELS[vowel]))
        part.events.append(Phrase(tuple(notes), pan))
    form = "".join("-" if 2 * s in silent else "AB"[s % 2] for s in range(LOOP_BARS // 2))
    return part, f"phrases {form}", tuple(melody)
