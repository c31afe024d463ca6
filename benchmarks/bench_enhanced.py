"""Speed of Meta-TasNet's enhanced encoder/decoder against Conv-TasNet's plain ones, and the spectrogram's share.

Forward + backward time on CPU at the paper's stage-0 setting (N = 440, L = 20, S = 20,
8 kHz), default batch 4 x 2 s:

* enhanced:      EnhancedEncoder + EnhancedDecoder (three conv branches, spectrogram, fusion);
* plain S=20:    Conv1d(1, N, 20, stride 20) + ConvTranspose1d(N, 1, 20, stride 20), no bias;
* plain S=10:    the same with stride 10, Conv-TasNet's own 50 % overlap (L/2 hop).

The plain baselines are bare ``nn.Conv1d`` / ``nn.ConvTranspose1d`` written here, because
``conv_tasnet.Encoder(N, L)`` fixes the stride to L/2 and cannot express S = 20 with L = 20.

The fair comparison is plain S=20: it yields the same latent (N x 400 frames per second) as
the enhanced encoder, so the masking network after it costs exactly the same and the two
rows differ only in the front end. Plain S=10 is what Conv-TasNet itself would use: it has
twice the latent frames, which costs more here and roughly doubles the time of the masking
network after it (that network dominates a whole model; it is not measured here).

Also reported: the share of the enhanced encoder's forward + backward time spent in its
spectrogram branch (measured alone on the same input) and in its conv branches.

All variants run interleaved in every round; medians are compared. No target is stated for
this comparison, so the script always exits 0 once it has printed its figures. They are
appended to ``benchmarks/RESULTS.md`` (its ``bench_enhanced`` table holds the recorded
runs) unless ``--no-record`` is given.

    python benchmarks/bench_enhanced.py [--batch 4] [--seconds 2.0] [--repeats 15] [--threads 1] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from metalearn_sep.models.enhanced import EnhancedDecoder, EnhancedEncoder
from results_table import add_no_record_flag, record

N, L, STRIDE, RATE = 440, 20, 20, 8000


def plain_pair(stride: int) -> nn.Module:
    """BASELINE: Conv-TasNet's linear encoder and decoder, kernel L, the given stride, no bias."""
    return nn.Sequential(
        nn.Conv1d(1, N, L, stride=stride, bias=False),
        nn.ConvTranspose1d(N, 1, L, stride=stride, bias=False),
    )


def timed(run: Callable[[], torch.Tensor], module: nn.Module) -> float:
    """Seconds for one forward + backward (gradients of the parameters only)."""
    module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    out = run()
    out.square().mean().backward()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="audio length per example at 8 kHz")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 gives steadier figures on a shared machine)")
    add_no_record_flag(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    length = int(args.seconds * RATE) // STRIDE * STRIDE
    x = torch.randn(args.batch, 1, length)
    encoder, decoder = EnhancedEncoder(N, L, STRIDE, RATE), EnhancedDecoder(N, L, STRIDE)
    enhanced = nn.ModuleDict({"encoder": encoder, "decoder": decoder})
    plain20, plain10 = plain_pair(20), plain_pair(10)
    frames = length // STRIDE

    def conv_branches() -> torch.Tensor:
        return torch.cat([conv(x) for conv in encoder.convs], dim=1).relu()

    variants: dict[str, tuple[Callable[[], torch.Tensor], nn.Module]] = {
        "enhanced enc+dec": (lambda: decoder(encoder(x)), enhanced),
        "plain S=20 enc+dec": (lambda: plain20(x), plain20),
        "plain S=10 enc+dec": (lambda: plain10(x), plain10),
        "enhanced encoder": (lambda: encoder(x), encoder),
        "  spectrogram branch": (lambda: encoder.spectrogram(x, frames), encoder.spectrogram),
        "  conv branches": (conv_branches, encoder.convs),
    }
    for run, module in variants.values():  # warm-up
        timed(run, module)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (run, module) in variants.items():
            times[name].append(timed(run, module))
    median = {name: statistics.median(values) for name, values in times.items()}

    print(
        f"CPU forward+backward, batch {args.batch} x {length / RATE:g} s at {RATE} Hz, N={N}, L={L}, "
        f"{args.threads} thread(s), median of {args.repeats} interleaved rounds (torch {torch.__version__})"
    )
    print(f"{'variant':24s} {'ms':>9s} {'vs plain S=20':>14s} {'vs plain S=10':>14s} {'latent frames':>14s}")
    latent_frames = {"plain S=10 enc+dec": length // 10 - 1, "plain S=20 enc+dec": frames, "enhanced enc+dec": frames}
    for name in ("enhanced enc+dec", "plain S=20 enc+dec", "plain S=10 enc+dec"):
        print(
            f"{name:24s} {1e3 * median[name]:9.2f} {median[name] / median['plain S=20 enc+dec']:13.1f}x "
            f"{median[name] / median['plain S=10 enc+dec']:13.1f}x {latent_frames[name]:14d}"
        )
    print("fair comparison: plain S=20 (same N x T' latent, so the masking network after it costs the same)")
    print(f"{'enhanced encoder':24s} {1e3 * median['enhanced encoder']:9.2f}")
    for name in ("  spectrogram branch", "  conv branches"):
        share = median[name] / median["enhanced encoder"]
        print(f"{name:24s} {1e3 * median[name]:9.2f}   {100 * share:5.1f} % of the enhanced encoder")
    branches = median["  spectrogram branch"] + median["  conv branches"]
    print(f"  fusion (remainder)     {100 * (1 - branches / median['enhanced encoder']):5.1f} %")
    if not args.no_record:
        size = f"batch {args.batch} x {length / RATE:g} s"
        record("bench_enhanced", {
            f"enhanced / plain S=20 enc+dec time (equal N and latent frames), {size}":
                f"{median['enhanced enc+dec'] / median['plain S=20 enc+dec']:.1f}x "
                f"({1e3 * median['enhanced enc+dec']:.2f} ms / {1e3 * median['plain S=20 enc+dec']:.2f} ms, {args.threads} thread(s))",
            f"enhanced / plain S=10 enc+dec time (twice the latent frames), {size}":
                f"{median['enhanced enc+dec'] / median['plain S=10 enc+dec']:.1f}x",
            "spectrogram branch, share of the enhanced encoder's time":
                f"{100 * median['  spectrogram branch'] / median['enhanced encoder']:.1f} %",
            "conv branches, share of the enhanced encoder's time":
                f"{100 * median['  conv branches'] / median['enhanced encoder']:.1f} %",
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
