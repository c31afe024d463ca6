"""Writes that appear complete or not at all: a file (:func:`atomic_write`) or a folder (:func:`atomic_folder`).

Everything the course writes (checkpoints, stems, recorded results) goes through these, so a
run killed mid-write never leaves a truncated file where a good one was, or was expected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _usual_mode(path: str | os.PathLike, mode: int) -> None:
    """Give ``path`` ``mode`` minus the umask (mkstemp and mkdtemp make private files and folders)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it into place.

    A crash or an exception in ``write`` never leaves a partial file at ``path``; a previous
    file at ``path`` stays as it was until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _usual_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``folder`` that replaces ``folder`` once the block succeeds.

    On any failure the temporary folder is removed, and so are the parent folders this call
    created: nothing is left half-written, and a previous ``folder`` stays as it was.
    """
    folder = Path(folder)
    created = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        _usual_mode(tmp, 0o777)
        yield tmp
        old = tmp.with_name(tmp.name + ".old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:  # deepest first
            try:
                parent.rmdir()
            except OSError:
                break
        raise
