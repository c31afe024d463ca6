"""MUSDB18 and MUSDB18-HQ as a torch ``Dataset`` with the same items as the synthetic band.

MUSDB18 (Rafii et al., 2017) holds 150 stereo songs at 44.1 kHz, each with its mixture and
four stems. Two layouts exist on disk:

- MUSDB18 (STEMS): ``root/{train,test}/<Artist - Title>.stem.mp4``, five AAC streams
  (mixture, drums, bass, other, vocals);
- MUSDB18-HQ (WAV): ``root/{train,test}/<Artist - Title>/{mixture,drums,bass,other,vocals}.wav``.

Splits are the standard ones: ``"train"`` = the 86 training songs, ``"valid"`` = the 14
songs that ``musdb`` holds out of the training subset (``musdb/configs/mus.yaml``),
``"test"`` = the 50 test songs. Nothing is ever downloaded.

An item is ``(mixture, stems)`` as float32 tensors, exactly like
:mod:`metalearn_sep.data.band`:

- ``mixture``: ``[C, T]``, the input the separator sees (``x`` in the paper);
- ``stems``: ``[4, C, T]``, the targets ``s_1..s_4`` in :data:`metalearn_sep.SOURCES`
  order (drums, bass, other, vocals);

with ``C`` = 2 (stereo) or 1 (mean of the two channels) and ``T`` samples at the requested
``sample_rate`` (resampled with torchaudio, :func:`metalearn_sep.audio.resample`).

Reading. ``musdb`` finds the tracks, applies the split and probes every file (so it needs
the ``ffmpeg``/``ffprobe`` programs even for WAV; ``musdb`` is imported only when a dataset
is built, so importing this module works without them). STEMS excerpts are decoded by
``musdb`` through the tracks' ``chunk_start``/``chunk_duration``; WAV excerpts are read
with soundfile at the same positions (the files ``musdb`` lists): it seeks exactly, keeps
the stored samples bit for bit (``musdb`` pipes wav through ffmpeg as 16-bit) and is several
times faster than ``musdb``'s ffprobe + ffmpeg process per stem (the timing is in
``benchmarks/RESULTS.md``, under "other").

Training on a GPU needs faster crops than any decoding gives: :mod:`metalearn_sep.data.cache`
decodes the folder once (``python -m metalearn_sep prepare-musdb``) and serves the same items
(:class:`Excerpts` holds the index semantics both datasets share) from memory-mapped arrays.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from metalearn_sep import SOURCES
from metalearn_sep.audio import fit_length, read_audio, resample, to_mono
from metalearn_sep.checks import check_duration, check_int, check_rate, check_seed, is_int
from metalearn_sep.config import MUSDB_ENV

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""The standard MUSDB18 splits: 86 train / 14 valid (both from ``train/``) / 50 test songs."""

MIXTURES: tuple[str, ...] = ("sum", "file")
"""``"sum"``: mixture = exact sum of the four stems; ``"file"``: the track's own mixture."""

_STEM_SUFFIX = ".stem.mp4"
_HQ_MIXTURE = "mixture.wav"


class Excerpt(NamedTuple):
    """Where an item comes from: ``tracks[track]``, samples ``start`` to ``start + length``.

    ``start`` and ``length`` count samples at the track's own rate (44.1 kHz for MUSDB18);
    ``length`` is ``None`` for the whole track.
    """

    track: int
    start: int
    length: int | None


def _import_musdb():
    """Import ``musdb`` lazily: its ``stempeg`` dependency raises at import without FFmpeg."""
    missing = [program for program in ("ffmpeg", "ffprobe") if shutil.which(program) is None]
    if missing:
        raise RuntimeError(
            f"Reading MUSDB18 needs the {' and '.join(missing)} program(s) on PATH, even for "
            "MUSDB18-HQ wav: install FFmpeg (conda install -c conda-forge ffmpeg, "
            "sudo apt-get install ffmpeg, or brew install ffmpeg) and restart Python."
        )
    import musdb

    return musdb


def _detect_layout(subset_dir: Path) -> tuple[bool, bool]:
    """Return ``(has_hq_tracks, has_stem_files)`` for one subset folder (``root/train``, ``root/test``)."""
    has_hq = any(entry.is_dir() and (entry / _HQ_MIXTURE).is_file() for entry in subset_dir.iterdir())
    has_stems = any(entry.is_file() and entry.name.endswith(_STEM_SUFFIX) for entry in subset_dir.iterdir())
    return has_hq, has_stems


class EmptySplitError(FileNotFoundError):
    """A MUSDB18 folder that holds tracks, none of them in the requested split (e.g. no validation track)."""


class Excerpts(torch.utils.data.Dataset):
    """The item semantics of :class:`MusdbDataset`, shared with the decoded cache (:class:`~metalearn_sep.data.cache.CachedMusdb`).

    Holds the checked arguments and maps an item index to an :class:`Excerpt` (see
    :class:`MusdbDataset` for the rules); a subclass lists its tracks in :attr:`names` and
    gives each track's native length with :meth:`_native`.
    """

    def _set_excerpts(self, split: str, sample_rate: int, segment: float | None, stereo: bool,
                      samples_per_track: int, random_crop: bool | None, seed: int) -> None:
        """Check and keep the arguments every MUSDB18 dataset takes."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}.")
        if not isinstance(stereo, bool):
            raise ValueError(f"stereo must be True or False, got {stereo!r}.")
        if random_crop is not None and not isinstance(random_crop, bool):
            raise ValueError(f"random_crop must be True, False or None, got {random_crop!r}.")
        check_int(samples_per_track, "samples_per_track")
        check_seed(seed)
        self.split = split
        self.sample_rate = check_rate(sample_rate)
        self.segment = None if segment is None else check_duration(segment, "segment")
        self.stereo = stereo
        self.samples_per_track = int(samples_per_track) if split == "train" else 1
        self.random_crop = split == "train" if random_crop is None else random_crop
        self.seed = int(seed)

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    def _native(self, track: int) -> tuple[int, int]:
        """``(samples, rate)`` of track ``track`` as stored in MUSDB18 (44.1 kHz)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names) * self.samples_per_track

    def excerpt(self, index: int) -> Excerpt:
        """Which track item ``index`` comes from, and where (samples at the track's own rate)."""
        if not is_int(index) or not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index must be an integer in [0, {len(self)}), got {index!r}.")
        index = int(index)
        track_index, k = divmod(index, self.samples_per_track)
        if self.segment is None:
            return Excerpt(track_index, 0, None)
        samples, rate = self._native(track_index)
        length = int(round(self.segment * rate))
        room = max(samples - length, 0)
        if self.random_crop:
            start = int(np.random.default_rng((self.seed, index)).integers(0, room + 1))
        else:
            start = int(round((k + 0.5) / self.samples_per_track * room))
        return Excerpt(track_index, start, length)


class MusdbDataset(Excerpts):
    """MUSDB18 / MUSDB18-HQ songs as ``(mixture [C, T], stems [4, C, T])`` float32 items.

    Items. ``"train"`` has ``len(tracks) * samples_per_track`` items: item ``i`` is an excerpt
    of track ``i // samples_per_track``. ``"valid"`` and ``"test"`` have one item per track.
    Every item is a pure function of its index (and ``seed``): a random crop starts where a
    generator seeded with ``(seed, i)`` says, so training can stop and resume and any worker
    process gives the same item. Set a new ``seed`` between epochs for fresh crops.

    Crops. ``segment=None`` gives whole tracks. Otherwise each item is ``segment`` seconds
    (``T = round(segment * sample_rate)``): a uniformly random crop when ``random_crop``
    (default: on for ``"train"``, off for ``"valid"``/``"test"``), else a fixed crop: the
    ``k``-th of ``samples_per_track`` evenly spaced crops for training item ``k`` of a track,
    the middle of the track for ``"valid"``/``"test"``. A track shorter than the segment is
    zero-padded at its end. Each crop is resampled on its own (torchaudio's windowed sinc),
    so its first and last few milliseconds see the zeros beyond the crop.

    Access for evaluation code: :attr:`tracks` (the ``musdb`` track objects, whole tracks:
    this class resets their ``chunk_start``/``chunk_duration`` after each read),
    :attr:`names` (``"Artist - Title"``), :meth:`excerpt` (where an item comes from).
    Reading changes state on the shared track objects, so share one dataset between
    processes (DataLoader workers), not threads.

    Args:
        root: the MUSDB18 folder (holding ``train/`` and ``test/``); ``None`` reads
            ``$MUSDB_PATH``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        sample_rate: rate (Hz) of the returned audio; tracks are resampled from 44.1 kHz.
        segment: item length in seconds, or ``None`` for whole tracks.
        stereo: ``True`` gives ``C = 2``; ``False`` a mono downmix (mean of the channels), ``C = 1``.
        is_wav: ``True`` for MUSDB18-HQ (wav folders), ``False`` for MUSDB18 (``.stem.mp4``);
            ``None`` detects it from the split's folder.
        samples_per_track: training items per track (one epoch = this many crops of each song).
        random_crop: random (``True``) or fixed (``False``) crops; ``None``: random for ``"train"`` only.
        mixture: ``"sum"``: the exact sum of the four stems (what Meta-TasNet and open-unmix
            train on; MUSDB18's AAC mixture is not the sum of its stems); ``"file"``: the
            track's own mixture, for evaluation against the published numbers.
        seed: non-negative integer that, with the item index, fixes every random crop.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        sample_rate: int = 44100,
        segment: float | None = 6.0,
        stereo: bool = True,
        is_wav: bool | None = None,
        samples_per_track: int = 64,
        random_crop: bool | None = None,
        mixture: str = "sum",
        seed: int = 0,
    ) -> None:
        if mixture not in MIXTURES:
            raise ValueError(f"mixture must be one of {', '.join(map(repr, MIXTURES))}, got {mixture!r}.")
        if is_wav is not None and not isinstance(is_wav, bool):
            raise ValueError(f"is_wav must be True, False or None, got {is_wav!r}.")
        self._set_excerpts(split, sample_rate, segment, stereo, samples_per_track, random_crop, seed)
        self.mixture = mixture

        self.root = self._resolve_root(root)
        subset = "test" if split == "test" else "train"
        self.is_wav = self._check_layout(self.root / subset, is_wav)
        musdb = _import_musdb()
        db = musdb.DB(
            root=str(self.root),
            is_wav=self.is_wav,
            subsets=subset,
            split=None if split == "test" else split,
        )
        self.tracks = list(db.tracks)
        if not self.tracks:  # the folder holds tracks (checked above), so the split emptied it
            raise EmptySplitError(self._empty_split_message(db.setup["validation_tracks"]))
        for track in self.tracks:
            self._check_track(track, subset)

    @staticmethod
    def _resolve_root(root: str | os.PathLike | None) -> Path:
        if root is None:
            root = os.environ.get(MUSDB_ENV)
            if not root:
                raise ValueError(
                    f"No MUSDB18 folder given: pass root= or set ${MUSDB_ENV} to the folder holding train/ and test/."
                )
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"MUSDB18 folder {path} does not exist or is not a folder.")
        return path

    @staticmethod
    def _check_layout(subset_dir: Path, is_wav: bool | None) -> bool:
        """Check that ``subset_dir`` holds tracks in the requested format; return ``is_wav``."""
        if not subset_dir.is_dir():
            raise FileNotFoundError(
                f"{subset_dir.parent} has no {subset_dir.name}/ folder: a MUSDB18 folder holds train/ and test/."
            )
        has_hq, has_stems = _detect_layout(subset_dir)
        if not has_hq and not has_stems:
            raise FileNotFoundError(
                f"{subset_dir} holds no MUSDB18 tracks: expected <Artist - Title>{_STEM_SUFFIX} files (MUSDB18) "
                f"or <Artist - Title>/{_HQ_MIXTURE} folders (MUSDB18-HQ)."
            )
        if is_wav is None:
            if has_hq and has_stems:
                raise ValueError(
                    f"{subset_dir} holds both {_STEM_SUFFIX} files and wav folders: pass is_wav=True or False."
                )
            return has_hq
        if is_wav and not has_hq:
            raise ValueError(
                f"{subset_dir} holds MUSDB18 {_STEM_SUFFIX} files, not MUSDB18-HQ wav folders: pass is_wav=False."
            )
        if not is_wav and not has_stems:
            raise ValueError(f"{subset_dir} holds MUSDB18-HQ wav folders, not {_STEM_SUFFIX} files: pass is_wav=True.")
        return is_wav

    def _empty_split_message(self, validation_names: list[str]) -> str:
        where = self.root / "train"
        if self.split == "valid":
            return (
                f"{where} holds none of the {len(validation_names)} MUSDB18 validation tracks "
                f"(musdb's mus.yaml, e.g. {validation_names[0]!r}), so the 'valid' split is empty."
            )
        return f"Every track in {where} is a MUSDB18 validation track, so the 'train' split is empty."

    def _check_track(self, track, subset: str) -> None:
        """Raise early if a track lacks a file, a stem stream, or the channels ``stereo`` needs."""
        if track.info is None:  # musdb lists every folder / .stem.mp4 at any depth below subset/
            raise FileNotFoundError(
                f"musdb lists {track.name!r} as a track but {track.path} does not exist: keep only "
                f"track folders (MUSDB18-HQ) or .stem.mp4 files (MUSDB18) in {self.root / subset}, one level deep."
            )
        if self.is_wav:
            missing = [f"{name}.wav" for name in SOURCES if name not in track.sources]
            if missing:
                raise FileNotFoundError(
                    f"MUSDB18-HQ track folder {Path(track.path).parent} lacks {', '.join(missing)}."
                )
        elif track.info.nb_audio_streams != 1 + len(SOURCES):
            raise ValueError(
                f"{track.path} has {track.info.nb_audio_streams} audio stream(s); a MUSDB18 "
                f"{_STEM_SUFFIX} file has {1 + len(SOURCES)} (mixture, {', '.join(SOURCES)})."
            )
        channels = track.info.channels(0)
        if self.stereo and channels != 2:
            raise ValueError(
                f"Track {track.name!r} has {channels} channel(s), stereo=True needs 2: pass stereo=False for mono."
            )

    @property
    def names(self) -> list[str]:
        """Track names (``"Artist - Title"``), in :attr:`tracks` order (sorted, as ``musdb`` lists them)."""
        return [track.name for track in self.tracks]

    def _native(self, track: int) -> tuple[int, int]:
        return self.tracks[track].samples, self.tracks[track].rate

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index``: ``(mixture [C, T], stems [4, C, T])``, float32, at :attr:`sample_rate`."""
        track_index, start, length = self.excerpt(index)
        track = self.tracks[track_index]
        audio = self._read(track, start, track.samples - start if length is None else length)
        if not self.stereo:
            audio = to_mono(audio)
        audio = resample(audio, track.rate, self.sample_rate)
        if length is not None:
            audio = fit_length(audio, int(round(self.segment * self.sample_rate)))
        stems = audio[1:].contiguous()
        mixture = stems.sum(dim=0) if self.mixture == "sum" else audio[0].contiguous()
        return mixture, stems

    def _read(self, track, start: int, length: int) -> torch.Tensor:
        """Native-rate ``[5, C, length]`` audio (the file mixture, then the stems in SOURCES order)
        from sample ``start`` on, zero-padded past the end of the track."""
        if self.is_wav:
            paths = [track.path] + [track.sources[name].path for name in SOURCES]
            return torch.stack(
                [fit_length(read_audio(path, start / track.rate, length / track.rate)[0], length) for path in paths]
            )
        track.chunk_start, track.chunk_duration = start / track.rate, length / track.rate
        try:
            stems = np.asarray(track.stems, dtype=np.float32)  # (5, time, channel), stem-id order
        finally:
            track.chunk_start, track.chunk_duration = 0, None
        if stems.ndim == 2:  # musdb squeezes the channel axis of mono files
            stems = stems[..., None]
        order = [0] + [track.sources[name].stem_id for name in SOURCES]
        return fit_length(torch.from_numpy(stems[order]).transpose(1, 2).contiguous(), length)

    def __repr__(self) -> str:
        layout = "MUSDB18-HQ" if self.is_wav else "MUSDB18"
        return (
            f"{type(self).__name__}({layout} at {str(self.root)!r}, split={self.split!r}, tracks={len(self.tracks)}, "
            f"items={len(self)}, sample_rate={self.sample_rate}, segment={self.segment}, stereo={self.stereo}, "
            f"mixture={self.mixture!r})"
        )
