"""Nothing leaks: every output of every command, without ``--reveal-secrets``, is scanned byte for
byte for the passwords and tokens a capture carries.

The capture sends every kind of secret the tool reads: a Basic password, signed and opaque bearer
tokens (Authorization, Proxy-Authorization, the query string, a form body), a password grant with
a client secret, a token response with access, refresh and ID tokens, a Digest response, and a
refresh token nested in a token's claims. No output may hold a password, a whole token, or any
32-character piece of a token. Scanned: the table, JSONL and CSV of events, ``--tokens`` and
``--findings``, ``--credentials`` (table, JSONL, CSV), Parquet (the file bytes and the tables
read back), the HTML report, the charts' SVG and PNG files, ``verify`` (text with ``--details``,
and ``--json``), ``decode`` (text and ``--json``), ``analyze -`` (a stream), and the walkthrough
notebook run on this capture (every output of every cell: text, HTML tables, PNG charts).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from wire_kit import OK, write_capture

from analyzer.cli import main

pytest.importorskip("nbclient")
from notebook_kit import run_notebook

PASSWORD = "Sup3r-S3cret_Passw0rd!"
GRANT_PASSWORD = "An0ther#Gr4nt!Pw"
CLIENT_SECRET = "cL1ent~S3cret.Value_0123456789abcdefXYZ"
OPAQUE = {
    "query": "Qx7pL2mN9vR4tY6wZ1aB3cD5eF8gH0jK2lM4nP6q",
    "proxy": "Px8oK1jH3gF5dS7aQ9wE2rT4yU6iO8pL0kJ2hG4f",
    "form": "Fm3nB5vC7xZ9lK1jH3gF5dS7aQ9wE2rT4yU6iO8p",
    "refresh": "0.AR8Av4j5cvGGr0GRqy180BHbR9x2Kq7Wm3Pz8Ny1Lt6Rb4Vc0Hd5Jf9Sg2Ek",
}


def _jwt(key: rsa.RSAPrivateKey, claims: dict, kid: str) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def secrets_and_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    base = {"iss": "https://sts.test/", "aud": "https://web.test/", "nbf": 1772440000}
    bearer = _jwt(
        key, {**base, "exp": 1772445600, "ctx": {"refresh_token": OPAQUE["refresh"]}}, "k1"
    )
    access = _jwt(key, {**base, "exp": 1772449999, "appid": "app"}, "k1")
    id_token = _jwt(key, {**base, "exp": 1772449999, "upn": "bob@contoso.com"}, "k2")
    tokens = [bearer, access, id_token, *OPAQUE.values()]

    def get(path: str, header: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: web.test\r\n{header}\r\n\r\n".encode()

    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    grant = (
        f"grant_type=password&username=bob&password={GRANT_PASSWORD}&client_id=app"
        f"&client_secret={CLIENT_SECRET}&resource=https://web.test/"
    ).encode()
    token_call = (
        b"POST /oauth2/token HTTP/1.1\r\nHost: login.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(grant)).encode() + b"\r\n\r\n" + grant
    )
    answer = json.dumps(
        {
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": access,
            "refresh_token": OPAQUE["refresh"],
            "id_token": id_token,
        }
    ).encode()
    token_answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer
    )
    form = f"access_token={OPAQUE['form']}".encode()
    form_post = (
        b"POST /api/form HTTP/1.1\r\nHost: web.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form
    )
    digest = (
        'Authorization: Digest username="carol", realm="web", nonce="abc", uri="/d", '
        'response="6629fae49393a05397450978507c4ef1", qop=auth, nc=00000001, cnonce="0a4f113b"'
    )
    path = write_capture(
        tmp_path_factory.mktemp("leaks") / "secrets.pcap",
        [
            (get("/basic", f"Authorization: Basic {basic}"), OK),
            (get("/bearer", f"Authorization: Bearer {bearer}"), OK),
            (get(f"/query?access_token={OPAQUE['query']}&x=1", ""), OK),
            (get("/proxy", f"Proxy-Authorization: Bearer {OPAQUE['proxy']}"), OK),
            (get("/d", digest), OK),
            (form_post, OK),
        ],
        [(token_call, token_answer)],
    )
    return [PASSWORD, GRANT_PASSWORD, CLIENT_SECRET, *tokens], path


def leaked(secrets: list[str], blob: bytes) -> list[str]:
    """The secrets of which ``blob`` holds the whole or a 32-character piece."""
    found = []
    for secret in secrets:
        pieces = {secret[i : i + 32] for i in range(max(1, len(secret) - 31))}
        if any(piece.encode() in blob for piece in pieces):
            found.append(secret[:12] + "...")
    return found


def test_no_output_holds_a_password_or_a_token(
    secrets_and_capture: tuple[list[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    secrets, capture = secrets_and_capture
    outputs: dict[str, bytes] = {}

    def run(name: str, argv: list[str], codes: tuple[int, ...] = (0,)) -> None:
        assert main(argv) in codes, name
        captured = capsys.readouterr()
        outputs[name] = (captured.out + captured.err).encode("utf-8")

    run("table", ["analyze", capture])
    for fmt in ("jsonl", "csv"):
        run(fmt, ["analyze", capture, "--format", fmt])
        run(f"tokens-{fmt}", ["analyze", capture, "--tokens", "--format", fmt])
        run(f"findings-{fmt}", ["analyze", capture, "--findings", "--format", fmt])
        run(f"credentials-{fmt}", ["analyze", capture, "--credentials", "--format", fmt])
    run("tokens", ["analyze", capture, "--tokens"])
    run("credentials", ["analyze", capture, "--credentials"])
    run("findings", ["analyze", capture, "--findings"])
    run("file", ["analyze", capture, "--format", "jsonl", "-o", str(tmp_path / "out.jsonl")])
    run("parquet", ["analyze", capture, "--format", "parquet", "-o", str(tmp_path / "pq")])
    run("charts", ["analyze", capture, "--charts", str(tmp_path / "charts")])
    run("report", ["report", capture, "-o", str(tmp_path / "report.html")])
    run("verify", ["verify", capture, "--details"], (0, 1, 2))
    run("verify-json", ["verify", capture, "--json"], (0, 1, 2))
    for i, token in enumerate(secrets[3:6]):  # the JWTs, pasted into decode
        run(f"decode-{i}", ["decode", token, "--at", "1772442000"], (0, 1))
        run(f"decode-json-{i}", ["decode", token, "--json", "--at", "1772442000"], (0, 1))
    with Path(capture).open("rb") as stdin:
        stream = subprocess.run(
            [sys.executable, "-m", "analyzer", "analyze", "-", "--format", "jsonl"],
            stdin=stdin,
            capture_output=True,
            check=True,
            timeout=120,
        )
    outputs["analyze-stream"] = stream.stdout + stream.stderr
    notebook = run_notebook(capture)
    outputs["notebook"] = json.dumps([c.get("outputs", []) for c in notebook.cells]).encode()
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert {p.suffix for p in files} >= {".jsonl", ".parquet", ".html", ".svg", ".png"}
    for p in files:
        outputs[str(p.relative_to(tmp_path))] = p.read_bytes()
        if p.suffix == ".parquet":  # compressed on disk: read the values back too
            outputs[f"{p.name} (values)"] = pd.read_parquet(p).to_csv().encode()

    assert {
        name: leaked(secrets, blob) for name, blob in outputs.items() if leaked(secrets, blob)
    } == {}
    # and the outputs did see the exchanges (a leak test over empty outputs proves nothing)
    assert outputs["jsonl"].count(b"\n") == 7
    assert b'"password_len":22' in outputs["jsonl"]
    assert b"REDACTED" in outputs["jsonl"]
    assert outputs["credentials-jsonl"].count(b"\n") == 6  # one row per distinct credential
    assert b"events       7 rows" in outputs["notebook"]


def test_revealed_outputs_do_hold_them(
    secrets_and_capture: tuple[list[str], str], capsys: pytest.CaptureFixture
) -> None:
    """The control: with --reveal-secrets the same scan finds the tokens (the scan works)."""
    secrets, capture = secrets_and_capture
    assert main(["analyze", capture, "--format", "jsonl", "--reveal-secrets"]) == 0
    out = capsys.readouterr().out.encode()
    assert len(leaked(secrets[3:6], out)) == 3
