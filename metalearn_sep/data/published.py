"""Published MUSDB18 test scores, the rows an evaluation is printed next to.

Every figure is an SDR in dB as SiSEC 2018 scores it: BSS Eval v4 (museval) on the 50
MUSDB18 test songs, median over 1 s frames per song, then median over songs (Stöter,
Liutkus & Ito, "The 2018 Signal Separation Evaluation Campaign", LVA/ICA 2018). The
three rows are those of Meta-TasNet's results table (Samuel, Ganeshan & Naradowsky,
ICASSP 2020, arXiv 2002.07016), as the authors reproduce it in their repository
(``pfnet-research/meta-tasnet``, ``README.md`` and ``img/results.png``). The Open-Unmix
row there equals the "UMX" row of open-unmix's own README. The paper lists per-source
figures only; :attr:`PublishedScores.mean` is the mean of the four (5.52 dB for
Meta-TasNet, the figure papers-with-code lists).
"""

from __future__ import annotations

from dataclasses import dataclass

from metalearn_sep import SOURCES


@dataclass(frozen=True)
class PublishedScores:
    """One method's published SiSEC scores.

    Attributes:
        method: the method's name, as the table names it.
        sdr: source name -> SDR in dB (median of frames, median of tracks).
        citation: the paper that introduced the method.
        figures_from: where the figures were read.
    """

    method: str
    sdr: dict[str, float]
    citation: str
    figures_from: str

    @property
    def mean(self) -> float:
        """The mean of the four sources' figures, in dB."""
        return sum(self.sdr[name] for name in SOURCES) / len(SOURCES)


_META_TASNET_TABLE = (
    "Samuel, Ganeshan & Naradowsky, ICASSP 2020, results table "
    "(as reproduced in pfnet-research/meta-tasnet README.md, img/results.png)"
)

PUBLISHED: tuple[PublishedScores, ...] = (
    PublishedScores(
        method="Meta-TasNet",
        sdr={"drums": 5.91, "bass": 5.58, "other": 4.19, "vocals": 6.40},
        citation="D. Samuel, A. Ganeshan, J. Naradowsky, Meta-learning Extractors for Music Source Separation, "
        "ICASSP 2020, arXiv:2002.07016",
        figures_from=_META_TASNET_TABLE,
    ),
    PublishedScores(
        method="Open-Unmix",
        sdr={"drums": 5.73, "bass": 5.23, "other": 4.02, "vocals": 6.32},
        citation="F.-R. Stöter, S. Uhlich, A. Liutkus, Y. Mitsufuji, Open-Unmix - A Reference Implementation "
        "for Music Source Separation, Journal of Open Source Software 4(41), 2019",
        figures_from=_META_TASNET_TABLE + "; the same as the UMX row of sigsep/open-unmix-pytorch README.md",
    ),
    PublishedScores(
        method="MMDenseLSTM",
        sdr={"drums": 6.41, "bass": 5.16, "other": 4.15, "vocals": 6.60},
        citation="N. Takahashi, N. Goswami, Y. Mitsufuji, MMDenseLSTM: An efficient combination of convolutional "
        "and recurrent neural networks for audio source separation, IWAENC 2018",
        figures_from=_META_TASNET_TABLE,
    ),
)
"""Meta-TasNet, Open-Unmix and MMDenseLSTM on the MUSDB18 test set."""
