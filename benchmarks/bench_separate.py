"""Whole-song separation with the full Meta-TasNet: real-time factor and peak memory.

A stereo 44.1 kHz song from the synthetic band (seed 0; ``synthesize(0, 44100, S, stereo=True).sum(0)``)
is separated by the full default ``MetaTasNet()`` (45.5M parameters, untrained weights: the
timing does not depend on them) with :func:`metalearn_sep.separate.separate`, on ``--threads``
CPU threads (2 by default). Every measurement runs in a fresh subprocess, which reports:

* RTF: separation time / song duration (includes resampling, chunking, rescaling);
* peak RSS: the process's high-water mark (``resource.getrusage``), and the baseline before
  ``separate`` was called (Python, torch, the model and the song), so peak - baseline is
  what the separation itself needed;
* processed: window-seconds the model ran per second of song (both channels, context
  included), the compute the context costs.

Rows:

1. the default chunk length on a 3-minute and a 1-minute song: the peak must not grow with
   the song's length beyond the song-sized buffers (input, resampled copies, output stems);
2. the compute floor: the model's multiply-adds per second of window (FlopCounterMode) times
   the window-seconds processed per second of song, over the CPU's best rate for the
   masking network's own matrix product, in fp32 and bf16: no path can beat it;
3. the previous path on the 3-minute song, side by side: every stage decoded (``model(x)``),
   the masking network's layers as grouped convolutions and the decoder's as transposed
   ones (:data:`metalearn_sep.models.generator.FAST_FORMS` off), and the speed-up over it
   (``--no-previous`` skips it);
4. the trade-off on the 1-minute song: RTF and peak for other chunk lengths (``--chunks``)
   and other context lengths (``--contexts``, at the default chunk length);
5. the default chunk with bf16 autocast on the CPU (``--no-cpu-bf16`` skips it and row 7's
   bf16 run): about twice the matrix throughput where the CPU has bf16 instructions;
6. the same model in bf16 on CUDA (``torch.autocast("cuda", dtype=torch.bfloat16)``) when a
   GPU is present, else "skipped";
7. the command line's path, ``separate_file`` (``python -m metalearn_sep separate``), which
   streams the song from and to disk, on songs of ``--file-seconds`` (1 and 3 minutes by
   default): its peak must not grow with the song's length. ``separate()`` returns the stems
   as one tensor, so its peak does grow with the song-sized buffers (input, resampled
   copies, stems: about 4 MiB per second of stereo 44.1 kHz song). Then the longest song
   again in bf16 (``--precision bf16``), and how far its stems lie from fp32's (SNR per stem).

Targets (3-minute song, 2 CPU threads): separate()'s peak RSS < 4 GB (4e9 bytes) in fp32;
RTF <= 0.5 for separate() in fp32 (above its compute floor on this machine: reported, not
reachable), for separate() in bf16 and for the command line in bf16; the command line's peak
under 4 GB and flat (less than 100 MiB more for the longest song than for the shortest). The
exit status is 1 when one is missed. The machine's load average is printed next to every
timing: on a shared machine the RTF is pessimistic. Every row printed, and the verdicts, are
appended to ``benchmarks/RESULTS.md`` (its ``bench_separate`` table holds the recorded runs)
unless ``--no-record`` is given.

    python benchmarks/bench_separate.py [--threads 2] [--seconds 180 60] [--chunks 4 16 30] [--contexts 2]
                                        [--context 8] [--no-cpu-bf16] [--no-previous] [--skip-tradeoff] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from results_table import add_no_record_flag, record

PEAK_TARGET_MB = 4e9 / 2**20  # 4 GB, in MiB (the unit ru_maxrss / 1024 gives on Linux)
RTF_TARGET = 0.5
RATE = 44100
SHOWN: list[tuple[str, dict]] = []
"""Every ``(label, figures)`` that :func:`show` printed, for RESULTS.md."""
NOTES: list[tuple[str, str]] = []
"""Other ``(figure, value)`` rows printed (compute floor, bf16 agreement), for RESULTS.md."""


def file_child(args: argparse.Namespace) -> None:
    """Run ``python -m metalearn_sep separate``'s path (separate_file: streamed) in this process; print a JSON line."""
    import soundfile as sf
    import torch

    from metalearn_sep.streaming import separate_file

    torch.set_num_threads(args.threads)
    seconds = sf.info(str(args.song)).frames / RATE
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_before = os.getloadavg()[0]
    args.keep.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = separate_file(args.song, args.checkpoint, args.keep, args.chunk, args.context, device="cpu", progress=False, amp=args.amp)
    elapsed = time.perf_counter() - start
    finite = all(bool(np.isfinite(sf.read(str(p), dtype="float32")[0]).all()) for p in paths)
    print(json.dumps({
        "seconds": seconds, "chunk": args.chunk, "rtf": elapsed / seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "baseline_mb": baseline, "gpu_peak_mb": None,
        "processed": None, "finite": finite, "load": (load_before, os.getloadavg()[0]),
    }))


def floor_child(args: argparse.Namespace) -> None:
    """Print a JSON line: the model's multiply-adds per second of window and the CPU's best matrix-product rate.

    The multiply-adds are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a 4 s
    window of one channel (matrix products and convolutions; the element-wise work is not
    counted, so the floor derived from them is optimistic). The rate is the best of 20 runs
    of the masking network's own product, ``(4, 160, 160) @ (4, 160, 8800)``, in fp32 and bf16.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from metalearn_sep.models.meta_tasnet import MetaTasNet

    torch.set_num_threads(args.threads)
    model = MetaTasNet().eval()
    seconds = 4.0
    inputs = [torch.randn(1, 1, round(seconds * r)) for r in model.sample_rates]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # (its module tracking fails under inference_mode)
        model.separate_stages(inputs)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        weight, x = torch.randn(4, 160, 160, dtype=dtype), torch.randn(4, 160, 8800, dtype=dtype)
        best = float("inf")
        for _ in range(20):
            start = time.perf_counter()
            torch.matmul(weight, x)
            best = min(best, time.perf_counter() - start)
        rates[str(dtype).removeprefix("torch.")] = 4 * 160 * 160 * 8800 / best
    print(json.dumps({"macs_per_second": counter.get_total_flops() / 2 / seconds, "peak_macs": rates}))


def stem_snr(reference: Path, other: Path) -> dict[str, float]:
    """Per stem, 10 log10(|a|^2 / |a - b|^2) in dB between the WAVs of two separate_file output folders."""
    import soundfile as sf

    snr = {}
    for path in sorted(reference.glob("*/*.wav")):
        a = sf.read(str(path), dtype="float64")[0]
        b = sf.read(str(other / path.parent.name / path.name), dtype="float64")[0]
        snr[path.stem] = round(float(10 * np.log10(np.sum(a**2) / max(np.sum((a - b) ** 2), 1e-300))), 1)
    return snr


def child(args: argparse.Namespace) -> None:
    """Run one separation in this (fresh) process and print a JSON line of figures."""
    import torch

    from metalearn_sep.audio import read_audio
    from metalearn_sep.models.meta_tasnet import MetaTasNet
    from metalearn_sep.separate import separate

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = MetaTasNet().to(device)
    if args.previous_path:
        use_previous_path(model)
    processed = []  # batch x samples at 8 kHz of every window separate() runs (every window enters stage 0's encoder)
    model.stages[0].encoder.register_forward_pre_hook(lambda module, inputs: processed.append(inputs[0].shape[0] * inputs[0].shape[-1]))
    mixture, rate = read_audio(args.song, duration=args.duration)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_before = os.getloadavg()[0]
    if device.type == "cuda":
        separate(model, mixture[:, : 20 * rate], rate, chunk_seconds=args.chunk, context_seconds=args.context, amp=args.amp)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        processed.clear()
    start = time.perf_counter()
    stems = separate(model, mixture, rate, chunk_seconds=args.chunk, context_seconds=args.context, amp=args.amp)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    seconds = mixture.shape[-1] / rate
    print(json.dumps({
        "seconds": seconds,
        "chunk": args.chunk,
        "rtf": elapsed / seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_mb": baseline,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "processed": sum(processed) / model.sample_rates[0] / seconds,
        "finite": bool(torch.isfinite(stems).all()),
        "load": (load_before, os.getloadavg()[0]),
    }))


def use_previous_path(model) -> None:
    """Run ``model`` as separation did before its faster forms: every stage decoded, grouped convs, transposed convs."""
    import types

    import torch.nn.functional as F

    import metalearn_sep.models.enhanced as enhanced
    import metalearn_sep.models.generator as generator

    generator.FAST_FORMS = False
    enhanced.overlap_add_decode = lambda part, weight, stride, crop: F.conv_transpose1d(part, weight, stride=stride, padding=crop)
    model.separate_stages = types.MethodType(lambda self, inputs: self(inputs)[-1].estimates, model)


def measure(song: Path, duration: float, chunk: float, context: float, threads: int, device: str = "cpu", amp: bool = False,
            checkpoint: Path | None = None, previous: bool = False, keep: Path | None = None) -> dict:
    command = [
        sys.executable, __file__, "--child", "--song", str(song), "--duration", str(duration), "--chunk", str(chunk),
        "--context", str(context), "--threads", str(threads), "--device", device,
    ] + (["--amp"] if amp else []) + (["--checkpoint", str(checkpoint)] if checkpoint else []) + (["--previous-path"] if previous else []) + (["--keep", str(keep)] if keep else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"measurement failed (chunk {chunk} s, {duration} s song):\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "context": context}


def show(label: str, r: dict) -> None:
    SHOWN.append((label, r))
    gpu = f"  GPU peak {r['gpu_peak_mb']:7.0f} MiB" if r["gpu_peak_mb"] is not None else ""
    print(
        f"{label:<30} {r['seconds']:5.0f} s song  chunk {r['chunk']:4.1f} s  RTF {r['rtf']:6.2f}  "
        f"peak RSS {r['peak_mb']:6.0f} MiB (baseline {r['baseline_mb']:5.0f}, separation +{r['peak_mb'] - r['baseline_mb']:5.0f})"
        f"  processed {r['processed'] if r['processed'] is None else round(r['processed'], 2)} ch-s/s{gpu}  load {r['load'][0]:.1f}->{r['load'][1]:.1f}  finite={r['finite']}",
        flush=True,
    )


def row(label: str, r: dict) -> tuple[str, str]:
    """``(figure, value)`` of a row :func:`show` printed, for RESULTS.md."""
    streamed = label.startswith("command line")
    mode = (label.removeprefix("command line (streamed)").removeprefix(", ") or "CPU fp32") if streamed \
        else label.replace(", default chunk", "").replace(", chunk trade-off", "")
    figure = (f"{'command line (streamed)' if streamed else 'separate()'}, {r['seconds']:.0f} s song, {mode}, "
              f"chunk {r['chunk']:g} s, context {r['context']:g} s")
    value = f"RTF {r['rtf']:.2f}, peak RSS {r['peak_mb']:,.0f} MiB (separation +{r['peak_mb'] - r['baseline_mb']:,.0f})"
    if r["gpu_peak_mb"] is not None:
        value += f", GPU peak {r['gpu_peak_mb']:,.0f} MiB"
    if r["processed"] is not None:
        value += f", processed {r['processed']:.2f} ch-s/s"
    return figure, value + f"{'' if r['finite'] else ', NOT FINITE'}; load {r['load'][0]:.1f} -> {r['load'][1]:.1f}"


def main() -> int:
    from metalearn_sep.separate import DEFAULT_CHUNK_SECONDS, DEFAULT_CONTEXT_SECONDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, nargs="+", default=[180.0, 60.0], help="song lengths; the first is the target row")
    parser.add_argument("--chunks", type=float, nargs="*", default=[4.0, 16.0, 30.0], help="other chunk lengths for the trade-off (on the shortest song)")
    parser.add_argument("--contexts", type=float, nargs="*", default=[2.0], help="other context lengths for the trade-off")
    parser.add_argument("--context", type=float, default=DEFAULT_CONTEXT_SECONDS)
    parser.add_argument("--chunk", type=float, default=DEFAULT_CHUNK_SECONDS)
    parser.add_argument("--no-cpu-bf16", dest="cpu_bf16", action="store_false", help="skip the row of bf16 autocast on the CPU")
    parser.add_argument("--no-previous", dest="previous", action="store_false",
                        help="skip the row of the previous path (every stage decoded, grouped and transposed convs)")
    parser.add_argument("--skip-tradeoff", action="store_true")
    parser.add_argument("--file-seconds", type=float, nargs="*", default=[60.0, 180.0],
                        help="song lengths for the command line's streamed path (separate_file); its peak must not grow with them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--song", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--amp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--previous-path", dest="previous_path", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    add_no_record_flag(parser)
    args = parser.parse_args()
    if args.child:
        floor_child(args) if args.floor else file_child(args) if args.checkpoint else child(args)
        return 0

    import torch

    from metalearn_sep.audio import write_audio
    from metalearn_sep.data.band import synthesize

    from metalearn_sep.models.meta_tasnet import MetaTasNet
    from metalearn_sep.train import Trainer

    longest = max([*args.seconds, *args.file_seconds])
    print(f"Full MetaTasNet() (45.5M parameters), stereo {RATE} Hz synthetic band, {args.threads} CPU threads, "
          f"context {args.context} s per side; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "song.wav"
        write_audio(song, synthesize(0, RATE, longest, stereo=True).sum(0), RATE)
        results = {}
        for seconds in args.seconds:
            results[seconds] = measure(song, seconds, args.chunk, args.context, args.threads)
            show("CPU fp32, default chunk", results[seconds])
        floor = json.loads(subprocess.run([sys.executable, __file__, "--child", "--floor", "--threads", str(args.threads)],
                                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        windows = results[args.seconds[0]]["processed"]  # window-seconds per second of song, both channels
        floors = {dtype: floor["macs_per_second"] * windows / rate for dtype, rate in floor["peak_macs"].items()}
        NOTES.append(("compute floor of separate(), CPU (FlopCounterMode; the masking network's product timed)",
                      f"{floor['macs_per_second'] / 1e9:.1f} GMAC per window-second and channel x {windows:.2f} window-s per "
                      f"song-s; best matrix product {', '.join(f'{d} {r / 1e9:.0f} GMAC/s' for d, r in floor['peak_macs'].items())}: "
                      f"RTF floor {', '.join(f'{d} {f:.2f}' for d, f in floors.items())} (every product at that rate, "
                      "element-wise work free)"))
        print(": ".join(NOTES[-1]), flush=True)
        previous = None
        if args.previous:
            previous = measure(song, args.seconds[0], args.chunk, args.context, args.threads, previous=True)
            show("CPU fp32, previous path", previous)
            print(f"speed-up over the previous path: {previous['rtf'] / results[args.seconds[0]]['rtf']:.2f}x", flush=True)
        if not args.skip_tradeoff:
            shortest = min(args.seconds)
            for chunk in args.chunks:
                show("CPU fp32, chunk trade-off", measure(song, shortest, chunk, args.context, args.threads))
            for context in args.contexts:
                show(f"CPU fp32, context {context:g} s", measure(song, shortest, args.chunk, context, args.threads))
        bf16 = None
        if args.cpu_bf16:
            bf16 = measure(song, args.seconds[0], args.chunk, args.context, args.threads, amp=True)
            show("CPU bf16 autocast", bf16)
        if torch.cuda.is_available():
            show("CUDA bf16 autocast", measure(song, args.seconds[0], args.chunk, args.context, args.threads, "cuda", amp=True))
        else:
            print("CUDA bf16 autocast: skipped (no GPU on this machine)")
        streamed, streamed_bf16 = {}, None
        if args.file_seconds:
            torch.manual_seed(0)
            checkpoint = Trainer(MetaTasNet(), [], progress=False, device="cpu").save(Path(tmp) / "model.pt")
            for seconds in args.file_seconds:
                excerpt = Path(tmp) / f"song_{seconds:g}.wav"
                write_audio(excerpt, synthesize(0, RATE, longest, stereo=True).sum(0)[:, : round(seconds * RATE)], RATE)
                streamed[seconds] = measure(excerpt, seconds, args.chunk, args.context, args.threads, checkpoint=checkpoint,
                                            keep=Path(tmp) / f"fp32_{seconds:g}")
                show("command line (streamed)", streamed[seconds])
            if args.cpu_bf16:
                seconds = max(args.file_seconds)
                streamed_bf16 = measure(Path(tmp) / f"song_{seconds:g}.wav", seconds, args.chunk, args.context, args.threads,
                                        amp=True, checkpoint=checkpoint, keep=Path(tmp) / f"bf16_{seconds:g}")
                show("command line (streamed), CPU bf16 autocast", streamed_bf16)
                agreement = stem_snr(Path(tmp) / f"fp32_{seconds:g}", Path(tmp) / f"bf16_{seconds:g}")
                NOTES.append((f"command line, {seconds:.0f} s song: bf16 stems against fp32 stems", f"SNR {agreement} dB"))
                print(": ".join(NOTES[-1]), flush=True)

    target = results[args.seconds[0]]
    peaks = [r["peak_mb"] for r in results.values()]
    print(f"\npeak RSS over song lengths {list(results)} s: {[round(p) for p in peaks]} MiB "
          f"(separation itself: {[round(r['peak_mb'] - r['baseline_mb']) for r in results.values()]} MiB)")
    checks = [
        (f"peak RSS {target['peak_mb']:.0f} MiB < {PEAK_TARGET_MB:.0f} MiB (4 GB)", target["peak_mb"] < PEAK_TARGET_MB),
        (f"RTF {target['rtf']:.2f} <= {RTF_TARGET}, separate() fp32 (its compute floor here: {floors['float32']:.2f}; "
         f"load average {target['load'][0]:.1f} on {os.cpu_count()} cores)", target["rtf"] <= RTF_TARGET),
        ("finite output", all(r["finite"] for r in results.values())),
    ]
    for label, r in (("separate() bf16", bf16), ("command line bf16", streamed_bf16)):
        if r is not None:
            checks.append((f"RTF {r['rtf']:.2f} <= {RTF_TARGET}, {label} ({r['seconds']:.0f} s song)", r["rtf"] <= RTF_TARGET))

    if streamed:
        lengths = sorted(streamed)
        growth = streamed[lengths[-1]]["peak_mb"] - streamed[lengths[0]]["peak_mb"]
        checks.append((f"command line: peak {streamed[lengths[-1]]['peak_mb']:.0f} MiB for {lengths[-1]:g} s, "
                       f"{growth:+.0f} MiB over {lengths[0]:g} s (< 100 MiB: does not grow with the song)",
                       growth < 100 and max(r["peak_mb"] for r in streamed.values()) < PEAK_TARGET_MB))
        checks.append(("command line: finite output", all(r["finite"] for r in streamed.values())))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    if not args.no_record:
        record("bench_separate", [*(row(label, r) for label, r in SHOWN), *NOTES,
                                  ("targets", "; ".join(f"{'PASS' if ok else 'MISS'} {text}" for text, ok in checks))])
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
