"""``oauth-analyzer decode`` from argument to exit status: read the paste, pick what it holds,
explain it (text or JSON) and return 0 (OK), 1 (PROBLEM) or raise :class:`DecodeInputError`
(bad input, exit 2). The command line (``analyzer.cli``) only parses options and prints errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import IO

from analyzer.oauth.diagnostics import MsDiagnostic, parse_ms_diagnostics
from analyzer.oauth.keys import KeyStore
from analyzer.oauth.tokens import decode_token
from analyzer.report.decode_verdict import with_server_answer
from analyzer.report.diagnostics_text import diagnostic_line, diagnostic_to_dict, write_diagnostic
from analyzer.report.explain import explain, work_out, write_explanation
from analyzer.report.paste import Pasted, PasteError, find_credential, read_paste

__all__ = ["DecodeInputError", "pasted_input", "run_decode"]

#: Scheme words as people write them, for the "not a bearer token" message.
_SCHEME_NAMES = {
    "basic": "Basic",
    "digest": "Digest",
    "negotiate": "Negotiate",
    "ntlm": "NTLM",
    "kerberos": "Kerberos",
}


class DecodeInputError(Exception):
    """Nothing decode can explain was given (one-line message; exit status 2)."""


def pasted_input(argument: str) -> tuple[Pasted, list[MsDiagnostic]]:
    """What ``argument`` (text, ``@FILE`` or ``-``) holds, and the diagnostics values in it.

    Raises :class:`DecodeInputError` for an unreadable file, an empty paste, the empty
    ``Bearer`` probe, a non-bearer credential, or text in which nothing was found.
    """
    try:
        pasted = find_credential(read_paste(argument))
    except PasteError as exc:
        raise DecodeInputError(str(exc)) from None
    diagnostics = [d for d in map(parse_ms_diagnostics, pasted.diagnostics) if d is not None]
    if pasted.kind == "diagnostics" and diagnostics:
        return pasted, diagnostics
    if pasted.kind == "other-scheme":
        scheme = _SCHEME_NAMES.get(pasted.scheme or "", pasted.scheme)
        raise DecodeInputError(
            f"the {pasted.origin} carries {scheme} credentials, not a bearer token (decode "
            "explains bearer tokens; run analyze on a capture for the rest)"
        )
    if pasted.kind == "none":
        raise DecodeInputError(
            "no token in the pasted text (looked for an Authorization header, access_token, "
            "an x-ms-diagnostics value or a token)"
        )
    if pasted.kind != "token":
        raise DecodeInputError(
            "no token given (pass it as an argument, @FILE or on standard input)"
            if not pasted.origin
            else "the pasted Bearer is empty (the realm-discovery probe): no token to decode"
        )
    return pasted, diagnostics


def run_decode(
    pasted: Pasted,
    diagnostics: list[MsDiagnostic],
    store: KeyStore,
    *,
    at: float,
    at_label: str,
    at_given: bool,
    host: str | None,
    as_json: bool,
    reveal_secrets: bool,
    out: IO[str] | None = None,
) -> int:
    """Explain what was pasted on ``out`` (stdout) and return the exit status, 0 or 1."""
    out = out or sys.stdout
    if pasted.kind == "diagnostics":
        with _reader_may_leave(out):
            if as_json:
                out.write(_json(diagnostic_to_dict(diagnostics[0])))
            else:
                write_diagnostic(diagnostics[0], out)
        return 1  # an x-ms-diagnostics value is an error report
    done = work_out(
        decode_token(pasted.token), store, at=at, at_given=at_given, host=host or pasted.host
    )
    if diagnostics:
        answers = [line.removeprefix("PROBLEM: ") for line in map(diagnostic_line, diagnostics)]
        done = replace(done, verdict=with_server_answer(done.verdict, answers))
    with _reader_may_leave(out):
        options = {"at": at, "at_label": at_label, "reveal_secrets": reveal_secrets}
        extra = {"pasted": pasted, "diagnostics": diagnostics}
        if as_json:
            out.write(_json(explain(done, **options, **extra)))
        else:
            write_explanation(done, out, **options, **extra)
    return done.verdict.exit_code


def _json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@contextmanager
def _reader_may_leave(out: IO[str]) -> Iterator[None]:
    """``decode ... | head -1`` reads the verdict line and goes away: not an error."""
    try:
        yield
        out.flush()
    except BrokenPipeError:
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
