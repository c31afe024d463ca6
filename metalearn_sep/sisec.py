"""SiSEC 2018 scores of one track in museval's JSON layout, and their aggregate over tracks.

museval (BSS Eval v4, Stöter, Liutkus & Ito, LVA/ICA 2018) scores a track in 1 s frames
and ``eval_mus_track(track, estimates, output_dir=DIR)`` writes ``DIR/<subset>/<track
name>.json``::

    {"targets": [{"name": "vocals", "frames": [{"time": 0.0, "duration": 1.0,
                  "metrics": {"SDR": ..., "SIR": ..., "SAR": ..., "ISR": ...}}, ...]}, ...],
     "museval_version": "..."}

with values rounded to 5 decimals and infinities stored as NaN. This module writes that
layout atomically (a killed run never leaves a half-written score, so a file that exists
is a finished track): :func:`score_with_museval` runs museval itself (SDR, SIR, ISR, SAR;
seconds of CPU per second of audio), :func:`write_framewise` stores SDRs computed
elsewhere (:func:`metalearn_sep.metrics.framewise_sdr`, identical SDR, hundreds of times
faster) with an ``"SDR"`` entry only. :func:`read_track_scores` reads either back as
``(source, frame)`` arrays, and :func:`aggregate` forms the SiSEC figure: the median over
frames per track (NaN frames skipped), then the median over tracks.

The worker processes that run museval in parallel import this module: it imports neither
torch nor matplotlib at import time, so they start quickly.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metalearn_sep import SOURCES
from metalearn_sep.atomic import atomic_write_text

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
"""museval's four BSS Eval v4 ratios (dB): distortion, interference, spatial image, artefacts."""

WINDOW = 1.0
"""Frame length and hop (s), museval's defaults and SiSEC's."""


def track_json_path(out_dir: str | os.PathLike, subset: str, name: str) -> Path:
    """Where museval keeps a track's scores: ``out_dir/<subset>/<name>.json``."""
    return Path(out_dir) / subset / f"{name}.json"


def import_museval() -> Any:
    """The museval module, or one sentence saying why it cannot be imported (stempeg needs ffmpeg)."""
    try:
        import museval
    except RuntimeError as err:  # stempeg raises at import when ffmpeg is missing
        raise RuntimeError(f"museval cannot be imported: {err}") from None
    return museval


def score_with_museval(track: Any, estimates: Mapping[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Score one track with museval's ``eval_mus_track`` and write its JSON atomically at ``path``.

    Args:
        track: a ``musdb`` track (museval decodes its references itself).
        estimates: source name -> ``(time, channel)`` array at the track's rate, for every
            name in :data:`SOURCES` (museval zero-pads or crops them to the references).
        path: the JSON file, e.g. :func:`track_json_path`.

    Returns:
        ``path``. museval's ``ValueError`` for a source silent over the whole track (an
        instrumental song's vocals, say) is re-raised naming the track.
    """
    museval = import_museval()
    try:
        store = museval.eval_mus_track(track, {k: np.asarray(v, dtype=np.float64) for k, v in estimates.items()})
    except ValueError as err:
        why = "a source is silent over the whole track" if "silent" in str(err) else str(err).rstrip(".")
        raise ValueError(f"museval cannot score {track.name!r}: {why}; fast scoring (--fast) takes it, with NaN "
                         "for the frames where a source is silent.") from None
    store.validate()
    return atomic_write_text(path, store.json)


def _stored(value: float) -> float:
    """A value as museval stores it: rounded to 5 decimals, NaN for an infinity."""
    return round(float(value), 5) if math.isfinite(value) else math.nan


def write_framewise(path: str | os.PathLike, sdr: np.ndarray, names: Sequence[str] = SOURCES) -> Path:
    """Write ``(source, frame)`` SDRs in museval's layout (an ``"SDR"`` entry per frame) atomically."""
    sdr = np.asarray(sdr, dtype=np.float64)
    if sdr.ndim != 2 or sdr.shape[0] != len(names):
        raise ValueError(f"sdr must be (source, frame) with {len(names)} sources, got shape {sdr.shape}.")
    targets = [
        {"name": name,
         "frames": [{"time": i * WINDOW, "duration": WINDOW, "metrics": {"SDR": _stored(v)}} for i, v in enumerate(row)]}
        for name, row in zip(names, sdr)
    ]
    return atomic_write_text(path, json.dumps({"targets": targets, "museval_version": _museval_version()}, indent=2))


def _museval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("museval")
    except PackageNotFoundError:
        return "none"


def read_track_scores(path: str | os.PathLike, metrics: Sequence[str] = ("SDR",)) -> dict[str, np.ndarray]:
    """A track's scores from museval's JSON: metric -> ``(source, frame)`` in :data:`SOURCES` order.

    Raises ``ValueError`` naming the file when it is not such a JSON, lacks a source or a
    metric, or its sources have different numbers of frames; ``FileNotFoundError`` when
    it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Scores {path} do not exist.")
    try:
        targets = {t["name"]: t["frames"] for t in json.loads(path.read_text(encoding="utf-8"))["targets"]}
        scores = {m: np.array([[float(f["metrics"][m]) for f in targets[s]] for s in SOURCES]) for m in metrics}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a museval score file with {', '.join(metrics)} for {', '.join(SOURCES)} "
                         f"({type(err).__name__}: {err}).") from None
    if any(s.ndim != 2 or s.shape[1] == 0 for s in scores.values()):
        raise ValueError(f"{path} holds no frames, or sources with different numbers of frames.")
    return scores


def is_complete(path: str | os.PathLike, metrics: Sequence[str] = ("SDR",)) -> bool:
    """``path`` holds a finished track's scores for every source and metric (so a resumed run skips it)."""
    try:
        read_track_scores(path, metrics)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Aggregate:
    """SiSEC scores of several tracks.

    Attributes:
        tracks: the tracks' names, in the order of the rows below.
        per_track: metric -> ``(track, source)``: each track's median over its frames.
        scores: metric -> ``(source,)``: the median of ``per_track`` over tracks (the
            SiSEC figure); NaN for a source no track has a valid frame of.
    """

    tracks: list[str]
    per_track: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]

    def mean(self, metric: str = "SDR") -> float:
        """The mean of the four sources' figures (dB), the "mean" column of published tables."""
        return float(np.mean(self.scores[metric]))


def sisec_aggregate(track_scores: Sequence[np.ndarray]) -> np.ndarray:
    """The SiSEC 2018 figure: median over frames (NaN skipped) per track, then median over tracks.

    Args:
        track_scores: one ``(source, frame)`` array per track, e.g. from :func:`framewise_sdr`.

    Returns:
        ``(source,)``; NaN for a source with no valid frame in any track.
    """
    if len(track_scores) == 0:
        raise ValueError("sisec_aggregate needs the scores of at least one track.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN tracks
        per_track = np.stack([np.nanmedian(np.asarray(s, dtype=np.float64), axis=-1) for s in track_scores])
        return np.nanmedian(per_track, axis=0)


def aggregate(track_scores: Mapping[str, Mapping[str, np.ndarray]]) -> Aggregate:
    """The SiSEC aggregate of ``{track name: {metric: (source, frame)}}`` (e.g. from :func:`read_track_scores`).

    Median over frames, then over tracks, as museval's ``EvalStore`` and SiSEC 2018.
    """
    if not track_scores:
        raise ValueError("aggregate needs the scores of at least one track.")
    metrics = list(next(iter(track_scores.values())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a source with no valid frame in a track
        per_track = {m: np.stack([np.nanmedian(s[m], axis=-1) for s in track_scores.values()]) for m in metrics}
    scores = {m: sisec_aggregate([s[m] for s in track_scores.values()]) for m in metrics}
    return Aggregate(list(track_scores), per_track, scores)
