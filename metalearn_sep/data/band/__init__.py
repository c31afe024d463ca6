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
train / valid / test seed ranges (:func:`split_seed`). benchmarks/bench_band.py times the
rendering.

The modules: ``common`` (constants, random streams), ``music`` (pitch, chords, time grid),
``sounds`` (each instrument's parameters, a frozen dataclass, and how a song draws them),
``parts`` (what each stem plays), ``compose`` (the song, :class:`SongInfo`), ``dsp``
(oscillators, envelopes, noise, the render window), ``instruments`` (drums and pitched
instruments), ``singing`` (the vocals), ``render`` (:func:`synthesize`) and ``dataset``.
"""

from .common import BAND_EDGE, LOOP_BARS, MAX_FREQ, MAX_PEAK
from .compose import SongInfo, song_info
from .dataset import DEFAULT_SIZES, SPLIT_OFFSETS, SPLIT_SIZE, BandDataset, split_seed
from .render import synthesize

__all__ = [
    "BAND_EDGE",
    "DEFAULT_SIZES",
    "LOOP_BARS",
    "MAX_FREQ",
    "MAX_PEAK",
    "SPLIT_OFFSETS",
    "SPLIT_SIZE",
    "BandDataset",
    "SongInfo",
    "song_info",
    "split_seed",
    "synthesize",
]
