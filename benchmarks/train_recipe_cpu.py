"""A full 3-stage Meta-TasNet trained with the paper's whole recipe on a CPU, for a fixed wall-clock budget.

What it trains:

* model: ``MetaTasNet(stages=3)`` at 8, 16 and 32 kHz, shrunk to fit two CPU cores
  (defaults: N = 64 at 8 kHz, so 64 / 128 / 256 latent channels, base kernel and stride
  20 samples = 2.5 ms at every stage as in the paper; B = H = 64, X = 4 blocks, R = 2
  stacks, 32 spectrogram channels; generated masking networks: 2,726,428 parameters).
  The paper's model is N = 440, B = H = 160, X = 6, R = 3, 256 spectrogram channels
  (45.5 M parameters).
* objective: :class:`~metalearn_sep.losses.MetaTasNetObjective` with all four terms at the
  paper's weights (λ_rec = 0.05, λ_dis = 3, λ_sim = 2), summed over the three stages.
* optimiser: Ranger (RAdam + Lookahead k = 6, α = 0.5, decoupled weight decay 5e-4),
  gradient clipping at 5, SGDR cosine restarts with the peak multiplied by 0.85 at each
  restart. The planned number of steps is 90 % of the budget divided by the time of 10
  steps of a probe (a separate copy of the model, discarded); the SGDR period is half of
  it (one restart, both cycles end near lr 0). Training stops at the plan or at the
  budget, whichever comes first: on a machine that gets busier during the run it stops
  early, part-way down a cosine.
  The base learning rate (default 1e-2) is ten times the paper's 1e-3, which is tuned
  for 300 k steps of batch 12 x 8 s; a run of a thousand steps needs a larger one
  (chapter 05's ablation trains one stage with 2e-2).
* data: batches of 4 x 1 s from the synthetic band at 32 kHz, stereo songs through
  :class:`~metalearn_sep.data.augment.AugmentedDataset` (a random channel per stem, a gain
  U(0.75, 1.25) per stem, half of each batch remixed across songs, silent stems masked);
  the encoders' spectrogram statistics are measured on training mixtures first.

At the end it prints the SI-SDR improvement (dB, over the unprocessed mixture) per source
on held-out mono test songs, for every stage at its own rate (the last stage's row is the
32 kHz output), the training time (data loading included, validation excluded), the
number of steps and the load average of the machine (timings on a shared machine are
not comparable with a quiet one). The checkpoint goes to ``--out`` (default a new folder
under the system's temporary directory); the figures are appended to
``benchmarks/RESULTS.md`` (its ``train_recipe_cpu`` table holds the recorded runs) unless
``--no-record`` is given. It exits 1 if the last stage does not beat the mixture on
average (mean improvement <= 0).

The run is built by :mod:`metalearn_sep.recipe` from ``configs/meta_tasnet_cpu.json`` (the
same recipe ``python -m metalearn_sep train`` trains, there for a fixed number of steps);
the options below override its sizes and settings, and the plan replaces its steps and
SGDR period.

    python benchmarks/train_recipe_cpu.py [--minutes 20] [--threads 2] [--out DIR] [--no-record]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

from metalearn_sep import SOURCES
from metalearn_sep.data.band import BandDataset
from metalearn_sep.losses import MetaTasNetObjective
from metalearn_sep.metrics import si_sdr_improvement
from metalearn_sep.models.meta_tasnet import MetaTasNet
from metalearn_sep.recipe import parse_recipe, prepare
from metalearn_sep.train import evaluate
from results_table import add_no_record_flag, record

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "meta_tasnet_cpu.json"

OPTIONS = {
    "N": ("model", "N", "latent channels of the 8 kHz stage (x2 per stage; divisible by 8)"),
    "B": ("model", "B", None),
    "H": ("model", "H", None),
    "X": ("model", "X", None),
    "R": ("model", "R", None),
    "spec-channels": ("model", "spec_channels", None),
    "batch": ("training", "batch_size", None),
    "segment": ("data", "segment", "seconds per training example"),
    "lr": ("training", "lr", None),
    "seed": ("training", "seed", None),
}
"""Command-line options that override an entry of the config: option -> (section, key, help)."""


def load() -> str:
    """The 1, 5 and 15 minute load averages, or a note where the OS has none."""
    try:
        return "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


@torch.no_grad()
def stage_improvements(model: MetaTasNet, objective: MetaTasNetObjective, data: BandDataset) -> torch.Tensor:
    """SI-SDR improvement ``(stages, 4)`` of every stage's estimates at its own rate, averaged over songs (silent stems skipped).

    Each song enters at unit level, as :meth:`MetaTasNetObjective.estimate` feeds it (SI-SDR is scale invariant).
    """
    model.eval()
    sums = torch.zeros(len(model.stages), len(SOURCES), dtype=torch.float64)
    counts = torch.zeros_like(sums)
    for mixture, stems in data:
        song = torch.cat([mixture.unsqueeze(0), stems], dim=0) / mixture.std()  # (1 + 4, 1, T)
        signals = model.stage_inputs(song.unsqueeze(0), objective.data_rate)
        outputs = model([signal[:, 0] for signal in signals])
        for s, (output, signal) in enumerate(zip(outputs, signals)):
            gain = si_sdr_improvement(output.estimates.float(), signal[:, 1:], signal[:, 0])[0].double()
            sums[s] += torch.nan_to_num(gain)
            counts[s] += ~gain.isnan()
    return sums / counts


def main() -> int:
    config = json.loads(CONFIG.read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget (validation excluded)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="folder for the checkpoint (default: a new temporary folder)")
    for option, (section, key, text) in OPTIONS.items():
        default = config[section][key]
        parser.add_argument(f"--{option}", type=type(default), default=default, help=text or f"{section}.{key} (default {default})")
    parser.add_argument("--eval-songs", type=int, default=8)
    parser.add_argument("--eval-seconds", type=float, default=8.0)
    add_no_record_flag(parser)
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}.")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}.")
    for option, (section, key, _) in OPTIONS.items():
        config[section][key] = getattr(args, option.replace("-", "_"))
    config["data"]["song_seconds"] = max(config["data"]["song_seconds"], args.segment)
    try:
        recipe = parse_recipe(config)
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="metalearn_recipe_"))
    out.mkdir(parents=True, exist_ok=True)
    budget = 60.0 * args.minutes

    run = prepare(recipe, device="cpu")  # the model (seeded), objective, augmented data and spectrogram statistics
    model, objective, rate, training = run.model, run.objective, recipe.data["sample_rate"], recipe.training
    test = BandDataset("test", rate, segment=None, song_duration=args.eval_seconds, size=args.eval_songs)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sizes = ", ".join(f"{k}={model.config[k]}" for k in ("stages", "N", "B", "H", "X", "R", "spec_channels"))
    print(f"MetaTasNet({sizes}): {params:,} trained parameters, rates {model.sample_rates} Hz")
    print(f"recipe: {training['optimizer'].capitalize()} lr {training['lr']:g}, wd {training['weight_decay']:g}, "
          f"{training['schedule'].upper()} (x{training['schedule_decay']:g} per restart), clip {training['clip_grad']:g}, "
          f"batch {training['batch_size']} x {recipe.data['segment']:g} s, "
          f"{'augmentations, ' if recipe.data['augment'] else ''}lambda_rec {objective.lambda_rec:g} / "
          f"lambda_dis {objective.lambda_dis:g} / lambda_sim {objective.lambda_sim:g}; "
          f"budget {args.minutes:g} min on {args.threads} threads")
    print(f"load average at start (1/5/15 min): {load()}")

    # Plan the run from the speed of a few steps of a probe: a separate copy (same sizes, same data), then discarded.
    probe = dataclasses.replace(run, model=MetaTasNet(**model.config), valid=None).trainer(progress=False, device="cpu")
    probe.fit(2)
    start = probe.elapsed
    probe.fit(12)
    per_step = (probe.elapsed - start) / 10
    planned = max(10, int(0.9 * budget / per_step))  # 10 % margin for a machine that slows down
    period = math.ceil(planned / 2)
    print(f"about {per_step:.2f} s per step: planning {planned} steps, SGDR period {period} steps")

    trainer = run.trainer(run.trainer_config(schedule_period=period, valid_every=0, checkpoint_every=0), checkpoint=out / "recipe.pt",
                          device="cpu", progress=False)
    chunk = max(1, planned // 20)
    while trainer.step < planned and trainer.elapsed < budget:
        trainer.fit(min(planned, trainer.step + chunk))
        if trainer.step % (5 * chunk) == 0 or trainer.step >= planned or trainer.elapsed >= budget:
            valid_mean = trainer.validate()["mean"]
            recent = trainer.history[-chunk:]
            loss = sum(r["loss"] for r in recent) / len(recent)
            print(f"step {trainer.step:5d} | {trainer.elapsed / 60:5.1f} min | loss {loss:8.2f} | "
                  f"lr {recent[-1]['lr']:.2e} | valid SI-SDRi {valid_mean:5.2f} dB | load {load()}", flush=True)

    table = stage_improvements(model, objective, test)
    final = evaluate(model, test, objective)
    print(f"\ntrained {trainer.step} steps ({trainer.step / planned:.0%} of the plan) in {trainer.elapsed / 60:.1f} min "
          f"({trainer.elapsed / trainer.step:.2f} s/step) on {args.threads} threads; load average now {load()}")
    print(f"SI-SDR improvement (dB) on {len(test)} held-out mono songs x {args.eval_seconds:g} s:")
    print(f"{'stage':>12s}" + "".join(f"{s:>8s}" for s in SOURCES) + f"{'mean':>8s}")
    for s, row in enumerate(table):
        print(f"{model.sample_rates[s] // 1000:>9d} kHz" + "".join(f"{v:8.2f}" for v in row.tolist()) + f"{row.nanmean().item():8.2f}")
    print(f"(32 kHz output through metalearn_sep.train.evaluate: mean {final['mean']:.2f} dB)")
    print(f"checkpoint: {out / 'recipe.pt'}")
    if not args.no_record:
        rates = " / ".join(f"{rate // 1000:g}" for rate in model.sample_rates)
        record("train_recipe_cpu", {
            "training": f"{trainer.step:,} steps ({trainer.step / planned:.0%} of the plan) in {trainer.elapsed / 60:.1f} min "
                        f"({trainer.elapsed / trainer.step:.2f} s/step, {args.threads} threads; {params:,} parameters)",
            f"{model.sample_rates[-1] // 1000} kHz output, mean SI-SDR improvement":
                f"{final['mean']:.2f} dB (" + ", ".join(f"{k} {v:.1f}" for k, v in final.items() if k != "mean") + ")",
            f"stages at {rates} kHz, mean SI-SDR improvement": " / ".join(f"{row.nanmean().item():.2f}" for row in table) + " dB",
        })
    return 0 if final["mean"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
