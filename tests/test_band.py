"""The synthetic band: shapes, determinism, one song at every rate, musical character, silences, dataset, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metalearn_sep import SOURCES
from metalearn_sep.audio import resample
from metalearn_sep.data.band import (
    DEFAULT_SIZES,
    LOOP_BARS,
    MAX_PEAK,
    SPLIT_SIZE,
    BandDataset,
    song_info,
    split_seed,
    synthesize,
)
from metalearn_sep.metrics import si_sdr

RATE = 8000
SEEDS = range(12)


@pytest.fixture(scope="module")
def songs() -> dict[int, torch.Tensor]:
    """Twelve 6 s mono songs at 8 kHz (double precision for the statistics)."""
    return {s: synthesize(s, RATE, 6.0).double() for s in SEEDS}


def _power(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``(..., time)`` -> power spectrogram ``(..., bins, frames)``."""
    return torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft, dtype=x.dtype), return_complex=True).abs() ** 2


@pytest.mark.parametrize(
    "rate, duration, stereo",
    [(8000, 1.0, False), (16000, 0.5, True), (32000, 0.3, False), (44100, 0.25, True), (11025, 0.37, False),
     (22050, 0.001, True)],
)
def test_shapes_dtype_and_level(rate, duration, stereo):
    stems = synthesize(7, rate, duration, stereo)
    assert stems.shape == (len(SOURCES), 2 if stereo else 1, round(duration * rate))
    assert stems.dtype == torch.float32
    assert torch.isfinite(stems).all()
    assert stems.sum(0).abs().max() <= MAX_PEAK


def test_deterministic_and_seeds_differ():
    a = synthesize(3, RATE, 2.0, stereo=True)
    assert torch.equal(a, synthesize(3, RATE, 2.0, stereo=True))
    b = synthesize(4, RATE, 2.0, stereo=True)
    assert not torch.allclose(a, b)
    # Different songs are unrelated: their mixtures are nearly orthogonal.
    assert si_sdr(b.sum(0), a.sum(0)).max() < -10


def test_a_render_is_the_start_of_any_longer_one():
    for seed in (0, 5):
        assert torch.equal(synthesize(seed, RATE, 2.0), synthesize(seed, RATE, 5.0)[..., : 2 * RATE])


def test_every_rate_renders_the_same_song_band_limited():
    # The 32 kHz render brought down to 8 kHz is the 8 kHz render, up to the partials and
    # noise between 0.45 * 8 kHz and 4 kHz that only the 32 kHz render has.
    for seed in (0, 1):
        low = synthesize(seed, RATE, 2.0).double()
        high = resample(synthesize(seed, 32000, 2.0).double(), 32000, RATE)
        other = synthesize(seed + 100, RATE, 2.0).double()
        for j, name in enumerate(SOURCES):
            if low[j].abs().max() == 0:
                continue
            assert si_sdr(high[j, 0], low[j, 0]) > 15, (seed, name)
            assert si_sdr(other[j, 0], low[j, 0]) < 0, (seed, name)


def test_nothing_above_the_band_edge():
    # Partials above BAND_EDGE * rate are dropped, so the top of the band (where partials just
    # above Nyquist would fold to) is empty; the drums' noise bursts, band-limited before
    # their 1 ms onsets shape them, leak a little (about -45 dB).
    for seed in (2, 3):
        stems = synthesize(seed, RATE, 4.0).double()
        spectrum = _power(stems[:, 0], 1024).sum(-1)
        freqs = torch.arange(spectrum.shape[-1]) * RATE / 1024
        top = spectrum[:, freqs > 0.46 * RATE].sum(-1) / spectrum.sum(-1).clamp(min=1e-30)
        assert top[0] < 1e-4 and (top[1:] < 1e-5).all(), (seed, top)


def test_no_stem_is_buried(songs):
    shares = []
    for stems in songs.values():
        energy = stems.pow(2).sum((-1, -2))
        shares.append(10 * torch.log10(energy / energy.sum()))
    shares = torch.stack(shares)
    present = torch.isfinite(shares)
    mean = torch.stack([shares[present[:, j], j].mean() for j in range(len(SOURCES))])
    # No stem is buried: each holds on average between 1/16 and 1/2 of the mixture's energy.
    assert (mean > -12).all() and (mean < -3).all(), mean


def test_bass_is_low_with_harmonics_above_400_hz(songs):
    above = []
    for stems in songs.values():
        power = _power(stems[1, 0], 512).sum(-1)
        freqs = torch.arange(len(power)) * RATE / 512
        share = (power[freqs >= 400].sum() / power.sum()).item()
        assert share < 0.25
        above.append(share)
    assert min(above) > 1e-3 and np.mean(above) > 0.01


def test_drums_are_the_noise_like_stem(songs):
    # Between 1 and 3.5 kHz the drums are noise (snare, hats, crash): a flat spectrum in
    # every frame; the other stems are harmonic there: energy only at their partials.
    for seed, stems in songs.items():
        power = _power(stems[:, 0], 512)
        freqs = torch.arange(power.shape[1]) * RATE / 512
        band = power[:, (freqs > 1000) & (freqs < 3500)]
        energy = band.sum(1)
        flatness = torch.exp(torch.log(band + 1e-30).mean(1)) / band.mean(1).clamp(min=1e-30)
        for j, name in enumerate(SOURCES):
            active = energy[j] > energy[j].max() * 1e-3
            if not active.any():
                continue
            mean = flatness[j][active].mean().item()
            assert (mean > 0.3) if name == "drums" else (mean < 0.3), (seed, name, mean)


def test_vocals_sing_the_melody_with_vibrato():
    # The fundamental of a long sung note, isolated by an FFT band-pass, has the note's pitch
    # and an instantaneous frequency that oscillates at 4-7 Hz by a fraction of a semitone.
    checked = 0
    for seed in range(8):
        info = song_info(seed)
        notes = [n for n in info.melody if n[1] >= 0.7 and n[0] + n[1] < 6.0]
        if not notes:
            continue
        start, length, pitch, _vowel = notes[0]
        vocals = synthesize(seed, RATE, 6.0)[3, 0].double().numpy()
        segment = vocals[int((start + 0.3) * RATE) : int((start + length - 0.05) * RATE)]
        f0 = 440 * 2 ** ((pitch - 69) / 12)
        spectrum = np.fft.fft(segment)
        freqs = np.fft.fftfreq(len(segment), 1 / RATE)
        analytic = np.fft.ifft(spectrum * 2 * ((freqs > 0.75 * f0) & (freqs < 1.25 * f0)))
        inst = np.diff(np.unwrap(np.angle(analytic))) * RATE / (2 * np.pi)
        semitones = 12 * np.log2(inst[200:-200] / f0)  # drop the band-pass's edge effects
        assert abs(np.median(semitones)) < 0.3, (seed, np.median(semitones))
        assert semitones.std() > 0.1, seed
        padded = 16 * len(semitones)
        modulation = np.abs(np.fft.rfft((semitones - semitones.mean()) * np.hanning(len(semitones)), padded))
        rate = np.fft.rfftfreq(padded, 1 / RATE)[np.argmax(modulation)]
        assert 4.0 <= rate <= 7.0, (seed, rate)
        checked += 1
    assert checked >= 3


def test_silent_bars_are_exact_zeros_and_only_there(songs):
    silent_seen = 0
    for seed, stems in songs.items():
        info = song_info(seed)
        bars = int(6.0 // info.bar_seconds)
        for j, name in enumerate(SOURCES):
            for b in range(bars):
                a, z = math.ceil(b * info.bar_seconds * RATE), math.ceil((b + 1) * info.bar_seconds * RATE)
                quiet = bool(stems[j, :, a:z].abs().max() == 0)
                assert quiet == (b % LOOP_BARS in info.silent_bars[name]), (seed, name, b)
                silent_seen += quiet
    assert silent_seen > 0


def test_stereo_is_panned_and_mono_is_its_downmix():
    stereo = synthesize(6, RATE, 2.0, stereo=True)
    mono = synthesize(6, RATE, 2.0, stereo=False)
    torch.testing.assert_close(mono, stereo.mean(1, keepdim=True), atol=1e-6, rtol=0)
    for j, name in enumerate(SOURCES):
        if stereo[j].abs().max() > 0:
            assert (stereo[j, 0] - stereo[j, 1]).abs().max() > 1e-3 * stereo[j].abs().max(), name


def test_song_info_describes_varied_songs():
    info = song_info(9)
    assert info == song_info(9)
    assert 84 <= info.tempo <= 140 and info.bar_seconds == pytest.approx(240 / info.tempo)
    assert len(info.progression) == LOOP_BARS
    for field in (info.instruments, info.patterns, info.silent_bars, info.gains_db, info.pans):
        assert tuple(field) == SOURCES
    assert all(0 <= n[0] < info.loop_seconds and n[1] > 0 for n in info.melody)
    variants = {name: {song_info(s).instruments[name] for s in range(40)} for name in SOURCES}
    assert all(len(v) >= 3 for v in variants.values()), variants
    assert len({song_info(s).key for s in range(40)}) >= 10


def test_dataset_items_are_crops_of_songs():
    valid = BandDataset("valid", sample_rate=RATE, segment=1.0, song_duration=3.0)
    mixture, stems = valid[2]
    assert mixture.shape == (1, RATE) and stems.shape == (len(SOURCES), 1, RATE)
    assert torch.equal(mixture, stems.sum(0))
    assert torch.equal(stems, synthesize(split_seed("valid", 2), RATE, 3.0)[..., :RATE])

    train = BandDataset("train", sample_rate=RATE, segment=0.5, song_duration=2.0, stereo=True)
    starts = [train.crop_start(i) for i in range(8)]
    assert len(set(starts)) > 1 and all(0 <= s <= RATE * 3 // 2 for s in starts)
    mixture, stems = train[5]
    song = synthesize(split_seed("train", 5), RATE, 2.0, stereo=True)
    assert torch.equal(stems, song[..., starts[5] : starts[5] + RATE // 2])
    assert torch.equal(mixture, stems.sum(0))
    again = BandDataset("train", sample_rate=RATE, segment=0.5, song_duration=2.0, stereo=True)[5]
    assert torch.equal(again[1], stems)

    whole = BandDataset("test", sample_rate=RATE, segment=None, song_duration=1.5, size=2)
    assert len(whole) == 2 and whole[-1][1].shape == (len(SOURCES), 1, 12000)
    batch = next(iter(torch.utils.data.DataLoader(whole, batch_size=2)))
    assert batch[0].shape == (2, 1, 12000) and batch[1].shape == (2, len(SOURCES), 1, 12000)


def test_splits_are_disjoint():
    firsts = {s: split_seed(s, 0) for s in ("train", "valid", "test")}
    lasts = {s: split_seed(s, SPLIT_SIZE - 1) for s in ("train", "valid", "test")}
    ranges = sorted((firsts[s], lasts[s]) for s in firsts)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
    assert len(BandDataset()) == DEFAULT_SIZES["train"] == 100_000
    assert len(BandDataset("valid")) == len(BandDataset("test")) == 16
    assert BandDataset().random_crop and not BandDataset("valid").random_crop


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: synthesize(-1, RATE, 1.0), ValueError, "seed"),
        (lambda: synthesize(1.5, RATE, 1.0), ValueError, "seed"),
        (lambda: synthesize(0, 0, 1.0), ValueError, "sample_rate"),
        (lambda: synthesize(0, 8000.5, 1.0), ValueError, "sample_rate"),
        (lambda: synthesize(0, RATE, 0.0), ValueError, "duration"),
        (lambda: synthesize(0, RATE, float("nan")), ValueError, "duration"),
        (lambda: synthesize(0, RATE, 1e-5), ValueError, "one sample"),
        (lambda: song_info(-3), ValueError, "seed"),
        (lambda: BandDataset("dev"), ValueError, "split"),
        (lambda: BandDataset(sample_rate=-8000), ValueError, "sample_rate"),
        (lambda: BandDataset(segment=0), ValueError, "segment"),
        (lambda: BandDataset(segment=5.0, song_duration=4.0), ValueError, "longer than song_duration"),
        (lambda: BandDataset(song_duration=-1.0), ValueError, "song_duration"),
        (lambda: BandDataset(size=0), ValueError, "size"),
        (lambda: BandDataset(size=SPLIT_SIZE + 1), ValueError, "size"),
        (lambda: BandDataset("valid")[16], IndexError, "out of range"),
        (lambda: BandDataset("valid")[-17], IndexError, "out of range"),
        (lambda: split_seed("train", SPLIT_SIZE), IndexError, "index"),
        (lambda: split_seed("eval", 0), ValueError, "split"),
    ],
)
def test_bad_input_fails_early_with_a_clear_message(call, error, words):
    with pytest.raises(error, match=words):
        call()
