"""The sample-capture generator: deterministic output, and expected/truth files that agree with the
capture bytes.

The consistency checks read the captures with a small reader written here (pcap/pcapng, Ethernet,
802.1Q/802.1ad, Linux SLL2, NULL, IPv4/IPv6, TCP reassembly, HTTP/1.x framing) that shares no code
with the generator, then re-derive every expected event from the reassembled bytes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import importlib
import ipaddress
import itertools
import json
import re
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
NAMES = (
    "exchange-sfb.pcap",
    "messy.pcapng",
    "small-basic.pcap",
    "findings.pcap",
    "healthy-oauth.pcap",
    "classes.pcap",
    "certificates.pcap",
)
SECRET_QUERY = ("access_token", "code", "client_secret", "refresh_token", "id_token", "assertion")
SECRET_QUERY += ("client_assertion", "password")
METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")


def _load_generator() -> ModuleType:
    """The capture generator (captures/generate), imported with captures/ on the path."""
    if str(CAPTURES) not in sys.path:
        sys.path.insert(0, str(CAPTURES))
    return importlib.import_module("generate")


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def generated(gen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("captures")
    start = time.perf_counter()
    gen.generate(out)
    seconds = time.perf_counter() - start
    again = tmp_path_factory.mktemp("again")
    gen.generate(again)  # a second run in the same process: no state may leak between runs
    for path in out.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    return out, seconds


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


def _fp(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(raw).hexdigest()[:12]


# --- determinism ---------------------------------------------------------------------------------


def test_generator_rewrites_the_committed_files_byte_for_byte(
    generated: tuple[Path, float],
) -> None:
    out, seconds = generated
    written = sorted(p.name for p in out.iterdir())
    expected = sorted(
        n
        for name in NAMES
        for n in (name, f"{_stem(name)}.expected.json", f"{_stem(name)}.truth.json")
    )
    assert written == expected
    for name in written:
        assert (out / name).read_bytes() == (CAPTURES / name).read_bytes(), name
    assert seconds < 20


@pytest.mark.parametrize("name", NAMES)
def test_captures_are_small(name: str) -> None:
    assert (CAPTURES / name).stat().st_size < 300_000


def test_helpers_md4_and_deflate(gen: ModuleType) -> None:
    assert gen.md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert gen.md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert gen.md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"
    assert gen.md4(b"1234567890" * 8).hex() == "e33b4ddc9c38f2199c3e7b164fcc0536"
    data = b"".join(b"line %d of a fairly repetitive document\n" % (i % 37) for i in range(400))
    packed = gen.gzip_bytes(data)
    assert gzip.decompress(packed) == data
    assert len(packed) < len(data) // 4


# --- an independent capture reader ---------------------------------------------------------------


@dataclass
class Segment:
    ts: float
    seq: int
    flags: int
    payload: bytes
    order: int


@dataclass
class Direction:
    src: tuple[str, int]
    dst: tuple[str, int]
    segments: list[Segment] = field(default_factory=list)
    data: bytes = b""
    base: int = 0  # relative sequence number of data[0] (see _reassemble)
    ref: int = 0
    duplicates: int = 0  # exact repeats of an earlier segment
    overlaps: int = 0  # other segments that carry bytes already seen

    def rel(self, seq: int) -> int:
        return (seq - self.ref + 2**31) % 2**32 - 2**31

    def ts_of(self, offset: int) -> float:
        """Capture time of the first packet that carried byte ``offset``."""
        for seg in self.segments:
            start = self.rel(seg.seq) - self.base
            if start <= offset < start + len(seg.payload):
                return seg.ts
        raise AssertionError(offset)

    def segments_covering(self, start: int, end: int) -> int:
        ranges = set()
        for seg in self.segments:
            s = self.rel(seg.seq) - self.base
            if seg.payload and s < end and s + len(seg.payload) > start:
                ranges.add((s, len(seg.payload)))
        return len(ranges)


@dataclass
class Capture:
    linktypes: list[int]
    tsresol: list[int]
    frames: int
    vlan_stacks: set[tuple[int, ...]]
    ipv6_frames: int
    directions: dict[tuple[tuple[str, int], tuple[str, int]], Direction]


def _ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _frames(blob: bytes) -> tuple[list[int], list[int], list[tuple[float, int, bytes]]]:
    """(linktypes, tsresol per interface, [(ts, interface, frame)])."""
    if blob[:4] == b"\xd4\xc3\xb2\xa1":
        linktype = struct.unpack_from("<I", blob, 20)[0]
        out, pos = [], 24
        while pos < len(blob):
            sec, usec, incl, _ = struct.unpack_from("<IIII", blob, pos)
            out.append(((sec * 10**6 + usec) / 10**6, 0, blob[pos + 16 : pos + 16 + incl]))
            pos += 16 + incl
        return [linktype], [6], out
    assert blob[:4] == b"\x0a\x0d\x0d\x0a"
    linktypes: list[int] = []
    resol: list[int] = []
    out, pos = [], 0
    while pos < len(blob):
        btype, blen = struct.unpack_from("<II", blob, pos)
        body = blob[pos + 8 : pos + blen - 4]
        if btype == 1:
            linktypes.append(struct.unpack_from("<H", body)[0])
            resol.append(6)
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack_from("<HH", body, opt)
                if code == 0:
                    break
                if code == 9:
                    resol[-1] = body[opt + 4]
                opt += 4 + olen + (-olen % 4)
        elif btype == 6:
            iface, hi, lo, caplen, _ = struct.unpack_from("<IIIII", body)
            units = (hi << 32) | lo
            out.append((units / 10 ** resol[iface], iface, body[20 : 20 + caplen]))
        pos += blen
    return linktypes, resol, out


def read_capture(path: Path) -> Capture:
    linktypes, resol, frames = _frames(path.read_bytes())
    cap = Capture(linktypes, resol, len(frames), set(), 0, {})
    for order, (ts, iface, frame) in enumerate(frames):
        linktype = linktypes[iface]
        tags: list[int] = []
        if linktype == 1:
            etype, pos = struct.unpack_from(">H", frame, 12)[0], 14
            while etype in (0x8100, 0x88A8):
                tags.append(etype)
                etype, pos = struct.unpack_from(">H", frame, pos + 2)[0], pos + 4
        elif linktype == 276:
            etype, pos = struct.unpack_from(">H", frame, 0)[0], 20
        elif linktype == 0:
            family, pos = struct.unpack_from("<I", frame, 0)[0], 4
            etype = 0x0800 if family == 2 else 0x86DD
        else:
            raise AssertionError(linktype)
        cap.vlan_stacks.add(tuple(tags))
        if etype == 0x0800:
            ihl = (frame[pos] & 0x0F) * 4
            total = struct.unpack_from(">H", frame, pos + 2)[0]
            assert frame[pos + 9] == 6
            src, dst = _ip(frame[pos + 12 : pos + 16]), _ip(frame[pos + 16 : pos + 20])
            tcp = frame[pos + ihl : pos + total]
        else:
            assert etype == 0x86DD and frame[pos + 6] == 6
            cap.ipv6_frames += 1
            plen = struct.unpack_from(">H", frame, pos + 4)[0]
            src, dst = _ip(frame[pos + 8 : pos + 24]), _ip(frame[pos + 24 : pos + 40])
            tcp = frame[pos + 40 : pos + 40 + plen]
        sport, dport, seq, _ = struct.unpack_from(">HHII", tcp)
        flags = tcp[13]
        payload = tcp[(tcp[12] >> 4) * 4 :]
        key = ((src, sport), (dst, dport))
        direction = cap.directions.setdefault(key, Direction(*key))
        direction.segments.append(Segment(ts, seq, flags, payload, order))
    for direction in cap.directions.values():
        _reassemble(direction)
    return cap


def _reassemble(d: Direction) -> None:
    syn = [s for s in d.segments if s.flags & 0x02]
    data = [s for s in d.segments if s.payload]
    d.ref = (syn[0].seq + 1) if syn else (data[0].seq if data else 0)
    if not data:
        return
    d.base = min([0] if syn else [d.rel(s.seq) for s in data])
    end = max(d.rel(s.seq) + len(s.payload) for s in data) - d.base
    buf, seen = bytearray(end), bytearray(end)
    ranges: set[tuple[int, int]] = set()
    for seg in data:
        start = d.rel(seg.seq) - d.base
        if (start, len(seg.payload)) in ranges:
            d.duplicates += 1
        elif any(seen[start : start + len(seg.payload)]):
            d.overlaps += 1
        ranges.add((start, len(seg.payload)))
        for i, byte in enumerate(seg.payload):
            assert not seen[start + i] or buf[start + i] == byte, "retransmission changed bytes"
            buf[start + i], seen[start + i] = byte, 1
    assert all(seen), "hole in stream"
    d.data = bytes(buf)


# --- HTTP framing over the reassembled streams ---------------------------------------------------


@dataclass
class Message:
    offset: int
    start_line: str
    headers: list[tuple[str, str]]
    body: bytes
    head_end: int

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def _parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    text = re.sub(r"\r\n[ \t]+", " ", raw.decode("latin-1"))  # obsolete line folding
    first, *lines = text.split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return first, headers


def parse_messages(data: bytes, response: bool) -> list[Message]:
    pos = data.find(b"HTTP/1.") if response else 0
    out = []
    while 0 <= pos < len(data):
        if not response and not data.startswith(METHODS, pos):
            break
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        first, headers = _parse_head(data[pos:end])
        msg = Message(pos, first, headers, b"", end + 4)
        body_at = end + 4
        if (msg.get("Transfer-Encoding") or "").lower() == "chunked":
            body = bytearray()
            while True:
                eol = data.index(b"\r\n", body_at)
                size = int(data[body_at:eol], 16)
                body += data[eol + 2 : eol + 2 + size]
                body_at = eol + 2 + size + 2
                if size == 0:
                    break
            msg.body = bytes(body)
        else:
            length = int(msg.get("Content-Length") or 0)
            msg.body, body_at = data[body_at : body_at + length], body_at + length
        if msg.get("Content-Encoding") == "gzip":
            msg.body = gzip.decompress(msg.body)
        out.append(msg)
        pos = body_at
    return out


@dataclass
class Exchange:
    client: Direction
    server: Direction | None
    request: Message
    response: Message | None

    @property
    def ts(self) -> float:
        return self.client.ts_of(self.request.offset)


def exchanges(cap: Capture) -> list[Exchange]:
    out = []
    for key, direction in cap.directions.items():
        if not direction.data.startswith(METHODS):
            continue
        back = cap.directions.get((key[1], key[0]))
        requests = parse_messages(direction.data, response=False)
        responses = parse_messages(back.data, response=True) if back else []
        for i, req in enumerate(requests):
            resp = responses[i] if i < len(responses) else None
            out.append(Exchange(direction, back, req, resp))
    return sorted(out, key=lambda e: (e.ts, e.request.offset))


def credential(ex: Exchange) -> tuple[str, str, str] | None:
    """(header name, scheme word, credential text) or a query-string token."""
    for name, value in ex.request.headers:
        if name.lower() in ("authorization", "proxy-authorization"):
            word, _, rest = value.partition(" ")
            return name.lower(), word, rest.lstrip(" ")
    query = dict(parse_qsl(ex.request.start_line.split(" ")[1].partition("?")[2]))
    if "access_token" in query:
        return "query", "access_token", query["access_token"]
    return None


def form(ex: Exchange) -> dict[str, str]:
    if (ex.request.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(ex.request.body.decode()))
    return {}


def qualifies(ex: Exchange) -> bool:
    """The event emission rule of the brief, applied to what the capture holds."""
    path = ex.request.start_line.split(" ")[1].split("?")[0].lower()
    resp = ex.response
    return bool(
        credential(ex)
        or "grant_type" in form(ex)
        or "metadata/" in path
        or path.endswith(("/.well-known/openid-configuration", "/discovery/keys"))
        or (resp and (resp.all("WWW-Authenticate") or resp.all("Proxy-Authenticate")))
        or (resp and resp.start_line.split(" ")[1] in ("401", "403", "407"))
        or (resp and resp.get("x-ms-diagnostics"))
    )


def redact(uri: str) -> str:
    for name in SECRET_QUERY:
        uri = re.sub(rf"([?&]{name}=)[^&]*", r"\1REDACTED", uri)
    return uri


# --- the expected events agree with the bytes ----------------------------------------------------


def _check_event(event: dict[str, Any], ex: Exchange) -> None:
    method, uri, version = ex.request.start_line.split(" ")
    (cip, cport), (sip, sport) = ex.client.src, ex.client.dst
    assert (event["client_ip"], event["client_port"]) == (cip, cport)
    assert (event["server_ip"], event["server_port"]) == (sip, sport)
    assert event["ts"] == ex.ts
    assert (event["method"], event["uri"], event["protocol"]) == (
        method,
        redact(uri),
        version.lower(),
    )
    assert event["host"] == ex.request.get("Host")
    assert event["user_agent"] == ex.request.get("User-Agent")
    cred = credential(ex)
    if cred is None:
        assert (event["scheme"], event["scheme_name"], event["cred_fp"]) == ("none", None, None)
    else:
        header, word, text = cred
        assert event["cred_fp"] == _fp(text)
        assert event["scheme_name"] == word
        scheme = "bearer" if header == "query" else word.lower()
        known = ("bearer", "basic", "ntlm", "negotiate", "digest")
        assert event["scheme"] == (scheme if scheme in known else "other")  # e.g. Turbo
        assert event["extra"]["auth_header"] == header
        if word == "Basic":
            user, _, password = base64.b64decode(text).decode().partition(":")
            domain, _, name = user.rpartition("\\")
            assert (event["user"], event["password_len"]) == (name, len(password))
            assert event["domain"] == (domain or None)
        elif word == "Digest":
            assert event["user"] == re.search(r'username="([^"]*)"', text).group(1)
        else:
            assert event["user"] is None and event["password_len"] is None
    resp = ex.response
    if resp is None:
        assert event["status"] is None and event["challenges"] == []
        return
    assert event["status"] == int(resp.start_line.split(" ")[1])
    assert event["response_ts"] == ex.server.ts_of(resp.offset)
    assert event["ms_diagnostics"] == resp.get("x-ms-diagnostics")
    offered = [
        (k.lower(), v)
        for k, v in resp.headers
        if k.lower() in ("www-authenticate", "proxy-authenticate")
    ]
    assert len(offered) == len(event["challenges"])
    for (header, value), ch in zip(offered, event["challenges"], strict=True):
        word, _, rest = value.partition(" ")
        assert ch["scheme"] == word.lower()
        assert ch.get("proxy", False) == (header == "proxy-authenticate")
        if "token68" in ch:
            assert ch["token68"] == rest and ch["params"] == {}
        for name, val in ch["params"].items():
            assert re.search(
                rf'(^|[ ,]){re.escape(name)}=("{re.escape(val)}"|{re.escape(val)})',
                rest,
                re.IGNORECASE,
            ), (name, rest)
    fields = form(ex)
    if "grant_type" in fields:
        assert event["grant_type"] == fields["grant_type"]
        assert event["client_id"] == fields.get("client_id")
        assert event["resource"] == fields.get("resource", fields.get("scope"))
        assertion = fields.get("assertion") or fields.get("client_assertion")
        assert event["assertion_fp"] == (_fp(assertion) if assertion else None)
        body = json.loads(resp.body)
        assert event["token_type"] == body.get("token_type")
        assert event["expires_in"] == (str(body["expires_in"]) if "expires_in" in body else None)
        assert event["oauth_error"] == body.get("error")
        for name in ("access_token", "refresh_token", "id_token"):
            assert event[f"{name}_fp"] == (_fp(body[name]) if name in body else None)


@pytest.mark.parametrize("name", NAMES)
def test_expected_events_match_the_capture_bytes(name: str) -> None:
    expected = json.loads((CAPTURES / f"{_stem(name)}.expected.json").read_text())
    assert expected["capture"] == name and expected["description"]
    observed = [ex for ex in exchanges(read_capture(CAPTURES / name)) if qualifies(ex)]
    events = expected["events"]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert len(events) == len(observed)
    for event, ex in zip(events, observed, strict=True):
        _check_event(event, ex)


def test_event_counts_and_non_events() -> None:
    counts = {
        n: len(json.loads((CAPTURES / f"{_stem(n)}.expected.json").read_text())["events"])
        for n in NAMES
    }
    assert counts == {
        "exchange-sfb.pcap": 15,
        "messy.pcapng": 14,
        "small-basic.pcap": 1,
        "findings.pcap": 21,
        "healthy-oauth.pcap": 8,
        "classes.pcap": 9,
        "certificates.pcap": 6,
    }
    for name, quiet in (
        ("exchange-sfb.pcap", ["/owa/healthcheck.htm"]),
        ("messy.pcapng", ["/health"]),
    ):
        all_ex = exchanges(read_capture(CAPTURES / name))
        assert [e.request.start_line.split(" ")[1] for e in all_ex if not qualifies(e)] == quiet


# --- what the captures must contain --------------------------------------------------------------


def test_exchange_sfb_shape() -> None:
    cap = read_capture(CAPTURES / "exchange-sfb.pcap")
    assert cap.linktypes == [1]
    all_ex = exchanges(cap)
    bearer_jwt = [e for e in all_ex if (credential(e) or ("", "", ""))[2].startswith("eyJ")]
    assert len(bearer_jwt) == 5
    for ex in bearer_jwt:  # the long S2S header makes the request head span >= 3 segments
        assert ex.client.segments_covering(ex.request.offset, ex.request.head_end) >= 3
        assert credential(ex)[2].endswith(".")  # unsigned outer token
    gz = [e for e in all_ex if e.response and e.response.get("Content-Encoding") == "gzip"]
    assert [e.request.start_line for e in gz] == ["GET /autodiscover/metadata/json/1 HTTP/1.1"]
    typo = [e for e in all_ex if "jason" in e.request.start_line]
    assert typo[0].response.start_line == "HTTP/1.1 404 Not Found"


def test_messy_shape() -> None:
    cap = read_capture(CAPTURES / "messy.pcapng")
    assert cap.linktypes == [1, 276] and cap.tsresol == [6, 9]
    assert {(), (0x8100,), (0x88A8, 0x8100)} <= cap.vlan_stacks
    assert cap.ipv6_frames > 0
    dirs = list(cap.directions.values())
    assert sum(d.duplicates for d in dirs) >= 1 and sum(d.overlaps for d in dirs) >= 1
    assert any(any(s.seq + len(s.payload) > 2**32 for s in d.segments) for d in dirs)
    assert any(not any(s.flags & 0x02 for s in d.segments) for d in dirs)  # mid-stream
    assert any(s.flags & 0x04 for d in dirs for s in d.segments)  # RST
    assert any(s.flags & 0x01 for d in dirs for s in d.segments)  # FIN
    tls = cap.directions[(("192.168.100.23", 50110), ("93.184.215.14", 443))]
    assert tls.data.startswith(b"\x16\x03\x01") and not parse_messages(tls.data, False)
    all_ex = exchanges(cap)
    assert any(a.ts == b.ts and a.client is b.client for a, b in itertools.pairwise(all_ex))
    assert any(
        k.lower() == "authorization" and k != "Authorization"
        for e in all_ex
        for k, _ in e.request.headers
    )
    assert any(e.response and e.response.get("Transfer-Encoding") == "chunked" for e in all_ex)
    raw = (CAPTURES / "messy.pcapng").read_bytes()
    assert b'files@contoso.local",\r\n\tnonce=' in raw  # obs-fold in WWW-Authenticate


# --- truth files ---------------------------------------------------------------------------------


def _cert(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ROOT / path).read_bytes())


def _x5t(cert: x509.Certificate) -> str:
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()


def _jwt_claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _token_texts(all_ex: list[Exchange]) -> dict[str, str]:
    texts = []
    for ex in all_ex:
        cred = credential(ex)
        if cred:
            texts.append(cred[2])
        texts += [v for k, v in form(ex).items() if k in ("assertion", "client_assertion")]
        if ex.response and ex.response.body.startswith(b"{"):
            body = json.loads(ex.response.body)
            texts += [body[k] for k in ("access_token", "refresh_token", "id_token") if k in body]
    texts += [
        _jwt_claims(t)["actortoken"]
        for t in list(texts)
        if t.startswith("eyJ") and "actortoken" in _jwt_claims(t)
    ]
    return {_fp(t): t for t in texts}


@pytest.mark.parametrize("name", NAMES)
def test_truth_tokens_match_the_capture(name: str) -> None:
    truth = json.loads((CAPTURES / f"{_stem(name)}.truth.json").read_text())
    events = json.loads((CAPTURES / f"{_stem(name)}.expected.json").read_text())["events"]
    for key in truth["keys"].values():
        assert _x5t(_cert(key["cert_file"])) == key["x5t"]
    texts = _token_texts(exchanges(read_capture(CAPTURES / name)))
    for tok in truth["tokens"]:
        text = texts[tok["fingerprint"]]
        if tok["format"] == "opaque":
            assert not text.startswith("eyJ")
            continue
        claims = _jwt_claims(text)
        assert [claims.get(k) for k in ("iss", "aud", "nbf", "exp")] == [
            tok[k] for k in ("iss", "aud", "nbf", "exp")
        ]
        first_use = events[tok["events"][0]]
        when = first_use["response_ts" if tok["seen_in"] == "response body" else "ts"]
        assert tok["expired"] == (int(claims["exp"]) < when)
        if tok["format"] == "jwt-unsigned":
            assert text.endswith(".") and tok["signature_valid"] is None
            continue
        cert = _cert(tok["signing_key"])
        assert jwt.get_unverified_header(text)["x5t"] == _x5t(cert) == tok["x5t"]
        options = {
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_iss": False,
            "verify_sub": False,
        }
        try:
            jwt.decode(text, cert.public_key(), algorithms=["RS256"], options=options)
            valid = True
        except jwt.InvalidSignatureError:
            valid = False
        assert valid == tok["signature_valid"] == (not tok["tampered"])


def test_exchange_sfb_truth_details(gen: ModuleType) -> None:
    truth = json.loads((CAPTURES / "exchange-sfb.truth.json").read_text())
    layers = [(t["layer"], t["tampered"], t["expired"]) for t in truth["tokens"]]
    assert ("actor", True, False) in layers and ("actor", False, True) in layers
    all_ex = exchanges(read_capture(CAPTURES / "exchange-sfb.pcap"))
    for doc in truth["metadata_documents"]:
        ex = next(e for e in all_ex if doc["url"].endswith(e.request.start_line.split(" ")[1]))
        meta = json.loads(ex.response.body)
        der = _cert(doc["cert_file"]).public_bytes(serialization.Encoding.DER)
        assert meta["issuer"] == doc["issuer"]
        assert [k["keyinfo"]["x5t"] for k in meta["keys"]] == doc["x5t"]
        assert base64.b64decode(meta["keys"][0]["keyvalue"]["value"]) == der
    # NTLM type 3: identity fields and an NTLMv2 proof that verifies with the test password.
    ntlm = truth["ntlm"]
    ntlm_blobs = [base64.b64decode(c[2]) for e in all_ex if (c := credential(e)) and c[1] == "NTLM"]
    challenges = [v for e in all_ex if e.response for v in e.response.all("WWW-Authenticate")]
    type2 = base64.b64decode(next(v[5:] for v in challenges if v.startswith("NTLM TlRM")))
    assert [b[8] for b in ntlm_blobs] == [1, 3] and type2[8] == 2
    type3 = ntlm_blobs[1]

    def field_at(offset: int) -> bytes:
        length, _, at = struct.unpack_from("<HHI", type3, offset)
        return type3[at : at + length]

    dom, user, ws = (field_at(o).decode("utf-16-le") for o in (28, 36, 44))
    assert (dom, user, ws) == (ntlm["domain"], ntlm["user"], ntlm["workstation"])
    assert type2[24:32].hex() == ntlm["server_challenge"]
    nt = field_at(20)
    password = ntlm["password"].split(" ")[0]
    ntowf = hmac_md5(
        gen.md4(password.encode("utf-16-le")), (user.upper() + dom).encode("utf-16-le")
    )
    assert hmac_md5(ntowf, type2[24:32] + nt[16:]) == nt[:16]
    assert "HTTP/mail.contoso.com".encode("utf-16-le") in nt
    # Kerberos: SPNEGO NegTokenInit with the krb5 OIDs and a ticket for HTTP/mail.contoso.com.
    krb = next(c[2] for e in all_ex if (c := credential(e)) and c[1] == "Negotiate")
    blob = base64.b64decode(krb)
    assert blob[0] == 0x60 and bytes.fromhex("06062b0601050502") in blob  # SPNEGO OID
    assert bytes.fromhex("06092a864882f712010202") in blob  # MS KRB5
    assert bytes.fromhex("06092a864886f712010202") in blob  # KRB5
    assert b"\x1b\x0bCONTOSO.COM" in blob and b"\x1b\x04HTTP\x1b\x10mail.contoso.com" in blob
    principals = truth["malformed_principals"]
    assert principals["value"].startswith("00000002-000-0ff1")
