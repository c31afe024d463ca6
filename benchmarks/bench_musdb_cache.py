"""Speed of MUSDB18 training crops: the decoded cache against decoding the files on every crop.

Writes a small MUSDB18 folder of fake songs twice, as ``.stem.mp4`` (AAC, through ffmpeg)
and as MUSDB18-HQ wav (``tests/musdb_fixtures.py``), decodes the ``.stem.mp4`` one into a
cache (:func:`metalearn_sep.data.cache.prepare_musdb`, timed), then times the same random
training crops (8 s, stereo, 32 kHz by default) from three sources on one CPU thread, as one
DataLoader worker reads them:

* the cache (:class:`~metalearn_sep.data.cache.CachedMusdb`: a copy out of memory-mapped
  arrays; the files were just written, so they are in the page cache, as they stay on a
  machine whose memory holds the cache);
* ``.stem.mp4`` through :class:`~metalearn_sep.data.musdb.MusdbDataset` (an ffmpeg process
  per crop, then resampling from 44.1 kHz);
* MUSDB18-HQ wav through ``MusdbDataset`` (soundfile reads, then resampling).

Prints crops per second side by side with the ratio to ``.stem.mp4``; the target is a cache
at least 50 times faster than ``.stem.mp4``, and the script exits 1 if it is missed. The
figures are appended to ``benchmarks/RESULTS.md`` (section ``bench_musdb_cache``) unless
``--no-record`` is given.

    python benchmarks/bench_musdb_cache.py [--songs 3] [--seconds 20] [--crops 24] [--no-record]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from metalearn_sep.data.cache import CachedMusdb, prepare_musdb  # noqa: E402
from metalearn_sep.data.musdb import MusdbDataset  # noqa: E402
from musdb_fixtures import write_hq, write_stems  # noqa: E402
from results_table import add_no_record_flag, record  # noqa: E402

TARGET = 50.0
"""How many times faster than ``.stem.mp4`` the cache must serve crops."""


def crops_per_second(dataset: torch.utils.data.Dataset, indices: list[int]) -> float:
    """Items ``indices`` read one after another (after one warm-up item): items per second."""
    dataset[indices[0]]
    start = time.perf_counter()
    for index in indices:
        mixture, stems = dataset[index]
    return len(indices) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=3, help="training songs in the folder")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each song")
    parser.add_argument("--crops", type=int, default=24, help="crops timed per source")
    parser.add_argument("--segment", type=float, default=8.0, help="crop length in seconds")
    parser.add_argument("--rate", type=int, default=32000, help="rate of the crops (Hz)")
    add_no_record_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    songs = {f"train/Fake - Song {k}": args.seconds for k in range(args.songs)}
    songs["test/Fake - Test"] = args.seconds
    size = f"{args.segment:g} s stereo crops at {args.rate / 1000:g} kHz, {args.songs} songs of {args.seconds:g} s"
    with tempfile.TemporaryDirectory() as tmp:
        stems_root, hq_root = write_stems(Path(tmp) / "musdb18", songs), write_hq(Path(tmp) / "musdb18hq", songs)
        start = time.perf_counter()
        cache = prepare_musdb(stems_root, Path(tmp) / "cache", [args.rate], progress=False)
        prepared = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in cache.rglob("*.npy")) / 1e6
        options = dict(sample_rate=args.rate, segment=args.segment, samples_per_track=args.crops, seed=1)
        sources = {
            "cache (memory map)": CachedMusdb(cache, "train", **options),
            ".stem.mp4 (MusdbDataset)": MusdbDataset(stems_root, "train", **options),
            "MUSDB18-HQ wav (MusdbDataset)": MusdbDataset(hq_root, "train", **options),
        }
        indices = np.random.default_rng(0).permutation(args.songs * args.crops)[: args.crops].tolist()
        speed = {name: crops_per_second(dataset, indices) for name, dataset in sources.items()}
    stem_speed = speed[".stem.mp4 (MusdbDataset)"]
    print(f"{size}, {args.crops} random crops each, one thread")
    print(f"prepare-musdb of {len(songs)} songs ({len(songs) * args.seconds:g} s of audio): {prepared:.1f} s, "
          f"{megabytes:.0f} MB at {args.rate} Hz")
    print(f"{'source':<32s}{'crops/s':>10s}{'ms/crop':>10s}{'x .stem.mp4':>13s}")
    for name, value in speed.items():
        print(f"{name:<32s}{value:>10.1f}{1000 / value:>10.1f}{value / stem_speed:>13.1f}")
    ratio = speed["cache (memory map)"] / stem_speed
    met = ratio >= TARGET
    print(f"cache / .stem.mp4: {ratio:.0f}x | target >= {TARGET:g}x: {'met' if met else 'MISSED'}")
    if not args.no_record:
        figures = {f"{name}, {size}": f"{value:.1f} crops/s ({1000 / value:.1f} ms each)" for name, value in speed.items()}
        figures[f"cache / .stem.mp4 speed, {size}"] = f"{ratio:.0f}x; target >= {TARGET:g}x: {'met' if met else 'MISSED'}"
        figures[f"prepare-musdb, {len(songs)} songs of {args.seconds:g} s from .stem.mp4"] = f"{prepared:.1f} s ({megabytes:.0f} MB)"
        record("bench_musdb_cache", figures)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
