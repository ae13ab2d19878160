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

import signal
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from analyzer.auth.schemes import fingerprint
from analyzer.model import Event

#: tshark's display filter: only packets holding an HTTP/1.x Authorization header.
DISPLAY_FILTER = "http.authorization"


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
    with _signals_kept():
        capture = pyshark.FileCapture(
            path, display_filter=DISPLAY_FILTER, keep_packets=False, override_prefs=prefs
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


@contextmanager
def _signals_kept() -> Iterator[None]:
    """Put back the process's SIGCHLD handler and signal wakeup fd after pyshark: its asyncio
    child watcher sets both for the whole process and leaves them set, so every later child's
    exit wrote to a pipe nobody read until it filled ("Exception ignored when trying to write
    to the signal wakeup fd" on standard error, for a caller of the Python API)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals belong to the main thread: pyshark cannot set them from here either
        return
    handler = signal.getsignal(signal.SIGCHLD)
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(wakeup)


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
