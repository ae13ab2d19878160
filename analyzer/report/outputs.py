"""Output paths: checked before a capture is read, written whole or not at all.

``check_file`` and ``check_folder`` raise ``OutputError`` (one line) at once, before minutes of
reading; ``atomic_file`` and ``atomic_folder`` write beside the target and move the result into
place only when writing finished, so an interrupted or failed run leaves no partial file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class OutputError(Exception):
    """An output path that cannot be written (one-line message)."""


def check_file(path: str, what: str = "-o") -> None:
    """A file can be written at ``path``: not a folder, its folder exists and is writable."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    if target.exists() and not target.is_file():  # /dev/null, a FIFO: written in place
        return
    _check_parent(target, what, path)
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{what} {path}: not writable")


def check_folder(path: str, what: str = "-o") -> None:
    """Files can be written into the folder ``path`` (made if missing, beside existing ones)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{what} {path}: exists and is not a folder")
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {path}: folder not writable")
        return
    _check_parent(target, what, path)


def _check_parent(target: Path, what: str, path: str) -> None:
    parent = target.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"{what} {path}: no such folder {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: folder {parent} not writable")


@contextmanager
def atomic_file(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """An open file that becomes ``path`` when the block ends without an exception.

    A path that exists and is not a regular file (``/dev/null``, a FIFO, a terminal) is written
    in place: it is never replaced."""
    target = Path(path)
    mode = "wb" if binary else "w"
    encoding = None if binary else "utf-8"
    if target.exists() and not target.is_file():
        with open(target, mode, encoding=encoding, newline=None if binary else "") as fh:
            yield fh
        return
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=None if binary else "") as fh:
            yield fh
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A scratch folder whose files and folders move into ``path`` (made if missing) when the
    block ends without an exception; what ``path`` held with other names is left alone. A folder
    of the same name (a dataset table written before) is replaced whole: the old one is renamed
    aside and deleted after the new one took its place."""
    target = Path(path)
    target.absolute().parent.mkdir(parents=False, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.absolute().parent))
    try:
        yield scratch
        target.mkdir(exist_ok=True)
        old = scratch / ".replaced"
        old.mkdir()
        for item in sorted(scratch.iterdir()):
            if item == old:
                continue
            there = target / item.name
            if item.is_dir() and there.is_dir():
                os.replace(there, old / item.name)
            os.replace(item, there)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
