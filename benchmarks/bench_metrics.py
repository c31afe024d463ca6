"""framewise_sdr against museval on the same 30 s stereo 4-source example at 44.1 kHz.

Prints both times and the speed ratio (target: at least 50x), and the largest
difference between the two (they must agree to 0.01 dB); exits 1 if either target is
missed. The figures are appended to ``benchmarks/RESULTS.md`` (its ``bench_metrics`` table
holds the recorded runs) unless ``--no-record`` is given.

    python benchmarks/bench_metrics.py [--no-record]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from metalearn_sep.metrics import framewise_sdr, museval_sdr
from results_table import add_no_record_flag, record

TARGET = 50.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_no_record_flag(parser)
    args = parser.parse_args()
    rate, seconds = 44100, 30
    rng = np.random.default_rng(0)
    references = rng.standard_normal((4, 2, rate * seconds)) * rng.uniform(0.2, 1.0, (4, 1, 1))
    estimates = references + 0.5 * rng.standard_normal(references.shape)
    references[2, :, 5 * rate : 7 * rate] = 0  # silent stretches give NaN frames in both

    framewise_sdr(estimates, references, rate)  # warm-up
    ours = []
    for _ in range(5):
        start = time.perf_counter()
        fast = framewise_sdr(estimates, references, rate)
        ours.append(time.perf_counter() - start)
    start = time.perf_counter()
    slow = museval_sdr(estimates, references, rate)
    theirs = time.perf_counter() - start

    ours_s = float(np.median(ours))
    ratio = theirs / ours_s
    diff = float(np.nanmax(np.abs(fast - slow)))
    same_nan = bool((np.isnan(fast) == np.isnan(slow)).all())
    print(f"30 s stereo, 4 sources, 44.1 kHz: museval {theirs:.2f} s | framewise_sdr {ours_s * 1000:.1f} ms (median of 5)")
    print(f"speed ratio museval / framewise_sdr = {ratio:.0f}x (target >= {TARGET:.0f}x)")
    print(f"max |difference| = {diff:.2e} dB, same NaN frames: {same_nan}")
    ok = ratio >= TARGET and diff <= 0.01 and same_nan
    print("PASS" if ok else "FAIL")
    if not args.no_record:
        record("bench_metrics", {
            "museval / framewise_sdr time, 30 s stereo, 4 sources, 44.1 kHz":
                f"{ratio:.0f}x (museval {theirs:.2f} s, framewise_sdr {ours_s * 1000:.1f} ms); "
                f"target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'MISSED'}",
            "max abs difference framewise_sdr - museval":
                f"{diff:.1e} dB, {'same' if same_nan else 'different'} NaN frames; "
                f"target <= 0.01 dB: {'met' if diff <= 0.01 and same_nan else 'MISSED'}",
        })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
