"""Speed of our ConvTasNet against torchaudio's, forward + backward on CPU.

Both models are the paper's best configuration with 4 sources (N=512, L=16, B=Sc=128,
H=512, P=3, X=8, R=3, gLN, sigmoid masks; 5,116,977 parameters), ours a weight copy of
torchaudio's made by ``ConvTasNet.from_torchaudio`` (their outputs are checked to agree
first). One step is a forward pass on a random batch (default 2 x 1 s at 8 kHz), a loss and
the backward pass. The two models alternate step by step (which goes first alternates
too), so a change in the load of the machine hits both; each is timed ``--repeats`` times
and the medians are compared. The median of the per-round ratios is printed as well.

Where ours gains: the backward passes of its PReLU and depthwise conv are written out
(PyTorch's CPU ones are several times slower), and each block's residual and skip 1x1
convs run as one conv with B + Sc outputs. When gradients are needed the depthwise conv's
forward is written out too and the decoder is a matrix product and an overlap-add
(``benchmarks/bench_conv_tasnet_layers.py`` times those two against PyTorch's convs).

Target: ratio = torchaudio / ours >= 1.0 (ours is not slower). Exits 1 if it is missed or if
the outputs differ by more than 1e-5. The figures are appended to ``benchmarks/RESULTS.md``
(its ``bench_conv_tasnet`` table holds the recorded runs) unless ``--no-record`` is given.

    python benchmarks/bench_conv_tasnet.py [--batch 2] [--seconds 1.0] [--repeats 21] [--threads N] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torchaudio

from metalearn_sep.models.conv_tasnet import ConvTasNet
from results_table import add_no_record_flag, record

RATE = 8000
TARGET = 1.0


def _step(model: torch.nn.Module, mixture: torch.Tensor) -> float:
    """Seconds for one forward + backward pass of ``model`` on ``mixture``."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    estimates = model(mixture)
    estimates.square().mean().backward()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="audio length per example at 8 kHz")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="default: torch's default")
    add_no_record_flag(parser)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = torchaudio.models.ConvTasNet(num_sources=4)
    ours = ConvTasNet.from_torchaudio(reference)
    mixture = torch.randn(args.batch, 1, int(RATE * args.seconds))
    with torch.no_grad():
        difference = (ours(mixture).squeeze(2) - reference(mixture)).abs().max().item()
    print(f"ours vs torchaudio: max abs output difference {difference:.2e}")

    models = {"torchaudio": reference, "ours": ours}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        _step(model, mixture)
    for round_ in range(args.repeats):
        order = list(models) if round_ % 2 == 0 else list(reversed(models))  # no seat is favoured
        for name in order:
            times[name].append(_step(models[name], mixture))
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["torchaudio"] / median["ours"]
    paired = statistics.median(a / b for a, b in zip(times["torchaudio"], times["ours"]))

    print(
        f"ConvTasNet forward+backward, batch {args.batch} x {args.seconds:g} s at {RATE} Hz, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}:"
    )
    for name, value in median.items():
        print(f"  {name:<10s} {1000 * value:8.1f} ms")
    print(f"  ratio torchaudio / ours = {ratio:.3f} (target >= {TARGET})")
    print(f"  (median of the per-round ratios: {paired:.3f})")
    ok = ratio >= TARGET and difference <= 1e-5
    print("PASS" if ok else "FAIL")
    if not args.no_record:
        size = f"batch {args.batch} x {args.seconds:g} s"
        record("bench_conv_tasnet", {
            f"torchaudio / ours time, paper config, {size}":
                f"{ratio:.3f} (torchaudio {1000 * median['torchaudio']:.1f} ms, ours {1000 * median['ours']:.1f} ms, "
                f"{torch.get_num_threads()} thread(s), median of {args.repeats}; per-round median {paired:.3f}); "
                f"target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'}",
            f"max abs output difference ours - torchaudio, {size}":
                f"{difference:.2e}; target <= 1e-5: {'met' if difference <= 1e-5 else 'MISSED'}",
        })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
