"""Command line: ``python -m metalearn_sep {doctor,separate}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalearn_sep", description="metalearn-sep course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check this environment against the tested one")
    sep = sub.add_parser(
        "separate",
        help="separate a song into drums, bass, other and vocals",
        description="Separate SONG with a course checkpoint; writes DIR/<song stem>/<source>.wav (32-bit float, the song's rate).",
    )
    sep.add_argument("song", type=Path, help="audio file (wav, flac, ogg, ...), mono or stereo, any rate")
    sep.add_argument("--checkpoint", type=Path, required=True, help="a MetaTasNet or ConvTasNet checkpoint written by the Trainer")
    sep.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    sep.add_argument("--chunk-seconds", type=float, default=None, metavar="S", help="core length of one window (default 8)")
    sep.add_argument("--context-seconds", type=float, default=None, metavar="S", help="context on each side of a window (default 8)")
    sep.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:1, ... (default cuda when present)")
    sep.add_argument("--model-rate", type=int, default=None, metavar="HZ", help="a ConvTasNet checkpoint's rate (it does not record one)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .doctor import main as doctor

        return doctor()
    if args.command == "separate":
        return _separate(args)
    return 2


def _separate(args: argparse.Namespace) -> int:
    from .separate import separate_file

    lengths = {k: v for k, v in (("chunk_seconds", args.chunk_seconds), ("context_seconds", args.context_seconds)) if v is not None}
    try:
        paths = separate_file(args.song, args.checkpoint, args.out, device=args.device, model_rate=args.model_rate, **lengths)
    except (ValueError, OSError, RuntimeError, MemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Wrote {', '.join(p.name for p in paths)} to {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
