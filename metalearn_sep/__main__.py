"""Command line: ``python -m metalearn_sep {doctor,train,evaluate,separate,prepare-musdb}``.

* ``doctor``: check this environment against the tested one.
* ``train CONFIG.json --out DIR``: a run from a recipe in ``configs/`` (:mod:`metalearn_sep.recipe`),
  checkpointed to ``DIR/checkpoint.pt``; ``--resume`` continues it exactly; works under ``torchrun``.
* ``evaluate CHECKPOINT``: SI-SDR improvement and SiSEC median SDR per source on the synthetic
  band's test songs; with ``--musdb PATH`` (or ``$MUSDB_PATH``) MUSDB18 scored as SiSEC 2018 does
  (:mod:`metalearn_sep.evaluate`: museval per track, resumable, beside the published figures).
* ``separate SONG --checkpoint C --out DIR``: four stems of one audio file.
* ``prepare-musdb PATH --out CACHE [--rate R ...]``: MUSDB18 decoded once into a cache that
  ``train --musdb CACHE`` reads at GPU speed (:mod:`metalearn_sep.data.cache`); resumable.

Expected failures (a missing or invalid file, a bad config key, ...) print one line
``error: ...`` to stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .recipe import Recipe

CHECKPOINT_NAME = "checkpoint.pt"
"""The file a ``train`` run keeps in its ``--out`` folder."""

EXPECTED_ERRORS = (ValueError, OSError, RuntimeError, MemoryError, FloatingPointError)
"""What a command reports in one line instead of a traceback."""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


COMMANDS: dict[str, tuple[str, str | None]] = {
    "doctor": ("check this environment against the tested one", None),
    "train": (
        "train a model from a recipe in configs/",
        "Train the run a JSON recipe (configs/*.json) describes, keeping DIR/checkpoint.pt. Under torchrun each "
        "process takes its share of every batch (gloo on the CPU, nccl on CUDA).",
    ),
    "evaluate": (
        "score a checkpoint on held-out songs",
        "Without MUSDB18: separate the synthetic band's test songs and print the SI-SDR improvement and the "
        "SiSEC median SDR per source. With --musdb PATH (or $MUSDB_PATH): score whole MUSDB18 tracks as SiSEC "
        "2018 does (BSS Eval v4 through museval, median over frames, then over tracks), one museval JSON per "
        "track in DIR (an interrupted run resumes), and a report (report.md, report.csv, boxplot.png) beside "
        "the published Meta-TasNet, Open-Unmix and MMDenseLSTM figures.",
    ),
    "separate": (
        "separate a song into drums, bass, other and vocals",
        "Separate SONG with a course checkpoint; writes DIR/<song stem>/<source>.wav (32-bit float, the song's rate).",
    ),
    "prepare-musdb": (
        "decode MUSDB18 once into a cache that training reads fast",
        "Decode every MUSDB18 track (train, valid, test) once, resample it to each --rate and store its four stems "
        "as float32 arrays in CACHE (about 1 MB per second of audio at 32 kHz: 37 GB for MUSDB18). An interrupted "
        "run resumes; a new --rate is added to the cache. Then train with --musdb CACHE.",
    ),
}
"""Each subcommand's one-line help and its description."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalearn_sep", description="metalearn-sep course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {name: sub.add_parser(name, help=text, description=about) for name, (text, about) in COMMANDS.items()}
    train, ev, sep, prep = commands["train"], commands["evaluate"], commands["separate"], commands["prepare-musdb"]
    train.add_argument("config", type=Path, help="a JSON training recipe, e.g. configs/meta_tasnet_cpu.json")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder of the run (its checkpoint)")
    train.add_argument("--steps", type=_positive_int, default=None, metavar="N", help="train to N steps in all (default: the recipe's)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in DIR exactly")
    ev.add_argument("checkpoint", type=Path, help="a course checkpoint (train keeps DIR/checkpoint.pt) or the original "
                                                  "repository's released one")
    ev.add_argument("--tracks", "--songs", dest="songs", type=_positive_int, default=None, metavar="N",
                    help="the first N songs (default: 8 synthetic songs; every track of the MUSDB18 split)")
    ev.add_argument("--seconds", type=float, default=8.0, metavar="S", help="length of a synthetic test song (default 8)")
    ev.add_argument("--split", choices=("test", "train", "valid"), default=None, help="MUSDB18 split (default test, the published figures' split)")
    ev.add_argument("--workers", type=_positive_int, default=None, metavar="K",
                    help="MUSDB18: K processes, K-1 of them running museval while one separates (default 1; museval "
                         "takes seconds per second of audio: hours for the test set on one core)")
    ev.add_argument("--out", type=Path, default=None, metavar="DIR",
                    help="MUSDB18: folder of the scores and the report (default <checkpoint stem>-musdb-<split>[-fast]"
                         "[-original] beside the checkpoint); an unfinished one is resumed")
    ev.add_argument("--fast", action="store_true", help="MUSDB18: SDR only, from the package's framewise_sdr (museval's SDR, in seconds)")
    sep.add_argument("song", type=Path, help="audio file (wav, flac, ogg, ...), mono or stereo, any rate")
    sep.add_argument("--checkpoint", type=Path, default=None,
                     help="a course checkpoint or the original repository's released one (default: the course's "
                          "shipped separator, assets/checkpoints/meta-tasnet-cpu.pt)")
    sep.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    sep.add_argument("--chunk-seconds", type=float, default=None, metavar="S", help="core length of one window (default 18)")
    sep.add_argument("--context-seconds", type=float, default=None, metavar="S", help="context on each side of a window (default 2; the original code used 8)")
    prep.add_argument("musdb", type=Path, metavar="PATH", help="the MUSDB18 or MUSDB18-HQ folder (holding train/ and test/)")
    prep.add_argument("--out", type=Path, required=True, metavar="CACHE", help="the cache folder (an unfinished one is resumed)")
    prep.add_argument("--rate", type=_positive_int, action="append", default=None, metavar="R",
                      help="a rate (Hz) to store; repeat for several (default 32000, the paper's recipe)")
    train.add_argument("--musdb", type=Path, default=None, metavar="PATH",
                       help="a MUSDB18 folder or a prepare-musdb cache, read as a cache when it holds manifest.json "
                            "(default $MUSDB_PATH; neither: the synthetic band)")
    ev.add_argument("--musdb", type=Path, default=None, metavar="PATH", help="MUSDB18 folder (default $MUSDB_PATH; neither: the synthetic band)")
    for command in (ev, prep):
        command.add_argument("--layout", choices=("auto", "stems", "hq"), default=None,
                             help="MUSDB18: stems (.stem.mp4), hq (MUSDB18-HQ wav folders) or auto (default: detected)")
    for command in (ev, sep):
        command.add_argument("--protocol", choices=("course", "original"), default="course",
                             help="separation protocol: course (default) or original (as the original "
                                  "repository's evaluate.py separates)")
    for command in (train, ev, sep):
        command.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                             help="the model's arithmetic: bf16 autocast (about twice as fast on a CPU with bf16 "
                                  "instructions, stems within about 40 dB SNR of fp32) or fp32; auto (default): "
                                  "bf16 on a GPU with native bf16 (compute capability 8.0+), fp32 elsewhere")
    train.add_argument("--compile", action="store_true",
                       help="train through torch.compile (every crop has one length, so it compiles once; "
                            "benchmarks/gpu_check.py measures whether it pays)")
    for command in (train, ev, sep):
        command.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default cuda when present)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .doctor import main as doctor

        return doctor()
    run = {"train": _train, "evaluate": _evaluate, "separate": _separate, "prepare-musdb": _prepare_musdb}[args.command]
    try:
        return run(args)
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace) -> int:
    from . import recipe as recipes

    recipe = recipes.load_recipe(args.config)
    checkpoint = args.out / CHECKPOINT_NAME
    if args.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume needs a run to continue, but {args.out} holds no {CHECKPOINT_NAME}.")
    if not args.resume and checkpoint.exists():
        raise FileExistsError(f"{checkpoint} exists: pass --resume to continue that run, or choose another --out.")
    with recipes.process_group(args.device) as device:
        _train_run(recipe, args, checkpoint, device)  # returns before the group ends, so its DDP wrapper is gone by then
    return 0


def _train_run(recipe: Recipe, args: argparse.Namespace, checkpoint: Path, device: torch.device) -> None:
    from . import recipe as recipes
    from .precision import resolve_amp

    resolve_amp(device, _amp(args))  # an impossible precision is refused before anything is built
    run = recipes.prepare(recipe, args.musdb, statistics=not args.resume, device=device)
    trainer = run.trainer(checkpoint=checkpoint, device=device, amp=_amp(args), compile=args.compile)
    if args.resume:
        recipes.continue_run(trainer, checkpoint)
    history = trainer.fit(args.steps or recipe.training["steps"])
    if trainer.rank == 0:
        scores = [h["valid_mean"] for h in history if "valid_mean" in h]
        valid = f", validation SI-SDR improvement {scores[-1]:.2f} dB" if scores else ""
        print(f"Trained {trainer.step} steps ({trainer.elapsed / 60:.1f} min, last loss {history[-1]['loss']:.3f}{valid}); "
              f"checkpoint {checkpoint}")


def _evaluate(args: argparse.Namespace) -> int:
    from .recipe import musdb_root

    root = musdb_root(args.musdb)
    if root is not None:
        return _evaluate_musdb(args, root)
    given = [flag for flag, value in (("--split", args.split), ("--workers", args.workers), ("--out", args.out),
                                      ("--fast", args.fast or None), ("--layout", args.layout)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} apply to MUSDB18 only: pass --musdb PATH or set $MUSDB_PATH.")
    return _evaluate_band(args)


def _evaluate_musdb(args: argparse.Namespace, root: str) -> int:
    from .evaluate import evaluate_musdb

    done = evaluate_musdb(
        args.checkpoint, root, split=args.split or "test", tracks=args.songs, workers=args.workers or 1,
        out_dir=args.out, fast=args.fast, protocol=args.protocol, device=args.device, amp=_amp(args),
        is_wav={"stems": False, "hq": True}.get(args.layout),
    )
    print(done.summary)
    resumed = len(done.result.tracks) - len(done.scored)
    print(f"Scored {len(done.scored)} track(s){f' ({resumed} already scored)' if resumed else ''}; scores and "
          f"{', '.join(p.name for p in done.files.values())} in {done.out_dir}")
    return 0


def _evaluate_band(args: argparse.Namespace) -> int:
    import numpy as np

    from . import SOURCES
    from .checkpoint import load_model
    from .evaluate import band_scores

    model, recipe = load_model(args.checkpoint)
    data = (recipe or {}).get("data", {})
    rate = data.get("sample_rate") or model.sample_rates[-1]
    stereo = bool(data.get("stereo", False))
    songs = args.songs or 8
    gain, sdr = band_scores(model, rate, stereo, songs, args.seconds, device=args.device, amp=_amp(args), protocol=args.protocol)
    means = np.nanmean(gain), np.nanmean(sdr)
    what = f"the synthetic band's test songs ({args.seconds:g} s at {rate} Hz, {'stereo' if stereo else 'mono'})"
    print(f"{args.checkpoint} on {what}, {songs} song{'s' * (songs != 1)}:")
    print(f"{'source':<8s}{'SI-SDRi (dB)':>14s}{'SDR (dB)':>10s}")
    for name, g, d in zip((*SOURCES, "mean"), (*gain, means[0]), (*sdr, means[1])):
        print(f"{name:<8s}{g:>14.2f}{d:>10.2f}")
    return 0


def _amp(args: argparse.Namespace) -> bool | None:
    """``--precision`` as separate()'s ``amp``: None (auto), False (fp32) or True (bf16)."""
    return {"auto": None, "fp32": False, "bf16": True}[args.precision]


def _separate(args: argparse.Namespace) -> int:
    from .pretrained import DEFAULT_SEPARATOR, read_manifest, verified_path
    from .streaming import separate_file

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = verified_path(DEFAULT_SEPARATOR)
        about = read_manifest()[DEFAULT_SEPARATOR].get("about", "")
        print(f"No --checkpoint: using the course's default separator {DEFAULT_SEPARATOR} ({checkpoint}){': ' + about if about else ''}")
    paths = separate_file(args.song, checkpoint, args.out, args.chunk_seconds, args.context_seconds,
                          device=args.device, protocol=args.protocol, amp=_amp(args))
    print(f"Wrote {', '.join(p.name for p in paths)} to {paths[0].parent}")
    return 0


def _prepare_musdb(args: argparse.Namespace) -> int:
    from .data.cache import DEFAULT_RATE, prepare_musdb

    out = prepare_musdb(args.musdb, args.out, args.rate or [DEFAULT_RATE], is_wav={"stems": False, "hq": True}.get(args.layout))
    print(f"Train on it with `python -m metalearn_sep train CONFIG --musdb {out}` (at a rate the cache holds).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
