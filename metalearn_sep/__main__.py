"""Command line: ``python -m metalearn_sep doctor``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metalearn_sep", description="metalearn-sep course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check this environment against the tested one")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .doctor import main as doctor

        return doctor()
    return 2


if __name__ == "__main__":
    sys.exit(main())
