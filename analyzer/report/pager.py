"""Long terminal output through a pager, as git does: ``$PAGER`` or ``less -FRX``.

``less -F`` quits at once when the text fits one screen, ``-R`` keeps the colours, ``-X`` leaves
the text on the screen afterwards. ``--no-pager`` (or ``PAGER=cat``) writes straight through.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import IO


def page(text: str, out: IO[str]) -> None:
    """Show ``text`` on the terminal ``out``, through the pager when it is longer than the
    screen and a pager can be run."""
    rows = _rows(out)
    command = os.environ.get("OAUTH_ANALYZER_PAGER") or os.environ.get("PAGER") or "less"
    if rows is None or text.count("\n") < rows or command.strip() in ("", "cat"):
        out.write(text)
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    if command == "less" and shutil.which("less") is None:
        out.write(text)
        return
    out.flush()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the pager now
    try:
        pager = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env, text=True)
        assert pager.stdin is not None
        try:
            pager.stdin.write(text)
            pager.stdin.close()
        except BrokenPipeError:  # the user quit the pager before the end
            pass
        pager.wait()
    except OSError:
        out.write(text)
    finally:
        signal.signal(signal.SIGINT, old)


def _rows(out: IO[str]) -> int | None:
    try:
        return os.get_terminal_size(out.fileno()).lines
    except (OSError, ValueError, AttributeError):
        return None


def terminal_width(out: IO[str], default: int = 100) -> int:
    """The terminal's width in characters (``default`` when it cannot be told)."""
    try:
        return os.get_terminal_size(out.fileno()).columns or default
    except (OSError, ValueError, AttributeError):
        return shutil.get_terminal_size((default, 24)).columns


__all__ = ["page", "terminal_width"]
