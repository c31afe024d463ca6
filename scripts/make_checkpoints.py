"""``make checkpoints``: the course's shipped models in ``assets/checkpoints/``, regenerated deterministically.

1. Chapters 01, 03, 04 and 05 (``chapter-01`` ...): the best single-model variant recorded in
   ``results/<chapter>/`` (highest mean SI-SDR improvement over its seeds; "4 dedicated" is four
   models, so it is not shipped even where it scores higher: the manifest says so), at its best
   seed, trained again by :mod:`metalearn_sep.experiments` (same settings, same seed: the same
   run) and scored again on the chapter's held-out songs. ``chapter-03-generated`` likewise for the
   variant chapter 03 takes apart (:data:`SUBJECTS`).
2. ``meta-tasnet-cpu``, the default separator: chapter 05's full recipe
   (``configs/meta_tasnet_cpu.json``) trained ``--recipe-steps`` steps on the CPU and scored as
   ``python -m metalearn_sep evaluate`` scores it (8 stereo test songs of 8 s at 32 kHz, whole-song
   separation).
3. ``chapter-<NN>-variants`` for chapters 01-05: the first seconds of every variant's estimates
   on the first held-out song, from the weights ``make results`` saved for seed 0 (not retrained:
   they need the sweep's ``.pt`` files), for the notebooks' comparison players.

Every model is scored with its weights in float32 and rounded to float16; it is stored in float16
when that moves the mean SI-SDR improvement by less than :data:`FP16_TOLERANCE_DB`. The manifest
entry (:func:`metalearn_sep.pretrained.ship`) holds the SHA-256, size, where the model comes from,
the commit, the held-out scores, the margin over the mixture (the mean SI-SDR improvement, which
``tests/test_shipped.py`` checks), the float16 change and the training time. Each step's time
and the total are printed. One torch job at a time on a 2-core machine.

    python scripts/make_checkpoints.py [--only chapter-04 ...] [--recipe-steps 2000]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from metalearn_sep import SOURCES
from metalearn_sep.experiments import MODULES, RunResult, chapter, rescore, with_mean
from metalearn_sep.experiments.summary import RESULTS_DIR, read_runs, slug, statistics
from metalearn_sep.experiments.recorded import variant_estimates
from metalearn_sep.pretrained import ASSETS, DEFAULT_SEPARATOR, excerpts_name, held_out_scores, ship, ship_excerpts

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("01", "03", "04", "05")
FP16_TOLERANCE_DB = 0.05
RECIPE = ROOT / "configs" / "meta_tasnet_cpu.json"
BAND_SCORING = {"cpu": {"songs": 8, "seconds": 8.0}, "ci": {"songs": 2, "seconds": 1.0}}
"""The default separator's held-out songs per scale (cpu: what ``python -m metalearn_sep evaluate`` uses)."""
SUBJECTS = {"03": "generated"}
"""A variant a chapter's notebook takes apart beyond its experiment, shipped as ``chapter-<NN>-<variant>`` at its
best seed whichever variant scores best (chapter 03's sections 4 and 5 study a trained generator's embeddings)."""
EXCERPT_SECONDS = {8000: 3.0, 32_000: 2.0}
"""Seconds of each variant's estimates shipped, by the chapter's rate (2 s at 32 kHz keeps chapter 04's file near 1 MB)."""
ABOUT_DEFAULT = ("chapter 05's recipe (2.7M parameters, 3 stages) trained minutes on 2 CPU cores on the synthetic band "
                 "only: it has never heard real music (the paper's released weights are the real-music model)")


def commit() -> str:
    """``git rev-parse --short HEAD`` with ``+dirty`` when tracked files differ, else ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def best_single_model(number: str, results: Path, variant: str | None = None) -> tuple[str, int, dict]:
    """``(variant, seed, facts)``: the recorded single-model variant with the highest mean over seeds, and its best seed.

    With ``variant``, that variant and its best seed.
    """
    runs = read_runs(number, results)
    variants = [variant] if variant else [v for v in chapter(number).VARIANTS if v != "4 dedicated"]
    table = statistics(runs, "si_sdr_improvement", variants)
    if not table:
        raise SystemExit(f"No recorded runs of chapter {number} in {results}: run make results first.")
    variant = max(table, key=lambda v: table[v]["mean"].mean)
    seed = max((r for r in runs if r["variant"] == variant), key=lambda r: r["si_sdr_improvement"]["mean"])["seed"]
    facts = {"variant": variant, "seed": seed, "variant_mean_db": round(table[variant]["mean"].mean, 3),
             "recorded_run_mean_db": round(next(r for r in runs if r["variant"] == variant and r["seed"] == seed)["si_sdr_improvement"]["mean"], 3)}
    dedicated = statistics(runs, "si_sdr_improvement", ["4 dedicated"]).get("4 dedicated")
    if dedicated is not None and dedicated["mean"].mean > table[variant]["mean"].mean:
        facts["note"] = (f"4 dedicated models scored {dedicated['mean'].mean - table[variant]['mean'].mean:.2f} dB higher "
                         "on average; the best single model is shipped")
    return variant, seed, facts


def rounded(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every floating weight rounded to float16 and back."""
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*copy_.parameters(), *copy_.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return copy_


def ship_scored(model: nn.Module, name: str, score, assets: Path, **facts) -> dict:
    """Score ``model`` in fp32 and fp16, and ship it in the narrower form the tolerance allows."""
    gains, sdr = score(model.eval())
    half_gains, _ = score(rounded(model).eval())
    change = half_gains["mean"] - gains["mean"]
    entry = ship(model, name, assets, half=abs(change) < FP16_TOLERANCE_DB, commit=commit(),
                 scores={"si_sdr_improvement": gains, "sdr": sdr}, margin_db=gains["mean"], fp16_change_db=change, **facts)
    shipped_gains, _ = held_out_scores(name, assets)  # the file as shipped, loaded and scored as the tests do
    print(f"{name}: SI-SDRi {gains['mean']:.2f} dB (as shipped {shipped_gains['mean']:.2f}), SDR {sdr['mean']:.2f} dB; fp16 "
          f"moves it {change:+.3f} dB -> stored {entry['dtype']}, {entry['bytes'] / 1e6:.1f} MB", flush=True)
    return entry


def chapter_model(number: str, results: Path, assets: Path, scale: str, subject: str | None = None) -> None:
    variant, seed, facts = best_single_model(number, results, subject)
    name = f"chapter-{number}" + (f"-{slug(subject)}" if subject else "")
    module = chapter(number)
    began = time.perf_counter()
    result: RunResult = module.run(variant, seed, module.prepare(scale))
    print(f"chapter {number}: {variant} seed {seed} trained again in {result.seconds / 60:.1f} min "
          f"(recorded {facts['recorded_run_mean_db']:.2f} dB, now {result.scores['mean']:.2f} dB)", flush=True)
    ship_scored(result.models["all"], name, lambda m: rescore(number, variant, m, scale), assets,
                source=f"results/{number}: {variant}, seed {seed}", chapter=number, scale=scale, steps=result.steps,
                train_seconds=round(result.seconds, 1), wall_seconds=round(time.perf_counter() - began, 1), **facts)


def excerpts(number: str, results: Path, assets: Path, scale: str) -> None:
    module = chapter(number)
    seconds = EXCERPT_SECONDS[module.RATE]
    estimates = variant_estimates(number, seed=0, song=0, seconds=seconds, root=results, scale=scale)
    seconds = next(iter(estimates.values())).shape[-1] / module.RATE  # shorter where the song is
    entry = ship_excerpts(number, estimates, assets, seed=0, song=0, seconds=seconds, sample_rate=module.RATE, scale=scale, commit=commit(),
                          source=f"results/{number}: seed 0 of every variant (the sweep's weights)")
    print(f"{excerpts_name(number)}: {len(estimates)} variants x {seconds:g} s, {entry['bytes'] / 1e6:.2f} MB", flush=True)


def default_separator(recipe_path: Path, steps: int, assets: Path, scale: str) -> None:
    from metalearn_sep.evaluate import band_scores
    from metalearn_sep.recipe import load_recipe, prepare

    recipe = load_recipe(recipe_path)
    began = time.perf_counter()
    run = prepare(recipe)
    trainer = run.trainer(device="cpu", progress=False)
    history = trainer.fit(steps)
    curve = [(h["step"], round(h["valid_mean"], 2)) for h in history if "valid_mean" in h]
    print(f"{DEFAULT_SEPARATOR}: {steps} steps in {trainer.elapsed / 60:.1f} min; validation SI-SDRi by step {curve}", flush=True)
    data = recipe.data

    def score(model: nn.Module) -> tuple[dict, dict]:
        gains, sdr = band_scores(model, data["sample_rate"], bool(data.get("stereo")), device="cpu", **BAND_SCORING[scale])
        return with_mean(dict(zip(SOURCES, gains.tolist()))), with_mean(dict(zip(SOURCES, sdr.tolist())))

    ship_scored(run.model.cpu(), DEFAULT_SEPARATOR, score, assets, about=ABOUT_DEFAULT,
                source=f"{recipe_path.relative_to(ROOT) if ROOT in recipe_path.parents else recipe_path}, {steps} steps",
                steps=steps, train_seconds=round(trainer.elapsed, 1), wall_seconds=round(time.perf_counter() - began, 1),
                validation_curve=curve, scoring={"sample_rate": data["sample_rate"], "stereo": bool(data.get("stereo")),
                                                 **BAND_SCORING[scale]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    subjects = {f"chapter-{n}-{slug(v)}": (n, v) for n, v in SUBJECTS.items()}
    names = [f"chapter-{n}" for n in CHAPTERS] + [*subjects, DEFAULT_SEPARATOR] + [excerpts_name(n) for n in MODULES]
    parser.add_argument("--only", nargs="+", choices=names, default=names)
    parser.add_argument("--recipe-steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--assets", type=Path, default=ASSETS, help=argparse.SUPPRESS)
    parser.add_argument("--recipe", type=Path, default=RECIPE, help=argparse.SUPPRESS)
    parser.add_argument("--scale", default="cpu", choices=("cpu", "ci"), help=argparse.SUPPRESS)  # ci: the tests' tiny models
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    for name in args.only:
        began = time.perf_counter()
        if name == DEFAULT_SEPARATOR:
            default_separator(args.recipe, args.recipe_steps, args.assets, args.scale)
        elif name.endswith("-variants"):
            excerpts(name.split("-")[1], args.results, args.assets, args.scale)
        elif name in subjects:
            number, variant = subjects[name]
            chapter_model(number, args.results, args.assets, args.scale, subject=variant)
        else:
            chapter_model(name.removeprefix("chapter-"), args.results, args.assets, args.scale)
        print(f"{name} done in {(time.perf_counter() - began) / 60:.1f} min", flush=True)
    print(f"make checkpoints: {len(args.only)} file(s) in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
