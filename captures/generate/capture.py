"""One capture in the making: its frames, the events the analyzer must emit and the ground truth
(tokens, handshakes, findings) recorded as each exchange is put on the wire.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .constants import MS, SEC
from .encoding import fp12
from .keys import TestKey
from .messages import Request, Response, is_event
from .wire import C, Conn, Frame, Plan, S


@dataclass
class TokenInfo:
    text: str
    layer: str
    key: TestKey | None
    tampered: bool = False
    note: str = ""
    in_response: bool = False


class Capture:
    """Frames, events and ground truth of one capture file."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.frames: list[Frame] = []
        self.events: list[dict[str, Any]] = []
        self.tokens: list[TokenInfo] = []
        self.handshakes: list[tuple[str, str, list[int], str]] = []  # kind, outcome, events, note
        self.truth_extra: dict[str, Any] = {}
        self.texts: list[tuple[bytes, bytes]] = []  # per event: request bytes, response head+body
        self.findings: dict[str, dict[str, Any]] = {}  # rule id -> events that fire / stay silent

    def add(self, ts: int, iface: int, data: bytes) -> None:
        self.frames.append(Frame(ts, iface, data, len(self.frames)))

    def token(
        self,
        text: str,
        layer: str,
        key: TestKey | None,
        *,
        tampered: bool = False,
        note: str = "",
        in_response: bool = False,
    ) -> str:
        """Register a token for the truth file (actor tokens are linked to their outer tokens
        automatically); returns the token text."""
        self.tokens.append(TokenInfo(text, layer, key, tampered, note, in_response))
        return text

    def record(
        self,
        conn: Conn,
        req: Request,
        resp: Response | None,
        req_ts: int,
        resp_ts: int | None,
        note: str,
    ) -> int:
        """Add the event of one exchange (it must qualify); returns its provisional number."""
        assert is_event(req, resp), note
        self.events.append(build_event(conn, req, resp, req_ts, resp_ts, note))
        self.texts.append((req.encode(), b"" if resp is None else _resp_text(resp)))
        return len(self.events) - 1

    def exchange(
        self,
        conn: Conn,
        t: int,
        req: Request,
        resp: Response | None,
        note: str = "",
        *,
        req_sizes: Sequence[int] = (),
        req_plan: Plan | None = None,
        resp_sizes: Sequence[int] = (),
        resp_plan: Plan | None = None,
        think: int = 4 * MS,
    ) -> tuple[int, int | None]:
        """Send a request and its response on ``conn``; returns (end time, event number)."""
        req_ts, last = conn.send(C, t, req.encode(), req_sizes, req_plan)
        resp_ts = None
        if resp is not None:
            resp_ts, last = conn.send(S, last + think, resp.encode(), resp_sizes, resp_plan)
        event = self.record(conn, req, resp, req_ts, resp_ts, note) if is_event(req, resp) else None
        return last, event

    def handshake(self, kind: str, outcome: str, events: list[int | None], note: str) -> None:
        self.handshakes.append((kind, outcome, [e for e in events if e is not None], note))

    def expect(
        self,
        rule_id: str,
        fire: Sequence[int | None],
        silent: Sequence[int | None] = (),
        note: str = "",
    ) -> None:
        """Ground truth for a finding rule: the events it must flag and events it must not."""
        self.findings[rule_id] = {
            "fire": [e for e in fire if e is not None],
            "silent": [e for e in silent if e is not None],
            "note": note,
        }


def _resp_text(resp: Response) -> bytes:
    """Response head plus the decoded (unchunked, uncompressed) body, for token look-ups."""
    body = resp.body
    if resp.header("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return resp.encode().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body


def build_event(
    conn: Conn, req: Request, resp: Response | None, req_ts: int, resp_ts: int | None, note: str
) -> dict[str, Any]:
    """The expected Event fields of one exchange (field names of analyzer/model.py)."""
    cred = req.cred
    form = dict(req.form or [])
    is_token_req = "grant_type" in form
    js = resp.json_body if (resp is not None and is_token_req) else None
    cip, cport, sip, sport = conn.endpoints
    extra: dict[str, Any] = {"note": note}
    if cred is not None:
        extra["auth_header"] = cred.source
        extra.update(cred.extra)

    def tok_fp(name: str) -> str | None:
        return fp12(js[name]) if js and isinstance(js.get(name), str) else None

    assertion = form.get("assertion") or form.get("client_assertion")
    return {
        "ts": req_ts / SEC,
        "client_ip": cip,
        "client_port": cport,
        "server_ip": sip,
        "server_port": sport,
        "protocol": req.version.lower(),
        "method": req.method,
        "host": req.header("Host"),
        "uri": req.target(redact=True),
        "status": None if resp is None else resp.status,
        "response_ts": None if resp_ts is None else resp_ts / SEC,
        "scheme": "none" if cred is None else cred.scheme,
        "scheme_name": None if cred is None else cred.scheme_name,
        "mechanism": None if cred is None else cred.mechanism,
        "user": None if cred is None else cred.user,
        "domain": None if cred is None else cred.domain,
        "password_len": None if cred is None else cred.password_len,
        "cred_fp": None if cred is None else fp12(cred.text),
        "challenges": [] if resp is None else resp.challenges,
        "ms_diagnostics": None if resp is None else resp.header("x-ms-diagnostics"),
        "user_agent": req.header("User-Agent"),
        "grant_type": form.get("grant_type") if is_token_req else None,
        "client_id": form.get("client_id") if is_token_req else None,
        "resource": (form.get("resource") or form.get("scope")) if is_token_req else None,
        "assertion_fp": fp12(assertion) if assertion else None,
        "token_type": js.get("token_type") if js else None,
        "expires_in": str(js["expires_in"]) if js and "expires_in" in js else None,
        "access_token_fp": tok_fp("access_token"),
        "refresh_token_fp": tok_fp("refresh_token"),
        "id_token_fp": tok_fp("id_token"),
        "oauth_error": js.get("error") if js else None,
        "extra": extra,
    }
