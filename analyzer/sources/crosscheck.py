"""A second opinion from Wireshark: the HTTP/1.x Authorization headers tshark's dissectors find,
read through pyshark, set against the events (``analyze --crosscheck``).

Never on the fast path, and never needed for a result: it runs only when asked, on local
capture files, after the analysis. pyshark builds Python objects per packet (the reason the TLS
path calls tshark directly, see ``analyzer.sources.tshark``), so the display filter
``http.authorization`` keeps tshark handing over only the packets that carry the header; its
cost against calling ``tshark -T fields`` with the same filter is measured by
``bench/scale.py`` (README, "Scale"). With ``--tls-keylog`` tshark decrypts with the same key
log, so headers inside TLS are compared too.

Headers are matched by ``cred_fp`` (SHA-256 of the credential after the scheme word), as a
multiset: a header tshark saw that no event holds is reported, and so is the reverse.
"""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

from analyzer.auth.schemes import fingerprint
from analyzer.model import Event

#: tshark's display filter: only packets holding an HTTP/1.x Authorization header.
DISPLAY_FILTER = "http.authorization"
#: How long tshark may take to exit after its output ended before it is killed.
EXIT_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class CrossCheck:
    """How tshark's Authorization headers and the events' compare."""

    path: str
    tshark: int  # Authorization headers tshark found
    matched: int  # of them, held by an event
    missed: tuple[str, ...]  # cred_fp of headers tshark found and no event holds
    extra: tuple[str, ...]  # cred_fp of events' headers tshark did not find

    def line(self) -> str:
        """One line for the user."""
        text = (
            f"crosscheck {self.path}: tshark (via pyshark) found {self.tshark} Authorization "
            f"header(s), {self.matched} of them among the events"
        )
        if self.missed:
            text += f"; not among the events: {', '.join(self.missed[:5])}"
            text += f" (+{len(self.missed) - 5} more)" if len(self.missed) > 5 else ""
        if self.extra:
            text += f"; found here only: {len(self.extra)}"
        return text


def tshark_fingerprints(path: str, tls_keylog: str | None = None) -> list[str]:
    """``cred_fp`` of every HTTP/1.x Authorization header tshark finds in ``path``, in order.
    Raises ``OSError`` when pyshark or tshark is missing."""
    try:
        import pyshark
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise OSError("--crosscheck needs pyshark: pip install pyshark") from exc
    prefs = {"tls.keylog_file": tls_keylog} if tls_keylog else None
    found = []
    with _own_event_loop() as loop:
        capture = _file_capture(pyshark)(
            path,
            display_filter=DISPLAY_FILTER,
            keep_packets=False,
            override_prefs=prefs,
            eventloop=loop,
        )
        try:
            for packet in capture:
                field = packet.http.get_field("authorization")
                for value in field.all_fields if field is not None else ():
                    found.append(credential_fp(value.get_default_value()))
        except pyshark.tshark.tshark.TSharkNotFoundException as exc:
            raise OSError("--crosscheck needs tshark: apt-get install tshark") from exc
        finally:
            capture.close()
    return found


@cache
def _file_capture(pyshark: Any) -> type:
    """pyshark's ``FileCapture``, waiting for tshark to exit by itself once its output ended.

    At the end of the output pyshark kills tshark at once. tshark has usually exited by then,
    and ``Popen.send_signal`` reaps it to see so, behind asyncio's child watcher: the watcher
    then reports exit code 255 and pyshark raises "TShark seems to have crashed" on a run that
    read everything. Waiting for the exit first (bounded) leaves the reaping to the watcher,
    which also keeps tshark's real exit code."""

    class FileCapture(pyshark.FileCapture):  # type: ignore[misc, name-defined]
        async def _cleanup_subprocess(self, process: asyncio.subprocess.Process) -> None:
            if process.returncode is None and self._eof_reached:
                with suppress(asyncio.TimeoutError):  # still running: pyshark kills it
                    await asyncio.wait_for(process.wait(), EXIT_WAIT_SECONDS)
            await super()._cleanup_subprocess(process)

    return FileCapture


@contextmanager
def _own_event_loop() -> Iterator[asyncio.AbstractEventLoop | None]:
    """A fresh event loop for one pyshark capture, whose tshark a waiting thread reaps.

    Left to itself pyshark takes the thread's event loop and installs asyncio's
    ``SafeChildWatcher`` for the whole process: a SIGCHLD handler and a signal wakeup fd that
    stay set after it returns (later children's exits then filled a pipe nobody read, and
    Python said so on standard error), and putting them back raced with its reaping (tshark
    "crashed with 255" when its exit was reaped behind the watcher's back). Given its own loop,
    pyshark touches neither, and asyncio's default ``ThreadedChildWatcher`` waits for each
    child by pid in a thread, with no signal. Where the process already runs another watcher
    (its own code used pyshark or installed one), ``None`` leaves pyshark to its usual way:
    replacing a watcher closes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # child watchers: gone in 3.14
        threaded = getattr(asyncio, "ThreadedChildWatcher", None)
        another = threaded is not None and not isinstance(asyncio.get_child_watcher(), threaded)
    if another:
        yield None
        return
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def credential_fp(header: str) -> str:
    """``cred_fp`` of an Authorization header value as tshark shows it (scheme word first)."""
    value = header.replace("\\r\\n", "").rstrip("\r\n")
    _, _, credential = value.partition(" ")
    return fingerprint(credential.strip(" \t"))


def compare(path: str, tshark: list[str], events: Iterable[Event]) -> CrossCheck:
    """tshark's fingerprints against the HTTP/1.x Authorization headers of the events."""
    ours = Counter(
        e.cred_fp
        for e in events
        if e.auth_header == "authorization" and e.protocol.startswith("http/1") and e.cred_fp
    )
    theirs = Counter(tshark)
    matched = sum((theirs & ours).values())
    missed = tuple(sorted((theirs - ours).elements()))
    extra = tuple(sorted((ours - theirs).elements()))
    return CrossCheck(path, len(tshark), matched, missed, extra)
