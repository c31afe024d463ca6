"""Chapter 01's cpu-profile promise: the 4-output Conv-TasNet reaches >= 10 dB mean SI-SDR
improvement on held-out synthetic-band songs within 5 minutes of training on 2 CPU cores.

Trains the cpu-profile model (metalearn_sep.config.CONV_TASNET_SIZES["cpu"]) with the
chapter's settings until the wall-clock budget is spent, then evaluates on the cpu
profile's held-out test songs. Prints the figure, the steps taken and the machine load.

    python benchmarks/bench_conv_tasnet_train.py [--budget 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from metalearn_sep.config import CONV_TASNET_SIZES, PROFILES
from metalearn_sep.data.band import BandDataset
from metalearn_sep.models import ConvTasNet
from metalearn_sep.train import Trainer, evaluate

TARGET_DB = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds (wall clock)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=25, help="steps between budget checks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = PROFILES["cpu"]
    rate = profile.sample_rate
    train = BandDataset("train", rate, segment=profile.segment_seconds, song_duration=profile.song_seconds)
    test = BandDataset("test", rate, segment=None, song_duration=profile.eval_seconds, size=profile.eval_songs)
    torch.manual_seed(0)
    model = ConvTasNet(**CONV_TASNET_SIZES["cpu"])
    trainer = Trainer(model, train, batch_size=profile.batch_size, lr=2e-3, clip_grad=5.0, device="cpu", progress=False)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    while time.perf_counter() - start < args.budget:
        trainer.fit(trainer.step + args.chunk)
    seconds = time.perf_counter() - start
    scores = evaluate(model, test, batch_size=2, device="cpu")
    print(f"cpu profile Conv-TasNet {CONV_TASNET_SIZES['cpu']}, {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"trained {trainer.step} steps (batch {profile.batch_size} x {profile.segment_seconds:.0f} s at {rate} Hz) "
          f"in {seconds:.0f} s on {args.threads} threads; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("SI-SDR improvement on", len(test), "held-out songs (dB):", "  ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    ok = scores["mean"] >= TARGET_DB
    print(f"mean {scores['mean']:.2f} dB, target >= {TARGET_DB:.0f} dB within {args.budget:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
