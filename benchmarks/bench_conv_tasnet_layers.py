"""Speed of the training forms of ConvTasNet's Decoder and DepthwiseConv1d against PyTorch's convs.

When gradients are needed, :class:`~metalearn_sep.models.conv_tasnet.Decoder` computes its
transposed conv as a matrix product and an overlap-add, and
:class:`~metalearn_sep.models.conv_tasnet.DepthwiseConv1d` its dilated depthwise conv as P
shifted products (without gradients both are PyTorch's convs). This script times forward +
backward of each layer against the PyTorch conv it replaces, on the same inputs, alternating
the two every round and comparing medians, at the cpu profile's size (batch 2 x 2 s at
8 kHz: the decoder sees 2 x 4 masked latents of ``CONV_TASNET_SIZES["cpu"]``'s N, the
depthwise conv H channels at each dilation of one repeat). It also times one training step
(forward, loss, backward) of the whole cpu model as the course runs it and with both layers
put back to PyTorch's convs.

Target: every ratio (PyTorch's time / ours) >= 1.0; exits 1 otherwise. The figures are
appended to ``benchmarks/RESULTS.md`` (its ``bench_conv_tasnet_layers`` table holds the
recorded runs) unless ``--no-record`` is given.

    python benchmarks/bench_conv_tasnet_layers.py [--repeats 21] [--threads 1] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from unittest import mock

import torch
import torch.nn.functional as F

from metalearn_sep.config import CONV_TASNET_SIZES
from metalearn_sep.models.conv_tasnet import ConvTasNet, Decoder, DepthwiseConv1d
from results_table import add_no_record_flag, record

RATE, SECONDS, BATCH = 8000, 2.0, 2


def seconds(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def race(ours: Callable[[], None], theirs: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``theirs``, run alternately (the first two rounds warm up)."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(repeats + 2):
        pair = (ours, theirs) if round_ % 2 else (theirs, ours)
        for step in pair:
            elapsed = seconds(step)
            if round_ >= 2:
                times[0 if step is ours else 1].append(elapsed)
    return statistics.median(times[0]), statistics.median(times[1])


def plain_depthwise(layer: DepthwiseConv1d, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's depthwise conv with ``layer``'s parameters and padding (autograd's own backward)."""
    right = layer.dilation[0] * (layer.kernel_size[0] - 1) - layer.left
    return F.conv1d(F.pad(x, (layer.left, right)), layer.weight, layer.bias, dilation=layer.dilation[0], groups=layer.groups)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    add_no_record_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = CONV_TASNET_SIZES["cpu"]
    N, L, H, X = sizes["N"], sizes["L"], sizes["H"], sizes["X"]
    time_samples = int(RATE * SECONDS)
    frames = time_samples // (L // 2) + 1
    rows = []

    decoder = Decoder(N, L)
    latent = torch.randn(BATCH * 4, N, frames, requires_grad=True)
    conv = decoder.conv_transpose
    rows.append((f"Decoder, {BATCH * 4} x {N} x {frames}",) + race(
        lambda: decoder(latent).square().sum().backward(),
        lambda: F.conv_transpose1d(latent, conv.weight, stride=conv.stride, padding=conv.padding).square().sum().backward(),
        args.repeats))

    x = torch.randn(BATCH, H, frames, requires_grad=True)
    for dilation in (2**i for i in range(X)):
        layer = DepthwiseConv1d(H, sizes.get("P", 3), dilation)
        rows.append((f"DepthwiseConv1d, {BATCH} x {H} x {frames}, d = {dilation}",) + race(
            lambda: layer(x).square().sum().backward(),
            lambda: plain_depthwise(layer, x).square().sum().backward(),
            args.repeats))

    model = ConvTasNet(**sizes)
    mixture = torch.randn(BATCH, 1, time_samples)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(mixture).square().mean().backward()

    def plain_step() -> None:
        with (mock.patch.object(Decoder, "forward", lambda self, z: self.conv_transpose(z)),
              mock.patch.object(DepthwiseConv1d, "forward", plain_depthwise)):
            step()

    rows.append((f"cpu model training step, batch {BATCH} x {SECONDS:g} s",) + race(step, plain_step, args.repeats))

    print(f"forward + backward on CPU, {args.threads} thread(s), median of {args.repeats} (ms):")
    ok = True
    for name, ours, theirs in rows:
        ratio = theirs / ours
        ok &= ratio >= 1.0
        print(f"  {name:45s} ours {1e3 * ours:7.2f}  PyTorch's conv {1e3 * theirs:7.2f}  ratio {ratio:5.2f}")
    print("PASS" if ok else "FAIL: a training form is slower than the conv it replaces")
    if not args.no_record:
        record("bench_conv_tasnet_layers", {
            f"{name}: PyTorch's conv / ours": f"{theirs / ours:.2f} (ours {1e3 * ours:.2f} ms, PyTorch's {1e3 * theirs:.2f} ms, "
                                               f"{args.threads} thread(s)); target >= 1.0: {'met' if theirs >= ours else 'MISSED'}"
            for name, ours, theirs in rows
        })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
