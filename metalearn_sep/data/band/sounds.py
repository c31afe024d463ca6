"""The band's instruments: one frozen dataclass of timbre parameters per instrument, and how a song draws them.

Each ``draw_*`` function takes the random stream of its stem and draws the parameters in a
fixed order (keyword arguments are evaluated left to right), so a seed always gives the same
sound. "Brightness" is the ratio ``a`` of Moorer's discrete summation formula (see
:func:`~metalearn_sep.data.band.dsp.dsf`): partial ``k`` has amplitude ``a^k``, so ``a``
near 0 is a sine and ``a`` near 1 a buzz.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Union

import numpy as np

from .common import pick, uniform

Range = tuple[float, float]  # (low, high)


def _drawer(rng: np.random.Generator) -> Callable[[float, float], float]:
    """``draw(low, high)``: one uniform draw from ``[low, high)`` of ``rng``."""
    return lambda low, high: uniform(rng, low, high)


# ---- drums


@dataclass(frozen=True)
class DrumKit:
    """A drum kit.

    Attributes:
        kick_start_freq: Hz; the kick's pitch at the hit.
        kick_end_freq: Hz; the pitch it falls to.
        kick_bend: s; time constant of the fall.
        kick_decay: s; time constant of the kick's exponential decay.
        kick_click: level of the noise click on the kick's attack (1 = the tone's level).
        kick_drive: levels of the kick's 2nd and 3rd harmonics (1 = the fundamental's).
        clap: the snare is a hand clap (three noise bursts) instead of a drum (tone and noise).
        snare_body_freq: Hz; the snare drum's tone (a second partial sits at 1.47 times it).
        snare_body_decay: s; time constant of that tone.
        snare_body_mix: fraction of the snare drum that is tone, the rest noise.
        snare_noise_centre: Hz; centre of the snare's (and the toms') band of noise.
        snare_decay: s; time constant of the snare's noise, or the clap's tail.
        hat_cutoff: Hz; the hi-hats' (and kick click's) noise is high-passed here.
        hat_decay: s; time constant of a closed hi-hat.
        open_hat_decay: s; time constant of an open hi-hat.
        crash_cutoff: Hz; the crash's noise is high-passed (first order) here.
        crash_decay: s; time constant of the crash.
        tom_freq: Hz; the low tom (the high tom is 1.5 times higher).
        levels: piece -> gain (``kick snare ghost hat open crash tom``; both toms share ``tom``).
        pans: piece -> pan, -1 (left) .. 1 (right) (``tom_hi`` and ``tom_lo`` apart).
    """

    kick_start_freq: float
    kick_end_freq: float
    kick_bend: float
    kick_decay: float
    kick_click: float
    kick_drive: Range
    clap: bool
    snare_body_freq: float
    snare_body_decay: float
    snare_body_mix: float
    snare_noise_centre: float
    snare_decay: float
    hat_cutoff: float
    hat_decay: float
    open_hat_decay: float
    crash_cutoff: float
    crash_decay: float
    tom_freq: float
    levels: Mapping[str, float]
    pans: Mapping[str, float]


_KITS = ("acoustic", "electronic", "lo-fi")
# DrumKit field -> its range for each kit of _KITS, drawn uniformly in this order; kick_drive: a
# range per harmonic; clap: its chance (None: never, and nothing is drawn).
_KIT_RANGES = {
    "kick_start_freq": ((110, 170), (150, 260), (100, 150)),
    "kick_end_freq": ((45, 60), (40, 52), (42, 56)),
    "kick_bend": ((0.012, 0.03), (0.025, 0.07), (0.02, 0.05)),
    "kick_decay": ((0.09, 0.2), (0.15, 0.32), (0.1, 0.25)),
    "kick_click": ((0.15, 0.4), (0.0, 0.15), (0.0, 0.2)),
    "kick_drive": (((0.0, 0.2), (0.0, 0.2)), ((0.0, 0.3), (0.0, 0.3)), ((0.1, 0.4), (0.1, 0.4))),
    "clap": (None, 0.6, 0.3),
    "snare_body_freq": ((170, 240), (180, 280), (150, 220)),
    "snare_body_decay": ((0.03, 0.07), (0.02, 0.05), (0.03, 0.08)),
    "snare_body_mix": ((0.3, 0.55), (0.2, 0.45), (0.35, 0.6)),
    "snare_noise_centre": ((2500, 5000), (1500, 4000), (1200, 2500)),
    "snare_decay": ((0.06, 0.14), (0.05, 0.15), (0.05, 0.12)),
    "hat_cutoff": ((5000, 8000), (6000, 9000), (3000, 5000)),
    "hat_decay": ((0.015, 0.04), (0.01, 0.03), (0.02, 0.05)),
    "open_hat_decay": ((0.12, 0.3), (0.1, 0.25), (0.1, 0.2)),
    "crash_cutoff": ((2500, 4500), (3500, 6000), (2000, 3500)),
    "crash_decay": ((0.6, 1.2), (0.5, 1.0), (0.4, 0.8)),
    "tom_freq": ((90, 150), (110, 180), (80, 130)),
}


def draw_drum_kit(rng: np.random.Generator) -> tuple[str, DrumKit]:
    """A kit (acoustic, electronic or lo-fi) and its sound."""
    kit_index = int(rng.integers(len(_KITS)))
    u = _drawer(rng)
    params: dict[str, object] = {}
    for name, specs in _KIT_RANGES.items():
        spec = specs[kit_index]
        if name == "clap":
            params[name] = spec is not None and bool(rng.random() < spec)
        elif name == "kick_drive":
            params[name] = tuple(u(*harmonic) for harmonic in spec)
        else:
            params[name] = u(*spec)
    width = u(0.3, 0.7)
    side = 1.0 if rng.random() < 0.5 else -1.0
    levels = dict(kick=u(0.9, 1.1), snare=u(0.7, 1.0), ghost=u(0.7, 1.0), hat=u(0.25, 0.45),
                  open=u(0.25, 0.4), crash=u(0.25, 0.4), tom=u(0.6, 0.9))
    pans = dict(kick=0.0, snare=u(-0.1, 0.1), ghost=u(-0.1, 0.1), hat=side * width, open=side * width,
                crash=-side * width * u(0.5, 1.0), tom_hi=0.4 * width, tom_lo=-0.4 * width)
    return _KITS[kit_index], DrumKit(**params, levels=levels, pans=pans)


# ---- pitched instruments


@dataclass(frozen=True)
class FallingBrightness:
    """Timbre of a tone whose brightness falls after the attack, like a closing filter envelope.

    Attributes:
        brightness_start: brightness at the attack.
        brightness_end: brightness it falls to.
        brightness_decay: s; time constant of that fall.
    """

    brightness_start: float
    brightness_end: float
    brightness_decay: float

    def brightness(self, t32: np.ndarray) -> np.ndarray:
        """The brightness at times ``t32`` (s since the attack, float32)."""
        return self.brightness_end + (self.brightness_start - self.brightness_end) * np.exp(-t32 / self.brightness_decay)


@dataclass(frozen=True)
class BassSound(FallingBrightness):
    """A bass: one or two band-limited harmonic tones whose brightness falls after the attack.

    Attributes (and those of :class:`FallingBrightness`):
        decay: s; time constant of the level's fall from the peak to ``sustain``.
        sustain: level held while the note lasts (1 = the peak).
        release: s; time constant of the fade after the note ends.
        sine: level of a sine added at the fundamental (1 = the tone's level).
        detune: relative pitch offset of a second tone (``f * (1 + detune)``); 0 for one tone.
    """

    decay: float
    sustain: float
    release: float
    sine: float
    detune: float


def draw_bass_sound(rng: np.random.Generator) -> tuple[str, BassSound]:
    """A bass (sub, finger, pick or synth) and its sound."""
    name = pick(rng, ("sub", "finger", "pick", "synth"))
    u = _drawer(rng)
    # Every variant's ranges are drawn, the song's kept: the stream advances the same way for all.
    brightness = {"sub": (u(0.4, 0.5), u(0.3, 0.4)), "finger": (u(0.6, 0.72), u(0.35, 0.5)),
                  "pick": (u(0.72, 0.84), u(0.4, 0.55)), "synth": (u(0.7, 0.82), u(0.4, 0.55))}[name]
    decay = {"sub": u(1.0, 2.0), "finger": u(0.5, 1.0), "pick": u(0.3, 0.6), "synth": u(0.6, 1.5)}[name]
    return name, BassSound(brightness_start=brightness[0], brightness_end=brightness[1],
                           brightness_decay=u(0.05, 0.25), decay=decay, sustain=u(0.3, 0.7), release=u(0.03, 0.07),
                           sine=0.8 if name == "sub" else u(0.0, 0.4),
                           detune=u(0.001, 0.003) if name == "synth" else 0.0)


ORGAN_HARMONICS = (1, 2, 3, 4, 6, 8)
"""The harmonics an organ's drawbars set."""


@dataclass(frozen=True)
class OrganSound:
    """A drawbar organ: sines at :data:`ORGAN_HARMONICS`, a percussive 3rd harmonic, a rotating-speaker tremolo.

    Attributes:
        drawbars: level of each harmonic of :data:`ORGAN_HARMONICS`, 0 .. 1.
        percussion: level of the decaying 3rd harmonic on each attack.
        leslie_rate: Hz; rate of the tremolo.
        leslie_depth: depth of the tremolo (fraction of the level).
        attack: s; length of the attack.
        release: s; time constant of the fade after the note ends.
    """

    drawbars: tuple[float, ...]
    percussion: float
    leslie_rate: float
    leslie_depth: float
    attack: float
    release: float


@dataclass(frozen=True)
class PadSound:
    """A pad: two detuned band-limited tones spread apart, their brightness slowly swept.

    Attributes:
        brightness: mean brightness.
        detune: relative pitch offset of each tone (``f * (1 -/+ detune)``).
        attack: s; length of the attack.
        release: s; time constant of the fade after the note ends.
        sweep: depth of the brightness sweep (its swing is ``0.2 * sweep``), a 0.25 Hz sine.
        spread: pan distance of each tone from the note's pan.
    """

    brightness: float
    detune: float
    attack: float
    release: float
    sweep: float
    spread: float


@dataclass(frozen=True)
class ElectricPianoSound(FallingBrightness):
    """An electric piano: a decaying band-limited tone whose brightness falls, a bell-like tine, tremolo.

    Attributes (and those of :class:`FallingBrightness`):
        decay: s; time constant of the note's decay to silence.
        tine: level of the tine (a sine at ``tine_ratio`` times the pitch).
        tine_ratio: the tine's frequency over the note's.
        tine_decay: s; time constant of the tine.
        tremolo: depth of a 5 Hz tremolo (fraction of the level).
        release: s; time constant of the fade after the note ends.
    """

    decay: float
    tine: float
    tine_ratio: float
    tine_decay: float
    tremolo: float
    release: float


@dataclass(frozen=True)
class PluckSound(FallingBrightness):
    """A plucked string: a band-limited tone whose brightness and level fall.

    Attributes, besides those of :class:`FallingBrightness`:
        decay: s; time constant of the string dying away after the pluck.
        release: s; time constant of the fade when the note is damped.
    """

    decay: float
    release: float


@dataclass(frozen=True)
class MalletSound:
    """A mallet instrument: three inharmonic sines, the higher ones dying faster.

    Attributes:
        partial_ratios: each partial's frequency over the note's (the first is 1).
        partial_levels: each partial's level (the first is 1).
        decay: s; time constant of the first partial (partial ``i`` decays ``1 + 2 i`` times faster).
        release: s; time constant of the fade after the note ends.
    """

    partial_ratios: tuple[float, float, float]
    partial_levels: tuple[float, float, float]
    decay: float
    release: float


NoteSound = Union[BassSound, OrganSound, PadSound, ElectricPianoSound, PluckSound, MalletSound]
"""An instrument that plays notes."""

_ORGAN_PRESETS = ((8, 8, 8, 0, 0, 0), (8, 6, 4, 2, 0, 0), (8, 0, 8, 0, 4, 0), (6, 8, 4, 4, 2, 0))  # drawbars 0 .. 8


def draw_other_sound(rng: np.random.Generator, name: str) -> NoteSound:
    """The sound of instrument ``name`` of the "other" stem (organ, pad, electric piano, pluck or mallet)."""
    u = _drawer(rng)
    if name == "organ":
        drawbars = np.array(pick(rng, _ORGAN_PRESETS), float)
        drawbars = np.clip(drawbars + rng.uniform(-1, 1, 6), 0, 8) / 8
        return OrganSound(drawbars=tuple(float(level) for level in drawbars), percussion=u(0.0, 0.6),
                          leslie_rate=u(4.5, 7.0), leslie_depth=u(0.05, 0.25), attack=u(0.005, 0.02),
                          release=u(0.04, 0.1))
    if name == "pad":
        return PadSound(brightness=u(0.3, 0.55), detune=u(0.001, 0.0025), attack=u(0.08, 0.4), release=u(0.2, 0.5),
                        sweep=u(0.1, 0.4), spread=u(0.2, 0.6))
    if name == "electric piano":
        return ElectricPianoSound(brightness_start=u(0.4, 0.6), brightness_end=u(0.1, 0.25),
                                  brightness_decay=u(0.15, 0.4), decay=u(0.8, 2.0), tine=u(0.15, 0.4),
                                  tine_ratio=u(6.8, 7.2), tine_decay=u(0.02, 0.06), tremolo=u(0.0, 0.2),
                                  release=u(0.05, 0.12))
    if name == "pluck":
        return PluckSound(brightness_start=u(0.85, 0.94), brightness_end=u(0.25, 0.45),
                          brightness_decay=u(0.04, 0.15), decay=u(0.2, 0.7), release=u(0.04, 0.1))
    if name == "mallet":
        return MalletSound(partial_ratios=(1.0, u(3.9, 4.1), u(9.4, 10.4)), partial_levels=(1.0, u(0.25, 0.5), u(0.08, 0.2)),
                           decay=u(0.25, 0.7), release=u(0.05, 0.1))
    raise ValueError(f"unknown instrument {name!r}")


# ---- the voice

VOWELS = "aeiou"
"""The sung vowels; a syllable's vowel index points into this string and the formant tables."""
# Formants F1..F5 of a tenor-like voice per vowel: centre frequencies (Hz), bandwidths (Hz), levels (dB).
FORMANT_FREQS = np.array([[650, 1080, 2650, 2900, 3250], [400, 1700, 2600, 3200, 3580], [290, 1870, 2800, 3250, 3540],
                          [400, 800, 2600, 2800, 3000], [350, 600, 2700, 2900, 3300]], float)
FORMANT_WIDTHS = 1.5 * np.array([[80, 90, 120, 130, 140], [70, 80, 100, 120, 120], [50, 90, 100, 120, 120],
                                 [50, 80, 100, 120, 120], [50, 80, 100, 120, 120]], float)
FORMANT_LEVELS_DB = np.array([[0, -6, -7, -8, -22], [0, -14, -12, -14, -20], [0, -15, -18, -20, -30],
                              [0, -10, -12, -12, -26], [0, -20, -17, -14, -26]], float)
_VOICE_TYPES = {"soprano": (62, 79, 1.17), "alto": (55, 72, 1.1), "tenor": (52, 69, 1.0), "baritone": (47, 64, 0.93)}
# voice type -> (lowest MIDI pitch, highest MIDI pitch, formant scale)


@dataclass(frozen=True)
class Voice:
    """A singer: range, vowel formants, pulse-train brightness, breath, vibrato, glides and fricatives.

    Attributes:
        lowest: MIDI pitch of the lowest note sung.
        highest: MIDI pitch of the highest note sung.
        formant_scale: factor on the tenor formant frequencies (:data:`FORMANT_FREQS`).
        brightness: brightness of the glottal-like pulse train.
        breath: level of breath noise mixed into the source (1 = the pulse train's level).
        vibrato_rate: Hz.
        vibrato_depth: semitones; reached 0.25 s after ``vibrato_delay``.
        vibrato_delay: s after each onset before the vibrato starts.
        glide: s; the pitch glides from note to note over this long around each onset.
        attack: s; length of a syllable's attack.
        release: s; time constant of a syllable's fade after it ends.
        fricative_chance: probability that a syllable has a fricative hiss.
        fricative_cutoff: Hz; the hiss is high-passed here.
    """

    lowest: int
    highest: int
    formant_scale: float
    brightness: float
    breath: float
    vibrato_rate: float
    vibrato_depth: float
    vibrato_delay: float
    glide: float
    attack: float
    release: float
    fricative_chance: float
    fricative_cutoff: float


def draw_voice(rng: np.random.Generator) -> tuple[str, Voice]:
    """A voice type (soprano, alto, tenor or baritone) and its sound."""
    name = pick(rng, tuple(_VOICE_TYPES))
    lowest, highest, formant_scale = _VOICE_TYPES[name]
    u = _drawer(rng)
    return name, Voice(lowest=lowest, highest=highest, formant_scale=formant_scale * u(0.96, 1.04),
                       brightness=u(0.86, 0.93), breath=u(0.01, 0.05), vibrato_rate=u(4.5, 6.5),
                       vibrato_depth=u(0.3, 0.6), vibrato_delay=u(0.12, 0.3), glide=u(0.03, 0.08),
                       attack=u(0.02, 0.06), release=u(0.06, 0.12), fricative_chance=u(0.15, 0.35),
                       fricative_cutoff=u(2500, 5000))
