"""Speed of the synthetic band: rendering must never be what a training run waits for.

Renders songs of different seeds on one CPU thread (``torch.set_num_threads(1)``, after one
warm-up render) and reports the median and the slowest:

* 44.1 kHz stereo, 8 s: the target is a median under 1 s (the real-time factor is printed);
* 8 kHz mono, 4 s: one song of the course's training data (the ci profile);
* one BandDataset item, a 1 s crop of a 4 s song at 8 kHz (only the crop is rendered).

Exits 1 if the 44.1 kHz target is missed. The figures are appended to
``benchmarks/RESULTS.md`` (its ``bench_band`` table holds the recorded runs) unless
``--no-record`` is given.

    python benchmarks/bench_band.py [--repeats 7] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from metalearn_sep.data.band import BandDataset, synthesize
from results_table import add_no_record_flag, record

TARGET_S = 1.0


def seconds_per_song(rate: int, duration: float, stereo: bool, repeats: int) -> list[float]:
    synthesize(0, rate, duration, stereo)
    times = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        synthesize(seed, rate, duration, stereo)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="songs timed per setting")
    add_no_record_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    failed = False
    figures = {}
    for rate, duration, stereo, target in ((44100, 8.0, True, TARGET_S), (8000, 4.0, False, None)):
        times = seconds_per_song(rate, duration, stereo, args.repeats)
        median = statistics.median(times)
        line = (f"{rate / 1000:g} kHz {'stereo' if stereo else 'mono'} {duration:g} s song: median {median:.3f} s, "
                f"slowest {max(times):.3f} s, {duration / median:.0f}x real time")
        if target is not None:
            ok = median < target
            failed |= not ok
            line += f" | target < {target:g} s: {'met' if ok else 'MISSED'} ({target / median:.1f}x headroom)"
        print(line)
        figure = f"{rate / 1000:g} kHz {'stereo' if stereo else 'mono'} {duration:g} s song, median render time"
        figures[figure] = f"{median:.3f} s ({duration / median:.0f}x real time)" + (
            f"; target < {target:g} s: {'met' if ok else 'MISSED'}" if target is not None else "")
    train = BandDataset("train", sample_rate=8000, segment=1.0, song_duration=4.0)
    train[0]
    times = []
    for i in range(1, args.repeats + 1):
        start = time.perf_counter()
        train[i]
        times.append(time.perf_counter() - start)
    print(f"BandDataset item (1 s crop of a 4 s song, 8 kHz mono): median {1000 * statistics.median(times):.1f} ms")
    figures["BandDataset item (1 s crop of a 4 s song, 8 kHz mono), median"] = f"{1000 * statistics.median(times):.1f} ms"
    if not args.no_record:
        record("bench_band", figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
