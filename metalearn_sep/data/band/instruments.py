"""Rendering the drums and the pitched instruments (bass, organ, pad, electric piano, pluck, mallet).

A renderer writes its part's events, repeated every pass of the arrangement, into the
window of one stem, ``out`` of shape ``(channels, samples)`` (see :class:`~.dsp.Canvas`).
"""

from __future__ import annotations

import math

import numpy as np

from .dsp import Canvas, bandpass, dsf, envelope, highpass, sin, smoothstep
from .music import midi_to_hz
from .parts import Part
from .sounds import (
    ORGAN_HARMONICS,
    BassSound,
    DrumKit,
    ElectricPianoSound,
    MalletSound,
    OrganSound,
    PadSound,
    PluckSound,
)

# ---- drums


def _piece_decay(kit: DrumKit, piece: str) -> float:
    """Time constant (s) of a drum piece's decay."""
    return {"kick": kit.kick_decay, "snare": kit.snare_decay, "ghost": kit.snare_decay, "hat": kit.hat_decay,
            "open": kit.open_hat_decay, "crash": kit.crash_decay, "tom_hi": 0.15, "tom_lo": 0.2}[piece]


def _drum_hit(canvas: Canvas, kit: DrumKit, piece: str, start: float) -> tuple[int, np.ndarray] | None:
    """One hit of ``piece`` at ``start`` s where it meets the window: its first sample and mono float32 samples."""
    decay = _piece_decay(kit, piece)
    span = canvas.times(start, min(6 * decay, 4.0))
    if span is None:
        return None
    first, t = span  # t: s since the hit
    t32 = t.astype(np.float32)
    onset = smoothstep(t32 / 0.001)

    def tone(freq: float, cycles: np.ndarray) -> np.ndarray:  # a sine whose highest frequency is freq, if it fits
        return sin(cycles) if freq <= canvas.cap else np.zeros(len(t), np.float32)

    def snare_noise() -> np.ndarray:
        return canvas.texture(canvas.noise("snare", bandpass(kit.snare_noise_centre, 1.5)), first, len(t))

    def hat_noise() -> np.ndarray:
        return canvas.texture(canvas.noise("hat", highpass(kit.hat_cutoff)), first, len(t))

    if piece == "kick":  # a falling sine, with 2nd and 3rd harmonics for drive, and a click
        high, low, bend = kit.kick_start_freq, kit.kick_end_freq, kit.kick_bend
        cycles = low * t + (high - low) * bend * (1 - np.exp(-t / bend))
        y = tone(high, cycles) + sum(level * tone(k * high, k * cycles) for k, level in zip((2, 3), kit.kick_drive))
        return first, onset * (y * np.exp(-t32 / decay) + kit.kick_click * hat_noise() * np.exp(-t32 / 0.004))
    if piece in ("snare", "ghost"):
        noise = snare_noise()
        if kit.clap:  # three quick bursts, then the tail
            since = [t32 - 0.011 * j for j in range(3)]
            bursts = sum(smoothstep(d / 0.001) * np.exp(-np.maximum(d, 0) / 0.006) for d in since)
            return first, noise * (0.8 * bursts + onset * np.exp(-t32 / decay))
        freq = kit.snare_body_freq
        body = tone(freq, freq * t) + 0.5 * tone(1.47 * freq, 1.47 * freq * t)
        body *= np.exp(-t32 / kit.snare_body_decay)
        mix = kit.snare_body_mix
        return first, onset * (mix * body + (1 - mix) * 1.5 * noise * np.exp(-t32 / decay))
    if piece in ("hat", "open"):
        return first, onset * hat_noise() * np.exp(-t32 / decay)
    if piece == "crash":
        crash = canvas.texture(canvas.noise("crash", highpass(kit.crash_cutoff, 1)), first, len(t))
        return first, onset * crash * np.exp(-t32 / decay)
    freq = kit.tom_freq * (1.0 if piece == "tom_lo" else 1.5)  # a sine falling from 1.5 times freq to freq, and noise
    y = tone(1.5 * freq, freq * t + 0.5 * freq * 0.03 * (1 - np.exp(-t / 0.03))) * np.exp(-t32 / decay)
    return first, onset * (y + 0.15 * snare_noise() * np.exp(-t32 / 0.04))


def render_drums(canvas: Canvas, part: Part, out: np.ndarray) -> None:
    """Add the drum part's hits to the stem window ``out``."""
    for start, piece, velocity, pan in part.events:
        for when in canvas.occurrences(start):
            hit = _drum_hit(canvas, part.sound, piece, when)
            if hit is not None:
                canvas.add(out, hit[0], part.gain * velocity * hit[1], pan)


# ---- pitched instruments: (canvas, sound, t: s since the onset, float64, freq: Hz, length: s) -> float32 samples


def _bass(canvas: Canvas, sound: BassSound, t: np.ndarray, freq: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    brightness = sound.brightness(t32)
    y = dsf(freq * t, freq, brightness, canvas.cap)
    if sound.detune:
        y = 0.5 * (y + dsf(freq * (1 + sound.detune) * t + 0.3, freq * (1 + sound.detune), brightness, canvas.cap))
    if sound.sine and freq <= canvas.cap:
        y = y + sound.sine * sin(freq * t)
    return y * envelope(t32, 0.005, length, sound.release, sound.decay, sound.sustain)


def _organ(canvas: Canvas, sound: OrganSound, t: np.ndarray, freq: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    y = np.zeros(len(t), np.float32)
    for harmonic, level in zip(ORGAN_HARMONICS, sound.drawbars):
        if level > 0 and harmonic * freq <= canvas.cap:
            y += level * sin(harmonic * freq * t + 0.1 * harmonic)
    if sound.percussion and 3 * freq <= canvas.cap:
        y += sound.percussion * sin(3 * freq * t) * np.exp(-t32 / 0.2)
    y *= (1 + sound.leslie_depth * sin(sound.leslie_rate * t)) / math.sqrt(sum(level * level for level in sound.drawbars))
    return y * envelope(t32, sound.attack, length, sound.release)


def _pad(canvas: Canvas, sound: PadSound, t: np.ndarray, freq: float, length: float) -> np.ndarray:
    """``(2, samples)``: the two detuned tones, to be panned apart."""
    t32 = t.astype(np.float32)
    brightness = sound.brightness + sound.sweep * 0.2 * sin(0.25 * t)
    env = envelope(t32, sound.attack, length, sound.release)
    detuned = (freq * (1 - sound.detune), freq * (1 + sound.detune))
    return np.stack([dsf(f * t + 0.37 * i, f, brightness, canvas.cap) * env for i, f in enumerate(detuned)])


def _electric_piano(canvas: Canvas, sound: ElectricPianoSound, t: np.ndarray, freq: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    brightness = sound.brightness(t32)
    y = dsf(freq * t, freq, brightness, canvas.cap)
    if sound.tine_ratio * freq <= canvas.cap:
        y += sound.tine * sin(sound.tine_ratio * freq * t) * np.exp(-t32 / sound.tine_decay)
    if sound.tremolo:
        y *= 1 + sound.tremolo * sin(5.0 * t)
    return y * envelope(t32, 0.002, length, sound.release, sound.decay, 0.0)


def _pluck(canvas: Canvas, sound: PluckSound, t: np.ndarray, freq: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    brightness = sound.brightness(t32)
    return dsf(freq * t, freq, brightness, canvas.cap) * envelope(t32, 0.001, length, sound.release, sound.decay, 0.0)


def _mallet(canvas: Canvas, sound: MalletSound, t: np.ndarray, freq: float, length: float) -> np.ndarray:
    t32 = t.astype(np.float32)
    y = np.zeros(len(t), np.float32)
    for i, (ratio, level) in enumerate(zip(sound.partial_ratios, sound.partial_levels)):
        if ratio * freq <= canvas.cap:
            y += level * sin(ratio * freq * t) * np.exp(-t32 / (sound.decay / (1 + 2 * i)))
    return y * envelope(t32, 0.001, length, sound.release)


# instrument -> (renderer, how long a note rings on after its length, in release time constants)
_NOTE_RENDERERS = {"bass": (_bass, 8.0), "organ": (_organ, 5.0), "pad": (_pad, 5.0), "electric piano": (_electric_piano, 6.0),
                   "pluck": (_pluck, 6.0), "mallet": (_mallet, 5.0)}
_DYING = ("electric piano", "pluck", "mallet")  # decay to silence: a note ends after 7 decay time constants at most


def render_notes(canvas: Canvas, part: Part, out: np.ndarray) -> None:
    """Add the notes of a pitched part to the stem window ``out``."""
    render, tail = _NOTE_RENDERERS[part.instrument]
    sound = part.sound
    for start, length, pitch, velocity, pan in part.events:
        tail_s = tail * sound.release
        if part.instrument in _DYING:
            tail_s = min(tail_s + length, 7 * sound.decay) - length
        for when in canvas.occurrences(start):
            span = canvas.times(when, length + tail_s)
            if span is None:
                continue
            first, t = span
            y = part.gain * velocity * render(canvas, sound, t, float(midi_to_hz(pitch)), length)
            if y.ndim == 2:  # a pad's two detuned tones, spread apart
                canvas.add(out, first, y[0], pan - sound.spread)
                canvas.add(out, first, y[1], pan + sound.spread)
            else:
                canvas.add(out, first, y, pan)
