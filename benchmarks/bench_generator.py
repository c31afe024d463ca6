"""Speed of the generated masking network against the independent one and a per-instrument loop.

Measures forward + backward time on CPU of the paper's stage-0 masking network (C_in = N =
440, B = H = 160, X = 6, R = 3) on a batch of 2 x 1 s at 8 kHz (400 latent frames):

* generated:   MaskingTCN(generated=True): weights generated from the embedding, the four
               instruments in one grouped conv / group norm per layer;
* independent: MaskingTCN(generated=False): the same grouped layers with stored weights;
* loop (baseline, written here): the generated network run one instrument at a time through
               ordinary, non-grouped convs and group norms (a Python loop over instruments).

Runs are interleaved and repeated; medians are compared. Targets: generated within 1.3x of
independent, and faster than the loop. Exits 1 if a target is missed. The figures are
appended to ``benchmarks/RESULTS.md`` (its ``bench_generator`` table holds the recorded
runs) unless ``--no-record`` is given.

    python benchmarks/bench_generator.py [--seconds 1.0] [--repeats 7] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from metalearn_sep.models.generator import InstrumentConv1d, InstrumentGroupNorm
from metalearn_sep.models.meta_tasnet import MaskingTCN
from results_table import add_no_record_flag, record

RATIO_TO_INDEPENDENT = 1.3


def _loop_conv(layer: InstrumentConv1d, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    weight, bias = layer.materialize(e)
    return F.conv1d(x, weight[0], None if bias is None else bias[0], padding=layer.padding, dilation=layer.dilation, groups=layer.groups)


def _loop_norm(layer: InstrumentGroupNorm, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    scale, shift = layer.materialize(e)
    return F.group_norm(x, layer.num_groups, scale[0], shift[0], layer.eps)


def loop_baseline(masker: MaskingTCN, latent: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """BASELINE: the generated masker's computation, one instrument at a time, ordinary layers.

    latent ``(batch, C_in, T')``, embedding ``(K, E1)`` -> masks ``(batch, K, N, T')``.
    """
    logits = []
    for i in range(embedding.shape[0]):
        e = embedding[i : i + 1]
        x = _loop_norm(masker.input_norm, masker.input_prelu(latent), e)
        x = _loop_norm(masker.bottleneck_norm, masker.bottleneck_prelu(_loop_conv(masker.input_conv, x, e)), e)
        skip = torch.zeros_like(x)
        for block in masker.blocks:
            y = _loop_norm(block.norm_in, block.prelu_in(_loop_conv(block.conv_in, x, e)), e)
            y = _loop_norm(block.norm_depthwise, block.prelu_depthwise(_loop_conv(block.depthwise, y, e)), e)
            x = x + _loop_conv(block.residual, y, e)
            skip = skip + _loop_conv(block.skip, y, e)
        y = _loop_conv(masker.mask_conv, _loop_norm(masker.skip_norm, masker.skip_prelu(skip), e), e)
        logits.append(_loop_norm(masker.mask_norm, masker.mask_prelu(y), e))
    return torch.stack(logits, dim=1).softmax(dim=1)


def _step(run, params) -> float:
    for p in params:
        p.grad = None
    start = time.perf_counter()
    masks = run()
    (masks * torch.linspace(0, 1, masks.shape[-1])).sum().backward()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="audio length per example at 8 kHz")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    add_no_record_flag(parser)
    args = parser.parse_args()

    torch.manual_seed(0)
    frames = int(400 * args.seconds)
    generated = MaskingTCN(440, 440, B=160, H=160, X=6, R=3, P=3, generated=True)
    independent = MaskingTCN(440, 440, B=160, H=160, X=6, R=3, P=3, generated=False)
    embedding = torch.nn.Parameter(torch.randn(4, 8))
    latent = torch.randn(args.batch, 440, frames)

    with torch.no_grad():
        difference = (generated(latent, embedding) - loop_baseline(generated, latent, embedding)).abs().max().item()
    print(f"loop baseline vs generated masks: max abs difference {difference:.2e}")

    runs = {
        "generated": (lambda: generated(latent, embedding), [*generated.parameters(), embedding]),
        "independent": (lambda: independent(latent), list(independent.parameters())),
        "loop": (lambda: loop_baseline(generated, latent, embedding), [*generated.parameters(), embedding]),
    }
    times = {name: [] for name in runs}
    for name, (run, params) in runs.items():  # warm-up
        _step(run, params)
    for _ in range(args.repeats):
        for name, (run, params) in runs.items():
            times[name].append(_step(run, params))
    median = {name: statistics.median(values) for name, values in times.items()}

    print(
        f"masking network forward+backward, batch {args.batch} x {args.seconds:g} s (T' = {frames}), "
        f"{torch.get_num_threads()} threads, median of {args.repeats}:"
    )
    for name, value in median.items():
        print(f"  {name:<12s} {1000 * value:8.1f} ms")
    to_independent = median["generated"] / median["independent"]
    to_loop = median["generated"] / median["loop"]
    print(f"  generated / independent = {to_independent:.2f} (target <= {RATIO_TO_INDEPENDENT})")
    print(f"  generated / loop        = {to_loop:.2f} (target < 1)")
    ok = to_independent <= RATIO_TO_INDEPENDENT and to_loop < 1 and difference < 1e-5
    print("PASS" if ok else "FAIL")
    if not args.no_record:
        size = f"batch {args.batch} x {args.seconds:g} s"
        record("bench_generator", {
            f"generated / independent time, {size}":
                f"{to_independent:.2f} ({1000 * median['generated']:.1f} ms / {1000 * median['independent']:.1f} ms); "
                f"target <= {RATIO_TO_INDEPENDENT}: {'met' if to_independent <= RATIO_TO_INDEPENDENT else 'MISSED'}",
            f"generated / loop over instruments time, {size}":
                f"{to_loop:.2f} (loop {1000 * median['loop']:.1f} ms); target < 1: {'met' if to_loop < 1 else 'MISSED'}",
            f"max abs difference loop - generated masks, {size}": f"{difference:.2e}; target < 1e-5: {'met' if difference < 1e-5 else 'MISSED'}",
        })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
