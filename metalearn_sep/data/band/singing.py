"""Rendering the vocals: a glottal-like pulse train with glides, vibrato and breath, through vowel formants.

Pitch, phase and loudness are computed for a whole phrase (they are cheap); the formants
are applied in the short-time Fourier domain to the frames that touch the render window
only, so a crop costs what its length costs.
"""

from __future__ import annotations

import math

import numpy as np

from .dsp import TWO_PI, Canvas, bandpass, dsf, envelope, highpass, sin, smoothstep
from .music import midi_to_hz
from .parts import Part, SungNote
from .sounds import FORMANT_FREQS, FORMANT_LEVELS_DB, FORMANT_WIDTHS, Voice


class _Phrase:
    """One occurrence of a sung phrase, sampled at ``rate``: phrase sample ``i`` is song sample ``first + i``.

    Attributes:
        notes: the syllables.
        onsets: ``(notes,)`` s from the song's start; lengths: ``(notes,)`` s.
        t: ``(samples,)`` float64, s from the song's start, of each phrase sample.
    """

    def __init__(self, notes: tuple[SungNote, ...], onsets: np.ndarray, lengths: np.ndarray, first: int, end: int,
                 rate: int) -> None:
        self.notes, self.onsets, self.lengths, self.first, self.rate = notes, onsets, lengths, first, rate
        self.t = np.arange(first, end) / rate

    def span(self, start: float, stop: float) -> slice:
        """The phrase samples whose times lie in ``[start, stop)`` s."""
        return slice(max(0, math.ceil(start * self.rate) - self.first), max(0, math.ceil(stop * self.rate) - self.first))

    def note_at(self, times: np.ndarray) -> np.ndarray:
        """The index of the syllable sung at each of ``times`` (s; the first one before it starts)."""
        return np.clip(np.searchsorted(self.onsets, times, side="right") - 1, 0, len(self.notes) - 1)


def _fundamental(phrase: _Phrase, voice: Voice) -> tuple[np.ndarray, np.ndarray]:
    """``f0`` (Hz) and its phase in cycles, per phrase sample: notes joined by glides, with delayed vibrato and drift."""
    t, onsets = phrase.t, phrase.onsets
    pitches = np.array([note.pitch for note in phrase.notes])
    pitch = np.full(len(t), pitches[0])
    for i in range(1, len(pitches)):  # glide from note to note over voice.glide s around each onset
        glide = phrase.span(onsets[i] - voice.glide / 2, onsets[i] + voice.glide / 2)
        pitch[glide] += (pitches[i] - pitches[i - 1]) * smoothstep((t[glide] - onsets[i] + voice.glide / 2) / voice.glide)
        pitch[glide.stop :] += pitches[i] - pitches[i - 1]
    current = phrase.note_at(t)
    depth = voice.vibrato_depth * smoothstep((t - onsets[current] - voice.vibrato_delay) / 0.25)
    f0 = midi_to_hz(pitch + depth * sin(voice.vibrato_rate * t) + 0.06 * sin(0.7 * t + 0.2))
    # phase since the onset (trapezoidal rule), so every rate samples the same waveform
    cycles = f0[0] * (t[0] - onsets[0]) + np.concatenate([[0.0], np.cumsum((f0[1:] + f0[:-1]) / 2)]) / phrase.rate
    return f0, cycles


def _loudness(phrase: _Phrase, voice: Voice) -> np.ndarray:
    """``(samples,)`` float32: each syllable's envelope times its velocity; where they overlap, the louder wins."""
    env = np.zeros(len(phrase.t), np.float32)
    for onset, length, note in zip(phrase.onsets, phrase.lengths, phrase.notes):
        sung = phrase.span(onset, onset + length + 6 * voice.release)
        note_env = note.velocity * envelope((phrase.t[sung] - onset).astype(np.float32), voice.attack, length, voice.release)
        np.maximum(env[sung], note_env, out=env[sung])
    return env


def _hiss(phrase: _Phrase) -> np.ndarray:
    """``(samples,)`` float32: the level of fricative noise, a 25 ms burst 50 ms into the syllables that have one."""
    hiss = np.zeros(len(phrase.t), np.float32)
    for onset, note in zip(phrase.onsets, phrase.notes):
        if note.fricative:
            burst = phrase.span(onset, onset + 0.15)
            hiss[burst] += np.exp(-(((phrase.t[burst] - onset - 0.05) / 0.025) ** 2))
    return hiss


def _formant_tracks(phrase: _Phrase, voice: Voice, hop: int) -> np.ndarray:
    """``(frames, 15)``: per STFT frame, the five formants' centre (Hz), bandwidth (Hz) and gain (linear).

    Frame ``k`` is centred on phrase sample ``k * hop`` and takes the vowel of the syllable
    sung there, smoothed by a 50 ms moving average so that vowels glide into each other.
    """
    count = len(phrase.t) // hop + 1
    frame_times = (phrase.first + np.arange(count) * hop) / phrase.rate
    vowel = np.array([note.vowel for note in phrase.notes])[phrase.note_at(frame_times)]
    smooth = max(1, round(0.05 * phrase.rate / hop))  # frames averaged

    def track(table: np.ndarray) -> np.ndarray:  # (count, 5) moving average of the syllables' values
        rows = np.pad(table[vowel], ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        return np.stack([np.convolve(rows[:, i], np.ones(smooth) / smooth, mode="valid") for i in range(5)], axis=1)

    return np.concatenate([track(FORMANT_FREQS * voice.formant_scale), track(FORMANT_WIDTHS),
                           10 ** (track(FORMANT_LEVELS_DB) / 20)], 1)


def _formant_envelope(freqs: np.ndarray, centres: np.ndarray, widths: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``(frames, bins)`` magnitude: a sum of Lorentzian resonances ``A / sqrt(1 + ((f - F)/(B/2))²)`` and a floor.

    ``freqs`` is ``(bins,)`` Hz; ``centres`` F, ``widths`` B (Hz) and ``gains`` A are ``(frames, formants)``.
    """
    x = (freqs[None, :, None] - centres[:, None, :]) / (widths[:, None, :] / 2)
    return np.sum(gains[:, None, :] / np.sqrt(1 + x * x), axis=-1) + np.float32(0.003)


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


def _sing(canvas: Canvas, voice: Voice, notes: tuple[SungNote, ...], offset: float) -> tuple[int, np.ndarray] | None:
    """One phrase, ``offset`` s later than written, where it meets the window: its first sample and mono samples."""
    onsets = np.array([note.start for note in notes]) + offset
    lengths = np.array([note.length for note in notes])
    first = math.ceil(onsets[0] * canvas.rate)
    end = math.ceil((onsets[-1] + lengths[-1] + 6 * voice.release) * canvas.rate)
    if first >= canvas.end or end <= canvas.first:
        return None
    phrase = _Phrase(notes, onsets, lengths, first, end, canvas.rate)
    f0, cycles = _fundamental(phrase, voice)
    loudness = _loudness(phrase, voice)

    # Formants, applied to the frames of a short-time Fourier transform (Hann window of four
    # hops, 32 ms; frame k centred on phrase sample k * hop). Only the frames that touch the
    # window are computed, from the source samples they cover.
    hop = max(4, round(0.008 * canvas.rate))
    win = 4 * hop
    tracks = _formant_tracks(phrase, voice, hop)
    out_start, out_end = max(first, canvas.first) - first, min(end, canvas.end) - first  # the window, in phrase samples
    first_frame = max(0, (out_start - 2 * hop) // hop + 1)
    last_frame = min(len(tracks) - 1, -(-(out_end + 2 * hop) // hop) - 1)
    covered_start, covered_end = (first_frame - 2) * hop, (last_frame + 2) * hop  # the samples those frames cover
    lo, hi = max(0, covered_start), min(len(phrase.t), covered_end)  # ... that the phrase has
    breath = canvas.texture(canvas.noise("breath", bandpass(2500.0, 1.5)), first + lo, hi - lo)
    source = np.zeros(covered_end - covered_start, np.float32)
    source[lo - covered_start : hi - covered_start] = (
        dsf(cycles[lo:hi], f0[lo:hi], voice.brightness, canvas.cap) + voice.breath * breath
    ) * loudness[lo:hi]
    window = (0.5 - 0.5 * np.cos(TWO_PI * np.arange(win) / win)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(source, win)[::hop] * window
    rows = tracks[first_frame : last_frame + 1].astype(np.float32)
    new = np.concatenate([[True], np.any(rows[1:] != rows[:-1], axis=1)])  # steady vowels repeat a state
    freqs = (np.arange(win // 2 + 1) * canvas.rate / win).astype(np.float32)
    gain = _formant_envelope(freqs, *np.split(rows[new], 3, axis=1))[np.cumsum(new) - 1]
    voiced = _overlap_add(np.fft.irfft(np.fft.rfft(frames) * gain, win) * window, hop, first_frame)
    norm = _overlap_add(np.broadcast_to(window * window, frames.shape), hop, first_frame)
    kept = slice(out_start - covered_start, out_end - covered_start)  # the window, in covered samples
    voiced = voiced[kept] / norm[kept]

    fricative = canvas.noise("fricative", highpass(voice.fricative_cutoff))
    fricative = canvas.texture(fricative, first + out_start, out_end - out_start)
    return first + out_start, voiced + 0.35 * fricative * _hiss(phrase)[out_start:out_end]


def render_vocals(canvas: Canvas, part: Part, out: np.ndarray) -> None:
    """Add the sung phrases, repeated every pass, to the stem window ``out``."""
    for notes, pan in part.events:
        for offset in canvas.occurrences(0.0):
            sung = _sing(canvas, part.sound, notes, offset)
            if sung is not None:
                canvas.add(out, sung[0], part.gain * sung[1], pan)
