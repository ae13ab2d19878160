"""An HTTP/2 request whose ``host`` field names another host than its ``:authority``.

RFC 9113 8.3.1 makes such a request malformed, and a server may route it by either name. A
review (round 5) sent Basic to /EWS/ with ``:authority mail.contoso.com`` and ``host:
autodiscover.contoso.com``: the request was filed under autodiscover, out of ``--host
mail.contoso.com``, and verify PASSed on another exchange. The stream is now a blind spot for
whichever host it named (INCONCLUSIVE), and the names agreeing (case, a trailing dot aside)
stays clean. Real pcaps: HTTP/2 frames from ``h2_kit`` in TCP segments from ``wire_kit``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import h2_kit
import pytest
import token_kit
from wire_kit import CLIENT, OK, T0, conversation, write_packets

from analyzer.cli import main
from analyzer.protocols.http2_frames import PREFACE

RULE = [
    "--client", CLIENT, "--host", "mail.contoso.com", "--path", "/EWS/",
    "--issuer", "skype", "--realm", "contoso.com", "--require-signature",
    "--keys", str(token_kit.KEYS_DIR / "sfb.cert.pem"),
]  # fmt: skip


def capture(tmp_path: Path, host: str, authority: str = "mail.contoso.com") -> str:
    """A good OAuth call over HTTP/1.1, then an HTTP/2 connection sending Basic to /EWS/ with
    ``:authority mail.contoso.com`` and a ``host`` field naming ``host``."""
    good = (
        "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n"
        f"Authorization: Bearer {token_kit.sfb_token()}\r\n\r\n"
    ).encode()
    client, server = h2_kit.Peer(), h2_kit.Peer()
    basic = base64.b64encode(b"CONTOSO\\svc-sfb:secret").decode()
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", "/EWS/Exchange.asmx"),
        ("host", host),
        ("authorization", f"Basic {basic}"),
    ]
    h2_request = PREFACE + h2_kit.settings() + client.headers(1, fields, end=True)
    h2_answer = h2_kit.settings() + server.headers(1, h2_kit.response(200), end=True)
    return write_packets(
        tmp_path / "h2.pcap",
        conversation([(True, good), (False, OK)], 40001, T0),
        conversation([(True, h2_request), (False, h2_answer)], 40002, T0 + 1),
    )


@pytest.mark.parametrize("host", ["autodiscover.contoso.com", "evil.example"])
def test_a_host_field_naming_another_host_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    code = main(["verify", capture(tmp_path, host), *RULE])
    out = capsys.readouterr().out
    assert code == 2 and out.startswith("INCONCLUSIVE"), out
    assert "1 HTTP/2 stream(s) whose headers could not be decoded" in out


def test_names_that_agree_are_read_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same host, in another case and with a trailing dot: the Basic call is judged."""
    code = main(["verify", capture(tmp_path, "MAIL.contoso.com."), *RULE])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("FAIL") and "not OAuth: basic" in out, out
    assert "blind spot" not in out, out
    code = main(["verify", capture(tmp_path, "mail.contoso.com", "Mail.Contoso.COM."), *RULE])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("FAIL") and "not OAuth: basic" in out, out
    assert "blind spot" not in out, out
