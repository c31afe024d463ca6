"""MUSDB18 decoded once: a folder of float32 arrays that training crops read through memory maps.

Why. :class:`~metalearn_sep.data.musdb.MusdbDataset` decodes every crop from the files: one
ffmpeg process per ``.stem.mp4`` crop (soundfile seeks for MUSDB18-HQ), tens of milliseconds
each, so a GPU waits on the data. :func:`prepare_musdb` decodes every track once, resamples
it to each requested rate and stores it; :class:`CachedMusdb` then cuts a crop out of a
memory-mapped array: a copy of the bytes it needs (``benchmarks/bench_musdb_cache.py``).

A cache folder (``out``)::

    manifest.json               what is there (below)
    <rate>/<Artist - Title>.npy float32, shape (4, 2, T): drums, bass, other, vocals
                                (SOURCES order); left, right; T samples at <rate>

Only the four stems are stored. The training mixture is their sum, and MUSDB18's own
(mastered) mixture is needed only to score against the published figures, which reads each
whole track once through ``MusdbDataset(mixture="file")``; leaving it out saves a fifth of
the space: a cache takes ``4 * 2 * 4 * rate`` bytes per second of audio, about 37 GB for
MUSDB18's ten hours at 32 kHz. Each stored track is exactly what
``MusdbDataset(root, split, sample_rate=rate, segment=None).__getitem__`` returns (the
same reading code and the same :func:`~metalearn_sep.audio.resample` call on the same
tensor), bit for bit.

``manifest.json`` holds ``format`` (:data:`FORMAT`), ``variant`` (``"stems"``: MUSDB18
``.stem.mp4``, ``"hq"``: MUSDB18-HQ wav), ``source`` (the MUSDB18 folder), ``rates`` (the
rates every track has; empty until a first run ends) and ``tracks``: per track its
``name``, ``split`` (train / valid / test, as ``musdb`` splits them), ``native_rate`` and
``native_samples`` (the file's, which the crop positions are computed from), and per rate
the ``file``, its length ``samples`` and its ``sha256``.

Writes. Every file is written to a temporary file in its own folder, flushed to disk and
renamed into place (:func:`metalearn_sep.atomic.atomic_write`); the manifest is rewritten
the same way after every track. An interrupted run therefore leaves whole files only (and
perhaps a temporary one, removed by the next run); rerunning resumes it: a file that exists
and matches its checksum is kept, any other is written again, and the rates the cache
already holds are kept complete. One ``prepare_musdb`` at a time per folder (a lock says so).

Checks. Opening a :class:`CachedMusdb` checks each file of its split and rate for its
presence, shape, type and size, which reads only the headers. Checksums (a full read, about
a minute for 37 GB) are compared where a bad file would otherwise be kept: when
:func:`prepare_musdb` resumes, and in :func:`verify_cache`.

Finding a cache (:func:`musdb_dataset`, what ``train --musdb PATH`` uses): ``PATH`` is read
as a cache when it holds ``manifest.json``, else as a MUSDB18 folder decoded crop by crop,
after a one-time hint with the ``prepare-musdb`` command that builds a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .. import SOURCES
from ..atomic import atomic_write
from ..audio import fit_length, resample, to_mono
from ..checks import check_rate
from ..progress import progress_bar
from .musdb import SPLITS, EmptySplitError, Excerpts, MusdbDataset

FORMAT = 1
"""The cache layout this module writes and reads."""

MANIFEST = "manifest.json"
VARIANTS = {"stems": "MUSDB18 (.stem.mp4)", "hq": "MUSDB18-HQ (wav)"}
DEFAULT_RATE = 32000
"""The rate the paper's recipe trains at (its last stage)."""

_LOCK = ".prepare.lock"
_hinted: set[str] = set()


def prepare_command(source: object, out: object, rates: Iterable[int]) -> str:
    """The ``python -m metalearn_sep prepare-musdb`` command that builds (or completes) ``out`` from ``source``."""
    paths = f"{shlex.quote(str(source))} --out {shlex.quote(str(out))}"
    return f"python -m metalearn_sep prepare-musdb {paths}" + "".join(f" --rate {r}" for r in rates)


def is_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a cache's ``manifest.json``."""
    return (Path(path).expanduser() / MANIFEST).is_file()


def read_manifest(cache: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``cache``, checked for its format (one-sentence errors for a missing or foreign folder)."""
    cache = Path(cache).expanduser()
    build = prepare_command("MUSDB_FOLDER", cache, [DEFAULT_RATE])
    if not cache.is_dir():
        raise FileNotFoundError(f"MUSDB18 cache folder {cache} does not exist: build it with `{build}`.")
    if not (cache / MANIFEST).is_file():
        raise FileNotFoundError(f"{cache} holds no {MANIFEST}, so it is no MUSDB18 cache: build one with `{build}`.")
    try:
        manifest = json.loads((cache / MANIFEST).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{cache / MANIFEST} is not valid JSON: rebuild the cache with `{build}` into a new folder.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValueError(f"{cache / MANIFEST} is cache format {got!r}, this code reads format {FORMAT}: "
                         f"rebuild it with `{build}` into a new folder.")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_durably(path: Path, write: Callable[[BinaryIO], None]) -> str:
    """Write ``path`` atomically, on disk (file and folder entry) before it counts; return its sha256."""
    digest = ""

    def synced(tmp: str) -> None:
        nonlocal digest
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        digest = _sha256(Path(tmp))

    atomic_write(path, synced)
    if hasattr(os, "O_DIRECTORY"):  # POSIX: the rename itself reaches the disk too
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return digest


def _write_manifest(out: Path, manifest: dict[str, Any], tracks: dict[str, dict[str, Any]]) -> None:
    order = {split: i for i, split in enumerate(SPLITS)}
    manifest["tracks"] = sorted(tracks.values(), key=lambda t: (order[t["split"]], t["name"]))
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    _write_durably(out / MANIFEST, lambda f: f.write(text.encode("utf-8")))


def _intact(out: Path, stored: dict[str, Any] | None) -> bool:
    """Whether a manifest's file record points at a file with that checksum."""
    return stored is not None and (out / stored["file"]).is_file() and _sha256(out / stored["file"]) == stored["sha256"]


@contextmanager
def _only_writer(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock file (flock; none where the OS has no fcntl) for the whole run."""
    with open(out / _LOCK, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except BlockingIOError:
            raise RuntimeError(f"Another prepare-musdb is writing {out}: wait for it to end.") from None
        yield


def _open_splits(root: str | os.PathLike, is_wav: bool | None) -> dict[str, MusdbDataset]:
    """Whole tracks of every non-empty split at their own rate, the file mixture first (the cache keeps only the stems)."""
    splits = {}
    for split in SPLITS:
        try:
            splits[split] = MusdbDataset(root, split, sample_rate=44100, segment=None, is_wav=is_wav,
                                         samples_per_track=1, mixture="file")  # item i = track i
        except EmptySplitError:  # e.g. a folder without musdb's validation tracks
            continue
        is_wav = splits[split].is_wav  # every split in one format
    return splits


def prepare_musdb(root: str | os.PathLike, out: str | os.PathLike, rates: Iterable[int] = (DEFAULT_RATE,),
                  is_wav: bool | None = None, progress: bool = True) -> Path:
    """Decode every MUSDB18 track (train, valid, test) once into the cache folder ``out``; return ``out``.

    Args:
        root: the MUSDB18 or MUSDB18-HQ folder (holding ``train/`` and ``test/``).
        out: the cache folder, created if needed; a cache there is resumed and completed.
        rates: the rates (Hz) to store, added to those the cache holds already.
        is_wav: as for :class:`MusdbDataset` (``None``: detected).
        progress: draw a progress bar and print a summary.

    Each track is read once at its own rate and resampled to every rate that lacks a good
    file. Raises ``ValueError`` when ``out`` holds another variant, another MUSDB18 copy's
    tracks, or files that are not a cache's.
    """
    rates = [rates] if isinstance(rates, int) else list(rates)
    if not rates:
        raise ValueError("rates must name at least one rate in Hz, got none.")
    asked = sorted({check_rate(rate, "rate") for rate in rates})
    out = Path(out).expanduser()
    splits = _open_splits(root, is_wav)
    source = next(iter(splits.values()))
    variant = "hq" if source.is_wav else "stems"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a cache is a folder.")
    if out.is_dir() and not is_cache(out) and any(p.name != _LOCK for p in out.iterdir()):
        raise ValueError(f"{out} holds files but no {MANIFEST}, so it is not a cache: choose a new or empty folder.")
    out.mkdir(parents=True, exist_ok=True)
    with _only_writer(out):
        manifest = read_manifest(out) if is_cache(out) else {"format": FORMAT, "variant": variant, "rates": [], "tracks": []}
        if manifest["variant"] != variant:
            raise ValueError(f"Cache {out} holds {VARIANTS[manifest['variant']]} but {source.root} is "
                             f"{VARIANTS[variant]}: keep one cache per variant, pass another --out.")
        manifest["source"] = str(source.root)
        tracks = {t["name"]: t for t in manifest["tracks"]}
        found = {ds.tracks[i].name: (split, ds, i) for split, ds in splits.items() for i in range(len(ds.tracks))}
        for name, entry in tracks.items():
            split, ds, i = found.get(name, (None, None, 0))
            if ds is None or (split, ds.tracks[i].samples) != (entry["split"], entry["native_samples"]):
                raise ValueError(f"Cache {out} was built from another MUSDB18 copy than {source.root} (its track "
                                 f"{name!r} is not there as it was): point to that copy, or pass another --out.")
        for leftover in [*out.glob(".*.tmp"), *out.glob("*/.*.tmp")]:  # from a run killed mid-write
            leftover.unlink()
        every = sorted(set(asked) | set(manifest["rates"]))
        written = kept = 0
        for name, (split, ds, i) in progress_bar(found.items(), enabled=progress, unit="track", desc="prepare-musdb"):
            track = ds.tracks[i]
            entry = tracks.setdefault(name, {"name": name, "split": split, "native_rate": track.rate,
                                             "native_samples": track.samples, "rates": {}})
            todo = [rate for rate in every if not _intact(out, entry["rates"].get(str(rate)))]
            kept += len(every) - len(todo)
            if not todo:
                continue
            mixture, stems = ds[i]  # [2, T], [4, 2, T] at track.rate
            audio = torch.cat([mixture[None], stems])  # resampled as MusdbDataset resamples, mixture included
            for rate in todo:
                array = resample(audio, track.rate, rate)[1:].numpy()
                file = f"{rate}/{name}.npy"
                digest = _write_durably(out / file, lambda f, a=array: np.save(f, a, allow_pickle=False))
                entry["rates"][str(rate)] = {"file": file, "samples": array.shape[-1], "sha256": digest}
                _write_manifest(out, manifest, tracks)
                written += 1
        manifest["rates"] = every
        _write_manifest(out, manifest, tracks)
    if progress:
        print(f"prepare-musdb: wrote {written} file(s), kept {kept} intact one(s); {out} holds "
              f"{len(tracks)} tracks at {', '.join(map(str, every))} Hz.")
    return out


def verify_cache(cache: str | os.PathLike) -> list[str]:
    """Compare every file of ``cache`` with its manifest checksum; return one sentence per bad file ([] when all are good)."""
    cache = Path(cache).expanduser()
    manifest = read_manifest(cache)
    problems = []
    for track in manifest["tracks"]:
        for rate, stored in sorted(track["rates"].items()):
            if not _intact(cache, stored):
                problems.append(f"Track {track['name']!r} at {rate} Hz ({stored['file']}) is missing or does not match "
                                f"its checksum: rerun `{prepare_command(manifest['source'], cache, [rate])}`, which redoes it.")
    return problems


class CachedMusdb(Excerpts):
    """A MUSDB18 split from a :func:`prepare_musdb` cache: ``(mixture [C, T], stems [4, C, T])`` float32 items.

    Items and their indices are those of :class:`~metalearn_sep.data.musdb.MusdbDataset`
    with the same arguments (``mixture="sum"``): :meth:`excerpt` gives the same track and
    start (in samples at 44.1 kHz) for item ``i``, a pure function of ``(seed, i)``; random
    crops for ``"train"``, the middle crop (or the whole track with ``segment=None``) for
    ``"valid"``/``"test"``. The audio is cut from the whole track resampled once, at the
    sample nearest the start, where ``MusdbDataset`` resamples each crop on its own: whole
    tracks, and crops at the cached rate equal to the native one, are the same bit for bit;
    other crops differ by that rounding and at their edges (a few milliseconds). Mixtures are
    always the sum of the stems. Mono (``stereo=False``) is the mean of the channels.

    Arrays are memory-mapped when first read in each process, so DataLoader workers (fork
    or spawn) each map the files and share the page cache; a pickled dataset carries no audio.
    Wrap it in :class:`~metalearn_sep.data.augment.AugmentedDataset` for the recipe's
    augmentations (cross-song remixes included), as any MUSDB18 dataset.

    Attributes beside ``MusdbDataset``'s (:attr:`names`, :meth:`excerpt`, ``split``, ...):
    ``cache`` (the folder), ``source`` (the MUSDB18 folder it was built from), ``variant``.

    Args:
        cache: the folder :func:`prepare_musdb` wrote.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        sample_rate: a rate the cache holds (its manifest's ``rates``).
        segment, stereo, samples_per_track, random_crop, seed: as for ``MusdbDataset``.
    """

    def __init__(self, cache: str | os.PathLike, split: str = "train", sample_rate: int = DEFAULT_RATE,
                 segment: float | None = 6.0, stereo: bool = True, samples_per_track: int = 64,
                 random_crop: bool | None = None, seed: int = 0) -> None:
        self._set_excerpts(split, sample_rate, segment, stereo, samples_per_track, random_crop, seed)
        self.cache = Path(cache).expanduser()
        manifest = read_manifest(self.cache)
        self.variant, self.source = manifest["variant"], manifest["source"]
        if self.sample_rate not in manifest["rates"]:
            add = prepare_command(self.source, self.cache, [self.sample_rate])
            if not manifest["rates"]:
                raise ValueError(f"Cache {self.cache} is unfinished (its prepare-musdb run was interrupted): "
                                 f"rerun `{add}`, which resumes it.")
            raise ValueError(f"Cache {self.cache} holds {', '.join(map(str, manifest['rates']))} Hz, not "
                             f"{self.sample_rate} Hz: add that rate with `{add}` (the others stay).")
        self._tracks = sorted((t for t in manifest["tracks"] if t["split"] == split), key=lambda t: t["name"])
        if not self._tracks:
            counts = ", ".join(f"{s} {sum(t['split'] == s for t in manifest['tracks'])}" for s in SPLITS)
            raise FileNotFoundError(f"Cache {self.cache} holds no {split!r} tracks (its tracks: {counts}), as its "
                                    f"MUSDB18 folder {self.source} had none.")
        self._files = [self._checked(t) for t in self._tracks]
        self._arrays: dict[int, np.ndarray] = {}

    def _checked(self, track: dict[str, Any]) -> Path:
        """The file of ``track`` at :attr:`sample_rate`, after checking its header and size (not its checksum)."""
        stored = track["rates"].get(str(self.sample_rate), {})
        path = self.cache / stored.get("file", f"{self.sample_rate}/{track['name']}.npy")
        try:
            array = np.load(path, mmap_mode="r")
            good = (array.dtype == np.float32 and array.shape == (len(SOURCES), 2, stored["samples"])
                    and path.stat().st_size == array.offset + array.nbytes)
        except (OSError, ValueError, KeyError):  # missing, a header or length numpy refuses, no record
            good = False
        if not good:
            redo = prepare_command(self.source, self.cache, [self.sample_rate])
            raise ValueError(f"Cache {self.cache} has no intact file for track {track['name']!r} at {self.sample_rate} Hz "
                             f"({path.relative_to(self.cache)} is missing or partly written): rerun `{redo}`, "
                             "which resumes and redoes it.")
        return path

    @property
    def names(self) -> list[str]:
        """Track names (``"Artist - Title"``), sorted, as ``MusdbDataset`` lists them."""
        return [t["name"] for t in self._tracks]

    def _native(self, track: int) -> tuple[int, int]:
        return self._tracks[track]["native_samples"], self._tracks[track]["native_rate"]

    def _array(self, track: int) -> np.ndarray:
        """The memory-mapped ``(4, 2, T)`` stems of ``track``, mapped on first use in this process."""
        if track not in self._arrays:
            self._arrays[track] = np.load(self._files[track], mmap_mode="r")
        return self._arrays[track]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": {}}  # each process maps the files itself

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index``: ``(mixture [C, T], stems [4, C, T])``, float32, at :attr:`sample_rate`."""
        track, start, length = self.excerpt(index)
        audio = self._array(track)
        if length is None:
            stems = torch.from_numpy(np.array(audio))
        else:
            size = int(round(self.segment * self.sample_rate))
            first = int(round(start * self.sample_rate / self._native(track)[1]))
            stems = fit_length(torch.from_numpy(np.array(audio[..., first:first + size])), size)
        if not self.stereo:
            stems = to_mono(stems)
        return stems.sum(dim=0), stems

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({VARIANTS[self.variant]} cache at {str(self.cache)!r}, split={self.split!r}, "
                f"tracks={len(self._tracks)}, items={len(self)}, sample_rate={self.sample_rate}, "
                f"segment={self.segment}, stereo={self.stereo})")


def musdb_dataset(path: str | os.PathLike, split: str, sample_rate: int, **options: Any) -> CachedMusdb | MusdbDataset:
    """A MUSDB18 split from ``path``: a :class:`CachedMusdb` when ``path`` is a cache (holds ``manifest.json``).

    Otherwise ``path`` is a MUSDB18 folder read by :class:`MusdbDataset`, and the first such
    call per folder in a process (rank 0 under torchrun) prints to stderr the command that
    decodes it once. ``options``: ``segment``, ``stereo``, ``samples_per_track``, ``random_crop``, ``seed``.
    """
    if is_cache(path):
        return CachedMusdb(path, split, sample_rate, **options)
    dataset = MusdbDataset(path, split, sample_rate, **options)
    if str(dataset.root) not in _hinted and os.environ.get("RANK", "0") == "0":
        _hinted.add(str(dataset.root))
        root = str(dataset.root).rstrip("/")
        print(f"Decoding MUSDB18 crop by crop from {root}, too slow to keep a GPU busy: decode it once with "
              f"`{prepare_command(root, root + '-cache', [sample_rate])}` and pass --musdb {root}-cache.", file=sys.stderr)
    return dataset
