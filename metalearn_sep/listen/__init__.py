"""Listening: level-preserving players, a mixer, side-by-side comparisons and a blind ABX test.

* :class:`StemPlayer` (:mod:`.player`): one excerpt's mixture, references and estimates, with
  spectrograms and SI-SDR.
* :class:`Mixer` (:mod:`.mixer`): mute, solo, gain and reference/estimate per stem, plus the
  residual, mixed in the kernel.
* :class:`Compare` (:mod:`.compare`): several systems as columns, sources and residual as
  rows, the best cell per row marked.
* :class:`ABX` (:mod:`.abx`): a blind, loudness-matched (:mod:`.loudness`) test with its
  binomial p-value.
* :class:`Interpolation` (:mod:`.interpolation`): a slider between two instruments'
  embeddings of a generated Meta-TasNet.

All are core ipywidgets with a static HTML copy for front ends without a kernel, and none
normalises a clip on its own: :mod:`.clips` says how clips are embedded and shown.
"""

from .abx import ABX, Trial, binomial_p_value
from .clips import (
    MAX_BYTES_PER_SECOND,
    MP3_RATES,
    WIDGET_VIEW_MIME,
    EncodedAudio,
    common_gain,
    encode,
    mp3_supported,
    play,
)
from .compare import Compare, residual_db
from .interpolation import Interpolation, interpolated_extractor
from .loudness import integrated_loudness, match_loudness
from .mixer import Mixer
from .player import StemPlayer, si_sdr_scores

__all__ = [
    "ABX", "MAX_BYTES_PER_SECOND", "MP3_RATES", "WIDGET_VIEW_MIME", "Compare", "EncodedAudio", "Interpolation",
    "Mixer", "StemPlayer", "Trial", "binomial_p_value", "common_gain", "encode", "integrated_loudness",
    "interpolated_extractor", "match_loudness", "mp3_supported", "play", "residual_db", "si_sdr_scores",
]
