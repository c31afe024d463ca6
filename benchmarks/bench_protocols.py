"""What the separation protocols cost: the course's ``separate()`` against the original repository's evaluation.

``separate(..., protocol="original")`` reproduces the original ``evaluate.py`` (kaiser_best
resampling, (T_0 + 1) 2^s stage inputs, 8 cores with 8 s of context, one resampling of the
joined 32 kHz output); the default ``"course"`` protocol resamples with torchaudio's default
filter and cuts 18 s cores with 2 s of context on a grid aligned with the resampling. Both
rescale each stem by least squares. This script separates synthetic-band songs (stereo,
44.1 kHz, the test split) with both, from a course checkpoint or the original's released
layout, and prints per source:

* the SiSEC SDR (median over 1 s frames, then over songs; ``framewise_sdr``, equal to museval's
  BSS Eval v4 SDR) of each protocol against the true stems, and their difference;
* the SDR of the course protocol's stems measured against the original's, which says how
  far apart the two outputs are (higher: closer);
* the real-time factor of each on this machine (``--threads`` CPU threads).

An untrained model still shows how far the protocols' outputs differ, but only a trained one
says what that costs in SDR. Figures go to ``benchmarks/RESULTS.md``.

    python benchmarks/bench_protocols.py CHECKPOINT [--songs 4] [--seconds 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metalearn_sep import SOURCES
from metalearn_sep.checkpoint import load_model
from metalearn_sep.data.band import split_seed, synthesize
from metalearn_sep.metrics import framewise_sdr, sisec_aggregate
from metalearn_sep.separate import PROTOCOLS, separate
from results_table import add_no_record_flag, record

RATE = 44100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a course checkpoint or the original's released layout")
    parser.add_argument("--songs", type=int, default=4, help="synthetic-band test songs (default 4)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each song (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    add_no_record_flag(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint)
    scores = {protocol: [] for protocol in PROTOCOLS}
    seconds = dict.fromkeys(PROTOCOLS, 0.0)
    apart = []
    for index in range(args.songs):
        stems = synthesize(split_seed("test", index), RATE, args.seconds, stereo=True)  # (4, 2, T)
        mixture = stems.sum(0)
        estimates = {}
        for protocol in PROTOCOLS:
            start = time.perf_counter()
            estimates[protocol] = separate(model, mixture, RATE, device="cpu", protocol=protocol)
            seconds[protocol] += time.perf_counter() - start
            scores[protocol].append(framewise_sdr(estimates[protocol], stems, RATE))
        apart.append(framewise_sdr(estimates["course"], estimates["original"], RATE))
    audio = args.songs * args.seconds
    sdr = {protocol: sisec_aggregate(track_scores) for protocol, track_scores in scores.items()}
    between = sisec_aggregate(apart)
    print(f"{args.checkpoint.name}: {args.songs} synthetic-band test songs of {args.seconds:g} s, stereo 44.1 kHz, "
          f"{args.threads} threads")
    print(f"{'':28s}" + "".join(f"{name:>9s}" for name in (*SOURCES, "mean")))
    rows = {
        "SDR, course protocol (dB)": sdr["course"],
        "SDR, original protocol (dB)": sdr["original"],
        "course - original (dB)": sdr["course"] - sdr["original"],
        "SDR of course vs original (dB)": between,
    }
    for name, values in rows.items():
        print(f"{name:28s}" + "".join(f"{v:9.2f}" for v in (*values, np.nanmean(values))))
    rtf = {protocol: seconds[protocol] / audio for protocol in PROTOCOLS}
    print("real-time factor: " + ", ".join(f"{protocol} {value:.3f}" for protocol, value in rtf.items()))
    if not args.no_record:
        what = f"{args.checkpoint.name}, {args.songs} band songs x {args.seconds:g} s"
        record("bench_protocols", {
            f"{name}, {what}": " / ".join(f"{v:.2f}" for v in values) + f" (mean {np.nanmean(values):.2f})"
            for name, values in rows.items()
        } | {f"real-time factor course / original, {what}, {args.threads} threads": f"{rtf['course']:.3f} / {rtf['original']:.3f}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
