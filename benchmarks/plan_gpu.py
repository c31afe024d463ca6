"""What each chapter costs on a GPU, before anybody has one: FLOPs, steps, minutes and memory per profile.

For chapters 01-05 in the ``gpu`` and ``paper`` profiles (:mod:`metalearn_sep.scales`) and for the
recipes in ``configs/`` that train on MUSDB18 (chapter 06), every training run's step is measured
on the CPU's meta device (:func:`metalearn_sep.cost.measure_step`: FLOPs, kernels, activation
bytes; nothing is computed) and priced on a T4, an A100 and an H100 with the stated assumptions
of :data:`metalearn_sep.cost.GPUS`. A chapter's minutes add up all its runs' training steps
(validation, data preparation and evaluation are not counted); its memory is the largest run's.

    python benchmarks/plan_gpu.py [--profiles gpu paper] [--json PATH]

Exits 1 when a chapter's ``gpu`` profile is estimated over 20 minutes on a T4 or over a T4's
memory: the profile's promise. Takes about 35 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metalearn_sep.atomic import atomic_write_text
from metalearn_sep.cost import GPUS, estimate, measure_step
from metalearn_sep.experiments.profile_costs import duration
from metalearn_sep.recipe import build_model, build_objective, load_recipe
from metalearn_sep.scales import GPU_PROFILES, plan

CHAPTERS = ("01", "02", "03", "04", "05")
T4_MINUTES = 20.0
RECIPES = {"one GPU (06)": "configs/meta_tasnet_gpu.json", "paper (06)": "configs/meta_tasnet_paper.json"}
ROOT = Path(__file__).resolve().parents[1]


def chapter_rows(profiles: list[str]) -> list[dict]:
    rows = []
    for chapter in CHAPTERS:
        for profile in profiles:
            planned = plan(chapter, profile)
            rows.append({
                "chapter": chapter, "profile": profile,
                "runs": sum(p.run.count for p in planned),
                "steps": sum(p.run.count * p.run.steps for p in planned),
                "tflop_per_step": max(p.cost.flops for p in planned) / 1e12,
                "parameters": max(p.cost.parameters for p in planned),
                **{f"{name}_min": sum(p.minutes(gpu) for p in planned) for name, gpu in GPUS.items()},
                **{f"{name}_gib": max(p.peak_gib(gpu) for p in planned) for name, gpu in GPUS.items()},
            })
    return rows


def recipe_rows() -> list[dict]:
    rows = []
    for label, path in RECIPES.items():
        recipe = load_recipe(ROOT / path)
        data, training = recipe.data, recipe.training
        cost = measure_step(lambda: build_model(recipe), build_objective(recipe), training["batch_size"], 1,
                            round(data["segment"] * data["sample_rate"]))
        per_step = {name: estimate(cost, gpu, training["optimizer"]) for name, gpu in GPUS.items()}
        rows.append({
            "chapter": label, "profile": path, "runs": 1, "steps": training["steps"],
            "tflop_per_step": cost.flops / 1e12, "parameters": cost.parameters,
            **{f"{name}_min": training["steps"] * e.seconds / 60 for name, e in per_step.items()},
            **{f"{name}_gib": e.peak_gib for name, e in per_step.items()},
        })
    return rows


def table(rows: list[dict]) -> str:
    names = list(GPUS)
    head = ["chapter", "profile", "runs", "steps", "TFLOP/step", "params (M)", *(f"{n} time" for n in names), *(f"{n} GiB" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["chapter"], r["profile"], str(r["runs"]), f"{r['steps']:,}", f"{r['tflop_per_step']:.2f}", f"{r['parameters'] / 1e6:.2f}",
                 *(duration(r[f"{n}_min"]) for n in names), *(f"{r[f'{n}_gib']:.1f}" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", choices=GPU_PROFILES, default=list(GPU_PROFILES))
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = chapter_rows(args.profiles) + recipe_rows()
    print(table(rows))
    print("\nEstimates, not measurements: " + "; ".join(f"{g.name}: {g.tflops:g} TFLOP/s peak x {g.efficiency:.0%}, "
                                                          f"{g.bandwidth_gbs:g} GB/s, {g.launch_us:g} us per kernel"
                                                          for g in GPUS.values()) + " (metalearn_sep.cost).")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
    over = [r["chapter"] for r in rows if r["profile"] == "gpu"
            and (r["T4_min"] > T4_MINUTES or r["T4_gib"] > GPUS["T4"].memory_gib)]
    if over:
        print(f"gpu profile over {T4_MINUTES:g} min or over a T4's memory in chapter(s) {', '.join(over)}")
        return 1
    print(f"gpu profile: every chapter within {T4_MINUTES:g} min and {GPUS['T4'].memory_gib:g} GiB on a T4 (estimated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
