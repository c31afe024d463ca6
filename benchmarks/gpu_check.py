"""The prepared GPU check: what the course's GPU settings really cost on the GPU at hand, beside the plan.

Run it whenever a CUDA GPU is available (at most about 8 minutes on one GPU)::

    python benchmarks/gpu_check.py [--budget-minutes 7.5] [--out benchmarks/results]

It measures, in this order (a later item is skipped, and says so, when the budget is spent):

1. each chapter's most expensive ``gpu``-profile run (:mod:`metalearn_sep.scales`): seconds per
   training step (median of timed steps after warm-up, through :meth:`Trainer.train_step
   <metalearn_sep.train.Trainer.train_step>`: the real autocast, fp32 islands and optimiser) and
   peak memory (``torch.cuda.max_memory_allocated``), in fp32 and, where the GPU has it, bf16;
2. the paper model (``MetaTasNet()``, 45.5 M parameters, Ranger) at batch 12 x 8 s at 32 kHz if it
   fits, and the largest batch of 8 s crops that does (bisection on real steps);
3. separating a 3-minute stereo song at 44.1 kHz with the paper model (:func:`~metalearn_sep.separate.separate`):
   the real-time factor;
4. bf16 + ``torch.compile`` (fixed crop length) for each chapter's run of item 1.

Every step figure is printed beside :mod:`metalearn_sep.cost`'s estimate for this GPU class and
their ratio; the results go to ``<out>/gpu-<device>.json`` (written atomically) with a Markdown
table for ``benchmarks/RESULTS.md``. Exits 1 without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metalearn_sep import SOURCES
from metalearn_sep.atomic import atomic_write_text
from metalearn_sep.cost import GIB, estimate, gpu_class, measure_step
from metalearn_sep.losses import MetaTasNetObjective
from metalearn_sep.models import MetaTasNet
from metalearn_sep.precision import has_bf16
from metalearn_sep.scales import Run, plan
from metalearn_sep.separate import separate
from metalearn_sep.train import Trainer, TrainerConfig

CHAPTERS = ("01", "02", "03", "04", "05")
WARMUP, TIMED = 3, 8


def step_time(build: Callable[[], torch.nn.Module], objective: Any, batch: int, samples: int, optimizer: str,
              amp: bool, compile: bool = False, warmup: int = WARMUP, timed: int = TIMED) -> dict[str, float]:
    """Median seconds of a training step and the peak memory (GiB), or ``{"error": ...}`` when it does not fit."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    gen = torch.Generator().manual_seed(0)
    stems = 0.1 * torch.randn(batch, len(SOURCES), 1, samples, generator=gen)
    mixture = stems.sum(1)
    trainer = None
    try:
        trainer = Trainer(build(), [], TrainerConfig(batch_size=batch, optimizer=optimizer), objective=objective,
                          device="cuda", amp=amp, compile=compile, progress=False)
        times = []
        for k in range(warmup + timed):
            torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_step(mixture, stems)  # reads the loss: waits for the GPU
            if k >= warmup:
                times.append(time.perf_counter() - start)
        return {"seconds": statistics.median(times), "peak_gib": torch.cuda.max_memory_allocated() / GIB}
    except (MemoryError, torch.OutOfMemoryError) as err:
        return {"error": str(err).splitlines()[0]}
    finally:
        del trainer
        gc.collect()
        torch.cuda.empty_cache()


def largest_paper_batch(samples: int, amp: bool, start: int, cap: int = 96) -> int:
    """The largest batch (at most ``cap``) of the paper model that trains a step without running out of memory (bisection)."""
    low, high = 0, start
    while high <= cap and "error" not in step_fits(high, samples, amp):
        low, high = high, high * 2
    if high > cap:
        return low
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if "error" not in step_fits(middle, samples, amp) else (low, middle)
    return low


def step_fits(batch: int, samples: int, amp: bool) -> dict[str, float]:
    """One untimed step of the paper model (``{"error": ...}`` when it runs out of memory)."""
    return step_time(MetaTasNet, MetaTasNetObjective(32000), batch, samples, "ranger", amp, warmup=1, timed=1)


def costliest(chapter: str) -> tuple[Run, Any]:
    planned = max(plan(chapter, "gpu"), key=lambda p: p.cost.flops)
    return planned.run, planned.cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=7.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA GPU here: gpu_check.py measures a GPU, so run it where there is one (Colab, a lab machine).")
        return 1
    began = time.perf_counter()

    def left() -> float:
        return args.budget_minutes * 60 - (time.perf_counter() - began)

    name = torch.cuda.get_device_name()
    bf16 = has_bf16("cuda")
    klass = gpu_class(name, bf16)
    result: dict[str, Any] = {"device": name, "plan_class": klass.name, "bf16": bf16, "torch": torch.__version__,
                              "date": time.strftime("%Y-%m-%d"), "steps": [], "skipped": []}
    print(f"{name}: compared with the plan's {klass.name}; bf16 {'native' if bf16 else 'absent (fp32 only)'}")

    def record(label: str, run_batch: int, samples: int, cost: Any, optimizer: str, measured: dict[str, float], mode: str) -> None:
        planned = estimate(cost, klass, optimizer)
        row = {"what": label, "mode": mode, "batch": run_batch, "samples": samples, **measured,
               "plan_seconds": planned.seconds, "plan_gib": planned.peak_gib}
        result["steps"].append(row)
        shown = (f"{measured['seconds']:.3f} s/step (plan {planned.seconds:.3f}, x{measured['seconds'] / planned.seconds:.2f}), "
                 f"{measured['peak_gib']:.1f} GiB (plan {planned.peak_gib:.1f})") if "seconds" in measured else measured["error"]
        print(f"  {label:38s} {mode:13s} {shown}")

    modes = [("fp32", False)] + ([("bf16", True)] if bf16 else [])
    chapters = {c: costliest(c) for c in CHAPTERS}
    for chapter, (run, cost) in chapters.items():
        samples = round(run.rate * run.seconds)
        for mode, amp in modes:
            if left() < 60:
                result["skipped"].append(f"{chapter} {mode}")
                continue
            record(f"{chapter} {run.label}", run.batch, samples, cost, run.optimizer,
                   step_time(run.build, run.objective(), run.batch, samples, run.optimizer, amp), mode)

    paper_samples, amp = 8 * 32000, bf16
    if left() > 90:
        cost = measure_step(MetaTasNet, MetaTasNetObjective(32000), 12, 1, paper_samples)
        record("paper model, batch 12 x 8 s", 12, paper_samples, cost, "ranger",
               step_time(MetaTasNet, MetaTasNetObjective(32000), 12, paper_samples, "ranger", amp), modes[-1][0])
        result["paper_largest_batch"] = largest_paper_batch(paper_samples, amp, start=2)
        print(f"  paper model: largest batch of 8 s crops that trains: {result['paper_largest_batch']}")
    else:
        result["skipped"].append("paper model")

    if left() > 60:
        song = 0.1 * torch.randn(2, 180 * 44100, generator=torch.Generator().manual_seed(1))
        model = MetaTasNet().cuda().eval()
        separate(model, song[:, : 20 * 44100], 44100, device="cuda")  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        separate(model, song, 44100, device="cuda")
        torch.cuda.synchronize()
        result["separation_rtf"] = (time.perf_counter() - start) / 180
        print(f"  separating a 3-minute stereo song with the paper model: real-time factor {result['separation_rtf']:.4f}")
        del model
    else:
        result["skipped"].append("separation")

    if bf16:
        for chapter, (run, cost) in chapters.items():
            samples = round(run.rate * run.seconds)
            if left() < 90:
                result["skipped"].append(f"{chapter} bf16+compile")
                continue
            record(f"{chapter} {run.label}", run.batch, samples, cost, run.optimizer,
                   step_time(run.build, run.objective(), run.batch, samples, run.optimizer, True, compile=True), "bf16+compile")

    result["minutes"] = (time.perf_counter() - began) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"\n{markdown(result)}\n\nWrote {path} in {result['minutes']:.1f} min; skipped: {', '.join(result['skipped']) or 'nothing'}")
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The step rows as a Markdown table for ``benchmarks/RESULTS.md``."""
    lines = [f"GPU check on {result['device']} ({result['date']}, torch {result['torch']}), plan class {result['plan_class']}:", "",
             "| run | mode | batch | s/step | plan s/step | ratio | peak GiB | plan GiB |", "|---|---|---|---|---|---|---|---|"]
    for r in result["steps"]:
        if "seconds" in r:
            lines.append(f"| {r['what']} | {r['mode']} | {r['batch']} | {r['seconds']:.3f} | {r['plan_seconds']:.3f} | "
                         f"{r['seconds'] / r['plan_seconds']:.2f} | {r['peak_gib']:.1f} | {r['plan_gib']:.1f} |")
        else:
            lines.append(f"| {r['what']} | {r['mode']} | {r['batch']} | {r['error']} | {r['plan_seconds']:.3f} | | | {r['plan_gib']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
