"""SiSEC-style scoring of MUSDB18 with museval: ``python -m metalearn_sep evaluate CHECKPOINT --musdb PATH``.

:func:`evaluate_musdb` scores a checkpoint the way SiSEC 2018 (Stöter, Liutkus & Ito,
LVA/ICA 2018) and the Meta-TasNet paper score MUSDB18:

1. each whole track of the split, from the track's own (mastered) mixture file, is
   separated at 44.1 kHz stereo (:func:`metalearn_sep.separate.separate`);
2. the four estimates ``ŝ_j`` (``(time, channel)`` arrays) are scored against the
   references museval reads itself, in 1 s frames, with BSS Eval v4 through museval's
   ``eval_mus_track`` (SDR, SIR, ISR, SAR), or with ``fast=True`` through
   :func:`metalearn_sep.metrics.framewise_sdr` (the same SDR to 0.01 dB, SDR only,
   hundreds of times faster); each track's scores go to ``out_dir/<subset>/<track>.json``
   in museval's layout (:mod:`metalearn_sep.sisec`), written atomically;
3. the aggregate is the median over frames, then over tracks, per source and metric,
   with the mean of the four sources' figures; it is printed and saved as
   ``report.md`` and ``report.csv`` beside the published rows of
   :data:`metalearn_sep.data.published.PUBLISHED`, with ``boxplot.png`` (one box per
   source over the tracks' medians).

Resuming. A track whose JSON exists and is complete is not separated or scored again,
so an interrupted evaluation continues where it stopped. ``out_dir/evaluation.json``
records what the folder scores (checkpoint digest, split, metric, protocol, layout); a
run with other settings is refused rather than mixed with it.

Parallelism. museval costs from about 1 to several seconds of CPU per second of audio,
depending on the machine: hours for the 3.5 h of the 50 test songs on one core. With
``workers = K > 1`` the main process separates (on the GPU when there is one) while K - 1
processes run museval on the tracks already separated, never more than K - 1 separated
tracks held at a time, which bounds memory; K = 1 runs everything in turn.
``fast=True`` scores in the main process (milliseconds a track).

Every input is checked before anything is written: the checkpoint, the MUSDB18 folder
and its layout (:class:`~metalearn_sep.data.musdb.MusdbDataset`), and that each track's
stems and mixture have the same length.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from . import SOURCES, sisec
from .atomic import atomic_write_text
from .checkpoint import file_sha256, load_model
from .checks import check_int
from .config import default_device
from .data.musdb import SPLITS, MusdbDataset
from .evaluate_report import write_report
from .metrics import framewise_sdr
from .progress import progress_bar
from .models.separator import Separator
from .separate import PROTOCOLS, separate

RATE = 44100
"""MUSDB18's rate: tracks are separated and scored at it."""

MANIFEST = "evaluation.json"
"""The file that records what an output folder scores."""


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate_musdb` did.

    Attributes:
        out_dir: the folder of the per-track JSONs and the report.
        result: the SiSEC aggregate of the evaluated tracks (:class:`metalearn_sep.sisec.Aggregate`).
        scored: the tracks scored by this call (the others were complete already).
        files: ``"markdown"``, ``"csv"``, ``"boxplot"`` -> the report's paths.
        summary: the printed report: the SDR table beside the published rows.
    """

    out_dir: Path
    result: sisec.Aggregate
    scored: list[str]
    files: dict[str, Path]
    summary: str


def default_out_dir(checkpoint: str | os.PathLike, split: str = "test", fast: bool = False,
                    protocol: str = "course") -> Path:
    """``<checkpoint stem>-musdb-<split>[-fast][-original]``, beside the checkpoint."""
    checkpoint = Path(checkpoint)
    suffix = "-fast" * fast + ("" if protocol == "course" else f"-{protocol}")
    return checkpoint.with_name(f"{checkpoint.stem}-musdb-{split}{suffix}")


def evaluate_musdb(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike | None = None,
    split: str = "test",
    tracks: int | None = None,
    workers: int = 1,
    out_dir: str | os.PathLike | None = None,
    fast: bool = False,
    protocol: str = "course",
    is_wav: bool | None = None,
    device: str | None = None,
    progress: bool = True,
    amp: bool | None = None,
) -> Evaluation:
    """Score ``checkpoint`` on MUSDB18 as SiSEC 2018 does; see the module docstring.

    Args:
        checkpoint: a checkpoint :func:`metalearn_sep.checkpoint.load_model` reads.
        root: the MUSDB18 or MUSDB18-HQ folder (``None``: ``$MUSDB_PATH``).
        split: ``"test"`` (the 50 songs of published figures), ``"train"`` or ``"valid"``.
        tracks: score the first ``tracks`` tracks (sorted by name); ``None``: all.
        workers: processes in all (K): K - 1 run museval while the main one separates.
        out_dir: the output folder; ``None``: :func:`default_out_dir`.
        fast: SDR only, from :func:`~metalearn_sep.metrics.framewise_sdr`, instead of museval.
        protocol: ``"course"`` or ``"original"`` (:func:`~metalearn_sep.separate.separate`).
        is_wav: ``True`` MUSDB18-HQ, ``False`` MUSDB18 ``.stem.mp4``, ``None`` detected.
        device: where the model runs; default CUDA, else MPS, else the CPU.
        progress: show a bar over the tracks.
        amp: bf16 autocast of the model (:func:`~metalearn_sep.separate.separate`; default
            on a GPU with native bf16 only, :func:`~metalearn_sep.precision.resolve_amp`).

    Returns:
        An :class:`Evaluation`. Raises ``ValueError`` / ``OSError`` with one sentence for a
        bad input, before anything is written.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}.")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {protocol!r}.")
    workers = check_int(workers, "workers")
    if not isinstance(fast, bool):
        raise ValueError(f"fast must be True or False, got {fast!r}.")
    if amp is not None and not isinstance(amp, bool):
        raise ValueError(f"amp must be None (bf16 where the GPU has it), True (bf16) or False (fp32), got {amp!r}.")
    model, _ = load_model(checkpoint)
    data = MusdbDataset(root, split, sample_rate=RATE, segment=None, stereo=True, is_wav=is_wav, mixture="file")
    count = len(data) if tracks is None else min(check_int(tracks, "tracks"), len(data))
    chosen = data.tracks[:count]
    for track in chosen:
        check_lengths(track, data.is_wav)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(checkpoint, split, fast, protocol)
    settings = {"checkpoint_sha256": file_sha256(checkpoint), "split": split, "protocol": protocol,
                "metric": "framewise_sdr" if fast else "museval", "layout": layout_name(data.is_wav),
                "precision": {None: "auto", False: "fp32", True: "bf16"}[amp]}
    claim = _check_out(out_dir, {**settings, "checkpoint": str(checkpoint)})

    metrics = ("SDR",) if fast else sisec.METRICS
    paths = [sisec.track_json_path(out_dir, track.subset, track.name) for track in chosen]
    todo = [i for i, path in enumerate(paths) if not sisec.is_complete(path, metrics)]
    bar = progress_bar(total=count, initial=count - len(todo), unit="track", desc="evaluating", enabled=progress)
    with bar:
        for _ in _score(model, data, todo, paths, claim, fast=fast, workers=workers, protocol=protocol, amp=amp,
                        device=str(device) if device is not None else str(default_device())):
            bar.update(1)
    result = sisec.aggregate({track.name: sisec.read_track_scores(p, metrics) for track, p in zip(chosen, paths)})
    name = f"{Path(checkpoint).name} ({protocol} protocol)" if protocol != "course" else Path(checkpoint).name
    title = f"{name} on MUSDB18 {split} ({layout_name(data.is_wav)}), {count} track{'s' * (count != 1)}"
    files, summary = write_report(out_dir, result, title, fast)
    return Evaluation(out_dir, result, [chosen[i].name for i in todo], files, summary)


def band_scores(model: Separator, rate: int, stereo: bool, songs: int = 8, seconds: float = 8.0,
                device: str | None = None, amp: bool | None = None, protocol: str = "course") -> tuple[np.ndarray, np.ndarray]:
    """``(SI-SDR improvement, SDR)`` per source, shape ``(4,)`` each, on the synthetic band's test songs.

    Each of ``songs`` test songs of ``seconds`` at ``rate`` (stereo or mono) is separated whole by
    :func:`~metalearn_sep.separate.separate`; the SI-SDR improvement is averaged over songs and
    the SDR aggregated as SiSEC does (median over 1 s frames, then over songs). NaN for a source
    silent in every song. What ``python -m metalearn_sep evaluate`` prints without MUSDB18.
    """
    from .data.band import BandDataset
    from .metrics import si_sdr_improvement

    gains, sdrs = [], []
    for mixture, stems in BandDataset("test", rate, segment=None, song_duration=seconds, size=songs, stereo=stereo):
        estimates = separate(model, mixture, rate, device=device, amp=amp, protocol=protocol)
        gains.append(si_sdr_improvement(estimates[None], stems[None], mixture[None])[0].double().numpy())  # (4,)
        sdrs.append(framewise_sdr(estimates, stems, rate))  # (4, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN for a source silent in every song
        return np.nanmean(np.stack(gains), axis=0), sisec.sisec_aggregate(sdrs)


def layout_name(is_wav: bool) -> str:
    """``"MUSDB18-HQ"`` for wav folders, ``"MUSDB18"`` for ``.stem.mp4`` files."""
    return "MUSDB18-HQ" if is_wav else "MUSDB18"


def _score(model, data: MusdbDataset, todo: list[int], paths: list[Path], claim: Callable[[], None], *,
           fast: bool, workers: int, protocol: str, amp: bool | None, device: str) -> Iterator[int]:
    """Separate and score ``data``'s tracks ``todo`` into ``paths``; yield each index once its JSON is written.

    ``claim()`` runs once the first track is separated, before anything is written.
    """
    pool = ProcessPoolExecutor(workers - 1, mp_context=get_context("spawn")) if workers > 1 and not fast else None
    pending: dict[Future, int] = {}
    try:
        for i in todo:
            mixture, _ = data[i]  # (2, T) at 44.1 kHz: the track's own mixture file
            stems = separate(model, mixture, RATE, device=device, amp=amp, protocol=protocol)  # (4, 2, T)
            estimates = {name: stems[k].T.numpy() for k, name in enumerate(SOURCES)}  # (T, 2) each
            claim()
            if pool is None:
                (score_fast if fast else sisec.score_with_museval)(data.tracks[i], estimates, paths[i])
                yield i
                continue
            while len(pending) >= workers - 1:  # never more than K - 1 separated tracks held
                yield from _collect(pending)
            pending[pool.submit(sisec.score_with_museval, data.tracks[i], estimates, paths[i])] = i
        while pending:
            yield from _collect(pending)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _collect(pending: dict[Future, int]) -> Iterator[int]:
    """Wait for at least one scoring job; re-raise its error, else yield its track index and forget it."""
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        future.result()
        yield pending.pop(future)


def score_fast(track, estimates: dict[str, np.ndarray], path: Path) -> Path:
    """Score a track with :func:`~metalearn_sep.metrics.framewise_sdr` and write it as museval would.

    The references are those museval uses (``track.targets[name].audio``, ``(time,
    channel)``), and the estimates are zero-padded or cropped to them as museval does, so
    the frames and the SDR agree with ``museval.eval_mus_track`` on the same estimates.
    """
    references = np.stack([track.targets[name].audio for name in SOURCES])  # (4, T', 2)
    ours = np.stack([estimates[name] for name in SOURCES])  # (4, T, 2)
    length = references.shape[1]
    ours = np.pad(ours[:, :length], ((0, 0), (0, max(length - ours.shape[1], 0)), (0, 0)))
    sdr = framewise_sdr(ours.transpose(0, 2, 1), references.transpose(0, 2, 1), track.rate, window=sisec.WINDOW)
    return sisec.write_framewise(path, sdr)


def check_lengths(track, is_wav: bool) -> None:
    """Raise ``ValueError`` when a track's mixture and stems differ in length (museval would pad silently)."""
    if is_wav:
        files = {"mixture": track.path, **{name: track.sources[name].path for name in SOURCES}}
        lengths = {name: sf.info(path).frames for name, path in files.items()}
    else:
        ids = {"mixture": 0, **{name: track.sources[name].stem_id for name in SOURCES}}
        samples = track.info.nb_samples_streams
        lengths = {name: samples[i] for name, i in ids.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValueError(f"Track {track.name!r} has a mixture and stems of different lengths ({listed} samples); "
                         "a MUSDB18 track's files all have the same length.")


def _check_out(out_dir: Path, manifest: dict[str, str]) -> Callable[[], None]:
    """Check that ``out_dir`` is new, empty or scores the same settings; return what records them in it.

    The returned function writes ``out_dir/evaluation.json`` the first time it is called (not
    at all when the folder has it already), so a run that fails before its first track
    leaves no folder behind.
    """
    path = out_dir / MANIFEST
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not an output folder: choose another --out.")
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ValueError(f"{path} is not valid JSON: delete {out_dir} or choose another --out.") from None
        diff = [f"{key} {old.get(key)!r} there, {value!r} now" for key, value in manifest.items()
                if key != "checkpoint" and old.get(key) != value]
        if diff:
            raise ValueError(f"{out_dir} holds another evaluation ({'; '.join(diff)}): choose another --out.")
        return lambda: None
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and holds no {MANIFEST}: choose a new or empty folder for --out.")

    def claim() -> None:
        if not path.is_file():
            atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")

    return claim
