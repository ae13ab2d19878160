"""The hybrid scenario family (captures/hybrid/): deterministic output, and a truth file that
agrees with the capture bytes.

The checks read the captures with a small reader written here (pcap, Ethernet, IPv4, TCP
reassembly, HTTP/1.1 framing with Content-Length, TLS ClientHello SNI) that shares no code with
the generator or the analyzer, then re-derive from the bytes: every exchange (frame, time,
endpoints, Host, URI, scheme, credential fingerprint, status), every token's claims and
signature (checked against the certificates in the metadata documents fetched in the capture),
every violation kind of every in-scope exchange, the handshakes and verdict class of every
pair, and the scenario facts (TLS connections, the cut, the failed metadata fetches).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import ipaddress
import json
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

ROOT = Path(__file__).resolve().parents[1]
HYBRID = ROOT / "captures" / "hybrid"
TRUTH = json.loads((HYBRID / "truth.json").read_text())
SCENARIOS = sorted(TRUTH["scenarios"])
SKEW = 300


def _load_hybrid() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "captures_hybrid", ROOT / "captures" / "hybrid.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


# --- determinism ---------------------------------------------------------------------------------


def test_generator_rewrites_the_committed_files_byte_for_byte(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    hybrid = _load_hybrid()
    first, second = tmp_path_factory.mktemp("hybrid1"), tmp_path_factory.mktemp("hybrid2")
    hybrid.generate(first)
    hybrid.generate(second)  # a second run in the same process: no state may leak between runs
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in HYBRID.iterdir())
    captures = [TRUTH["scenarios"][s]["capture"] for s in SCENARIOS]
    assert names == sorted([*captures, "policy.toml", "truth.json"])
    for name in names:
        assert (second / name).read_bytes() == (first / name).read_bytes(), name
        assert (HYBRID / name).read_bytes() == (first / name).read_bytes(), name


def test_policy_matches_the_truth_rules() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    policy = tomllib.loads((HYBRID / "policy.toml").read_text())
    assert policy == {"rule": TRUTH["rules"]}
    assert [r["name"] for r in policy["rule"]] == [
        "SfB pool to Exchange EWS",
        "Exchange to Exchange Online autodiscover",
    ]


def test_every_scenario_has_a_result_for_every_rule() -> None:
    results = {"PASS", "FAIL", "INCONCLUSIVE"}
    assert len(SCENARIOS) == 17
    for name in SCENARIOS:
        sc = TRUTH["scenarios"][name]
        assert set(sc["expected"]) == {r["name"] for r in TRUTH["rules"]}, name
        for rule, exp in sc["expected"].items():
            assert exp["result"] in results and exp["partial"] in results, (name, rule)
        for pair in sc["pairs"]:
            assert pair["class"] in TRUTH["pair_classes"]
        for v in sc["violations"]:
            assert v["kind"] == v["kinds"][0]
            assert set(v["kinds"]) <= set(TRUTH["violation_kinds"])
        assert (HYBRID / sc["capture"]).stat().st_size < 400_000


# --- an independent capture reader ---------------------------------------------------------------


@dataclass
class Packet:
    frame: int
    ts: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes


@dataclass
class Stream:
    """One direction of one TCP connection, reassembled."""

    src: tuple[str, int]
    dst: tuple[str, int]
    packets: list[Packet] = field(default_factory=list)
    isn: int | None = None
    data: bytes = b""
    starts: list[tuple[int, int, Packet]] = field(default_factory=list)  # (offset, len, packet)

    def packet_at(self, offset: int) -> Packet:
        for start, n, pkt in self.starts:
            if start <= offset < start + n:
                return pkt
        raise AssertionError(offset)


@dataclass
class Wire:
    packets: list[Packet]
    truncated: dict[str, int] | None  # the last record when the file ends inside it
    size: int


def read_pcap(blob: bytes) -> Wire:
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", blob, 0)
    assert magic == 0xA1B2C3D4 and linktype == 1
    pos, n, out, truncated = 24, 0, [], None
    while pos < len(blob):
        sec, usec, incl, orig = struct.unpack_from("<IIII", blob, pos)
        assert incl == orig
        n += 1
        frame = blob[pos + 16 : pos + 16 + incl]
        if len(frame) < incl:
            truncated = {"frame": n, "offset": pos, "incl_len": incl, "present": len(frame)}
        pos += 16 + incl
        if len(frame) < 54:
            continue
        ethertype = struct.unpack_from(">H", frame, 12)[0]
        assert ethertype == 0x0800
        ihl = (frame[14] & 0x0F) * 4
        assert frame[23] == 6  # TCP
        total = struct.unpack_from(">H", frame, 16)[0]
        src = str(ipaddress.ip_address(frame[26:30]))
        dst = str(ipaddress.ip_address(frame[30:34]))
        tcp = 14 + ihl
        sport, dport, seq, _ack, off_flags = struct.unpack_from(">HHIIH", frame, tcp)
        doff = (off_flags >> 12) * 4
        end = min(14 + total, len(frame))
        payload = frame[tcp + doff : end]
        out.append(Packet(n, sec + usec / 1e6, (src, sport), (dst, dport), seq, off_flags, payload))
    return Wire(out, truncated, len(blob))


def streams(wire: Wire) -> dict[tuple[tuple[str, int], tuple[str, int]], Stream]:
    out: dict[tuple[tuple[str, int], tuple[str, int]], Stream] = {}
    for pkt in wire.packets:
        st = out.setdefault((pkt.src, pkt.dst), Stream(pkt.src, pkt.dst))
        st.packets.append(pkt)
        if pkt.flags & 0x02:  # SYN
            st.isn = pkt.seq
    for st in out.values():
        assert st.isn is not None
        pieces = sorted(((p.seq - st.isn - 1) % 2**32, p) for p in st.packets if p.payload)
        data = bytearray()
        for offset, pkt in pieces:
            assert offset == len(data), "no gaps or overlaps in these captures"
            st.starts.append((offset, len(pkt.payload), pkt))
            data += pkt.payload
        st.data = bytes(data)
    return out


@dataclass
class Message:
    offset: int
    start_line: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def messages(data: bytes) -> list[Message]:
    out, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            out.append(Message(pos, data[pos:].split(b"\r\n")[0].decode(), [], b"", False))
            break
        lines = data[pos:end].decode("latin-1").split("\r\n")
        headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        msg = Message(pos, lines[0], headers, b"", True)  # type: ignore[arg-type]
        length = int(msg.header("Content-Length") or 0)
        msg.body = data[end + 4 : end + 4 + length]
        msg.complete = len(msg.body) == length
        out.append(msg)
        pos = end + 4 + length
    return out


@dataclass
class Exchange:
    frame: int
    ts: float
    client: str
    server: str
    request: Message
    response: Message | None

    @property
    def method(self) -> str:
        return self.request.start_line.split(" ")[0]

    @property
    def uri(self) -> str:
        return self.request.start_line.split(" ")[1]

    @property
    def host(self) -> str:
        return self.request.header("Host") or ""

    @property
    def status(self) -> int | None:
        return int(self.response.start_line.split(" ")[1]) if self.response else None

    @property
    def auth(self) -> tuple[str, str] | None:
        value = self.request.header("Authorization")
        if value is None:
            return None
        scheme, _, text = value.partition(" ")
        return scheme.lower(), text


def exchanges(wire: Wire) -> list[Exchange]:
    """Every HTTP exchange on port 80, in time order of the request's first byte."""
    st = streams(wire)
    out = []
    for (src, dst), up in st.items():
        if dst[1] != 80:
            continue
        down = st.get((dst, src))
        answers = messages(down.data) if down else []
        for i, req in enumerate(messages(up.data)):
            pkt = up.packet_at(req.offset)
            resp = answers[i] if i < len(answers) else None
            client, server = f"{src[0]}:{src[1]}", f"{dst[0]}:{dst[1]}"
            out.append(Exchange(pkt.frame, pkt.ts, client, server, req, resp))
    return sorted(out, key=lambda x: x.frame)


# --- tokens ---------------------------------------------------------------------------------------


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def jwt_decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body = token.split(".")[:2]
    return json.loads(_unb64url(head)), json.loads(_unb64url(body))


def metadata_certs(xs: list[Exchange]) -> dict[str, x509.Certificate]:
    """x5t -> certificate, from every metadata document answered 200 in the capture."""
    out = {}
    for x in xs:
        if "metadata/json/1" not in x.uri or x.status != 200:
            continue
        assert x.response is not None
        for key in json.loads(x.response.body)["keys"]:
            value = {k.lower(): v for k, v in key.items()}["keyvalue"]
            der = base64.b64decode(value["value"])
            thumb = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
            out[thumb] = x509.load_der_x509_certificate(der)
    return out


def signature_ok(token: str, cert: x509.Certificate) -> bool:
    head, body, sig = token.split(".")
    try:
        cert.public_key().verify(  # type: ignore[union-attr, call-arg]
            _unb64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


# --- an independent judge ------------------------------------------------------------------------


def in_scope(rule: dict[str, Any], x: Exchange) -> bool:
    return (
        x.client.rsplit(":", 1)[0] == rule["client"]
        and x.host.rsplit(":", 1)[0].lower() in [s.lower() for s in rule["server"]]
        and x.uri.lower().startswith(rule["path"].lower())
    )


def trusted_issuers(value: str) -> list[str] | None:
    if not value.lower().startswith("bearer "):
        return None
    marker = 'trusted_issuers="'
    start = value.index(marker) + len(marker)
    return value[start : value.index('"', start)].split(",")


def judge(
    rule: dict[str, Any], x: Exchange, certs: dict[str, x509.Certificate], trusted: list[str]
) -> set[str]:
    """The violation kinds of one in-scope exchange, from the bytes alone."""
    auth = x.auth
    if auth is None or (auth[0] == "bearer" and auth[1] == ""):
        return set()
    kinds = set()
    challenges = x.response.all("WWW-Authenticate") if x.response else []
    if x.status == 401 and not any(c.startswith("NTLM ") for c in challenges):
        kinds.add("rejected")  # answered 401, and not with the next NTLM leg
    if auth[0] != "bearer":
        return kinds | {"not-oauth"}
    header, claims = jwt_decode(auth[1])
    layers = [claims]
    actor = claims.get("actortoken")
    signed_token = actor if actor else (auth[1] if header.get("alg") != "none" else None)
    if signed_token is None:
        kinds.add("unsigned")
    else:
        a_header, a_claims = jwt_decode(signed_token)
        layers.append(a_claims)
        cert = certs.get(a_header.get("x5t", ""))
        if cert is None:
            kinds.add("signature-not-verified")
        elif not signature_ok(signed_token, cert):
            kinds.add("bad-signature")
    issuer = layers[-1]["iss"]
    want_app, _, want_realm = rule["issuer"].rpartition("@")
    app, _, realm = issuer.rpartition("@")
    if app != want_app:
        kinds.add("wrong-issuer")
    elif realm != want_realm:
        kinds.add("wrong-realm")
    if not any(t == issuer or (t.endswith("@*") and t[:-2] == app) for t in trusted):
        kinds.add("untrusted-issuer")
    if any(int(c["exp"]) < x.ts for c in layers):
        kinds.add("expired")
    if any(int(c["nbf"]) > x.ts + SKEW for c in layers):
        kinds.add("not-yet-valid")
    return kinds


def auth_class(x: Exchange) -> str:
    auth = x.auth
    if auth is None:
        return "anonymous"
    if auth[0] == "bearer":
        return "oauth"
    if auth[0] == "negotiate":
        ticket = base64.b64decode(auth[1])
        assert b"\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02" in ticket  # krb5 OID, AP-REQ
        return "kerberos"
    return auth[0]


def group_handshakes(xs: list[Exchange]) -> list[dict[str, Any]]:
    """Handshakes by the truth's documented rule, re-implemented on the parsed exchanges."""
    out: list[dict[str, Any]] = []
    by_conn: dict[tuple[str, str], list[Exchange]] = {}
    for x in xs:
        by_conn.setdefault((x.client, x.server), []).append(x)
    for conn in by_conn.values():
        current: dict[str, Any] | None = None
        for x in conn:
            cls, status = auth_class(x), x.status
            if cls == "anonymous" and status != 401:
                continue  # metadata fetch, token endpoint call, 404
            probe = x.auth == ("bearer", "")
            ntlm_type = base64.b64decode(x.auth[1])[8] if cls == "ntlm" else None
            if current is None or probe or cls == "anonymous":
                joins = False
            elif cls == "ntlm":  # a type 3 continues the type 1 answered by a type 2
                joins = current["class"] == "ntlm" and ntlm_type == 3
            elif current["probe_only"]:  # the token that follows a realm-discovery probe
                joins = cls == "oauth"
            else:  # more accepted requests of the same class on a keep-alive connection
                joins = current["class"] == cls and current["last_status"] != 401
            if not joins:
                current = {"class": cls, "xs": [], "probe_only": probe, "pair": x}
                out.append(current)
            assert current is not None
            current["xs"].append(x)
            current["last_status"] = status
            current["probe_only"] = current["probe_only"] and probe
            if status == 401 and not probe and ntlm_type != 1 and cls != "anonymous":
                current["outcome"] = "rejected"
            elif status == 401:
                current["outcome"] = "challenged"
            else:
                current["outcome"] = "accepted"
    return sorted(out, key=lambda h: h["xs"][0].frame)


def pair_class(hss: list[dict[str, Any]]) -> str:
    creds = [h for h in hss if h["outcome"] != "challenged"]
    if not creds:
        return "unauthenticated"
    for i, h in enumerate(hss):
        if h["class"] == "oauth" and h["outcome"] == "rejected":
            for later in hss[i + 1 :]:
                if later["class"] == "oauth":
                    break
                if later["outcome"] == "accepted":
                    return "oauth-with-fallback"
    classes = {h["class"] for h in creds}
    if classes == {"oauth"}:
        return "oauth-only" if any(h["outcome"] == "accepted" for h in creds) else "oauth-rejected"
    return "no-oauth" if "oauth" not in classes else "mixed"


# --- the checks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Wire, list[Exchange]]:
    sc = TRUTH["scenarios"][request.param]
    wire = read_pcap((HYBRID / sc["capture"]).read_bytes())
    return sc, wire, exchanges(wire)


def test_every_exchange_is_in_the_truth(scenario: tuple[dict, Wire, list[Exchange]]) -> None:
    sc, wire, xs = scenario
    complete = [x for x in xs if x.request.complete]
    truth = [t for t in sc["exchanges"] if not t.get("cut")]
    assert len(complete) == len(truth)
    for n, (x, t) in enumerate(zip(complete, truth, strict=True), 1):
        assert t["event_id"] == n  # every readable exchange here carries auth or is a fetch
        assert (t["frame"], t["client"], t["server"]) == (x.frame, x.client, x.server)
        assert abs(t["ts"] - x.ts) < 1e-6
        assert (t["method"], t["uri"], t["host"]) == (x.method, x.uri, x.host)
        assert t["status"] == x.status
        auth = x.auth
        assert t["scheme"] == ("none" if auth is None else auth[0])
        assert t["cred_fp"] == (None if auth is None else fp(auth[1]))
        if x.status == 401:
            assert x.response is not None
            next_leg = x.response.all("WWW-Authenticate")[0].startswith("NTLM ")
            asks = auth is None or auth == ("bearer", "") or next_leg
            assert t["event_outcome"] == ("challenged" if asks else "rejected")
        else:
            assert t["event_outcome"] == ("none" if auth is None else "accepted")
        rules = [r["name"] for r in TRUTH["rules"] if in_scope(r, x)]
        assert t["rules"] == rules
    assert wire.packets[-1].frame == sc["packets"]


def test_tokens_match_the_bytes(scenario: tuple[dict, Wire, list[Exchange]]) -> None:
    sc, _, xs = scenario
    certs = metadata_certs(xs)
    seen: dict[str, str] = {}
    for x in xs:
        texts = []
        if x.auth and x.auth[0] == "bearer" and x.auth[1]:
            texts.append(x.auth[1])
            actor = jwt_decode(x.auth[1])[1].get("actortoken")
            if actor:
                texts.append(actor)
        if x.response is not None and "/tokens/OAuth/2" in x.uri:
            texts.append(json.loads(x.response.body)["access_token"])
        for text in texts:
            seen[fp(text)] = text
    by_fp = {t["fingerprint"]: t for t in sc["tokens"] if t["layer"] != "assertion"}
    assert set(by_fp) == set(seen)
    for fingerprint, text in seen.items():
        t = by_fp[fingerprint]
        header, claims = jwt_decode(text)
        assert (t["alg"], t["x5t"], t["kid"]) == (
            header["alg"],
            header.get("x5t"),
            header.get("kid"),
        )
        for name in ("iss", "aud", "nbf", "exp", "nameid"):
            assert t[name] == claims.get(name), name
        if header["alg"] == "none":
            assert t["signature_valid"] is None and t["format"] == "jwt-unsigned"
        else:
            cert = certs[header["x5t"]]  # every signing key is in a metadata document fetched
            assert t["signature_valid"] is signature_ok(text, cert)
            assert t["tampered"] is not t["signature_valid"]
        if "actortoken" in claims:
            assert t["actor_fp"] == fp(claims["actortoken"])


def test_violations_match_an_independent_judge(
    scenario: tuple[dict, Wire, list[Exchange]],
) -> None:
    sc, _, xs = scenario
    certs = metadata_certs(xs)
    got: list[tuple[str, int, frozenset[str]]] = []
    # the issuers a server trusts are a property of the server: its challenges say them, before
    # or after a given token was presented
    trusted: dict[str, list[str]] = {}
    for x in xs:
        for value in x.response.all("WWW-Authenticate") if x.response else []:
            listed = trusted_issuers(value)
            if listed is not None:
                trusted[x.server] = listed
    for x in xs:
        if not x.request.complete:
            continue
        for rule in TRUTH["rules"]:
            if in_scope(rule, x):
                kinds = judge(rule, x, certs, trusted.get(x.server, []))
                if kinds:
                    got.append((rule["name"], x.frame, frozenset(kinds)))
    want = [(v["rule"], v["frame"], frozenset(v["kinds"])) for v in sc["violations"]]
    assert sorted(got, key=str) == sorted(want, key=str)
    for v in sc["violations"]:
        x = next(x for x in xs if x.frame == v["frame"])
        assert v["event_id"] == sc["exchanges"][v["exchange"]]["event_id"]
        assert (v["client"], v["server"], v["host"], v["uri"]) == (
            x.client,
            x.server,
            x.host,
            x.uri,
        )
        assert abs(v["ts"] - x.ts) < 1e-6 and v["status"] == x.status
    for rule in TRUTH["rules"]:
        failing = any(v[0] == rule["name"] for v in got)
        assert (sc["expected"][rule["name"]]["result"] == "FAIL") is failing


def test_pairs_and_handshakes_match_the_bytes(
    scenario: tuple[dict, Wire, list[Exchange]],
) -> None:
    sc, _, xs = scenario
    hss = group_handshakes([x for x in xs if x.request.complete])
    pairs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for h in hss:
        x = h["pair"]
        pairs.setdefault(
            (x.client.rsplit(":", 1)[0], x.server.rsplit(":", 1)[0], x.host), []
        ).append(h)
    assert len(pairs) == len(sc["pairs"])
    everyone = {(x.client.rsplit(":", 1)[0], x.server.rsplit(":", 1)[0], x.host) for x in xs}
    others = {(p["client"], p["server"], p["host"]) for p in sc["pairs_without_auth"]}
    assert others == everyone - set(pairs) - {("10.1.0.20", "10.1.0.10", "")}  # the cut head
    for p in sc["pairs"]:
        group = pairs[(p["client"], p["server"], p["host"])]
        assert p["class"] == pair_class(group)
        assert p["handshakes"] == dict(Counter(h["class"] for h in group))
        creds = [x for h in group for x in h["xs"] if x.auth and x.auth[1]]
        assert p["exchanges"] == dict(Counter(auth_class(x) for x in creds))
    # the truth's handshakes, leg by leg (the cut request is not readable, so not compared)
    cut = {x["frame"] for x in sc["exchanges"] if x.get("cut")}
    want = [[f for f in h["frames"] if f not in cut] for h in sc["handshakes"]]
    assert [[x.frame for x in h["xs"]] for h in hss] == want
    assert [h["outcome"] for h in hss] == [h["outcome"] for h in sc["handshakes"]]


def test_scenario_facts_match_the_bytes(scenario: tuple[dict, Wire, list[Exchange]]) -> None:
    sc, wire, xs = scenario
    facts = sc["facts"]
    name = sc["capture"]
    if name == "tls-blind.pcap":
        hellos = []
        for pkt in wire.packets:
            if pkt.dst[1] == 443 and pkt.payload[:1] == b"\x16" and pkt.payload[5] == 1:
                hellos.append((pkt.frame, f"{pkt.src[0]}:{pkt.src[1]}", sni(pkt.payload)))
        conns = facts["tls_connections"]
        want = [(c["client_hello_frame"], c["client"], c["sni"]) for c in conns]
        assert hellos == want and len(want) == facts["tls_summary"]["count"] == 3
    else:
        assert not any(p.dst[1] == 443 or p.src[1] == 443 for p in wire.packets)
    if name == "cut.pcap":
        cut = facts["cut"]
        assert wire.size == cut["file_size"] < cut["uncut_size"]
        assert wire.truncated == {
            "frame": cut["last_frame"],
            "offset": cut["last_record_offset"],
            "incl_len": cut["last_record_incl_len"],
            "present": cut["last_record_bytes_present"],
        }
        last = xs[-1]
        assert last.frame == cut["last_frame"] and not last.request.complete
        assert last.request.start_line == cut["request_line"] == "POST /EWS/Exchange.asmx HTTP/1.1"
        lost = sc["exchanges"][cut["exchange"]]
        assert lost["cut"] and lost["frame"] == cut["last_frame"] and lost["status"] is None
        assert b"Authorization: Bearer " in wire.packets[-1].payload
        assert b"\r\nHost:" not in wire.packets[-1].payload
    else:
        assert wire.truncated is None and "cut" not in facts
    if name == "metadata-404.pcap":
        failed = facts["failed_metadata_fetches"]
        fetches = [x for x in xs if x.uri == failed["path"]]
        assert len(fetches) == failed["count"] == 10
        assert {x.status for x in fetches} == {404}
        assert {x.client.rsplit(":", 1)[0] for x in fetches} == {failed["client"]}
        assert [sc["exchanges"][i]["frame"] for i in failed["exchanges"]] == [
            x.frame for x in fetches
        ]
        assert not any(x.auth for x in xs if x.client.startswith(failed["client"] + ":"))
    if name == "ntlm-legs.pcap":
        probe = sc["exchanges"][facts["challenged_events"]["probe"]]
        type1 = [sc["exchanges"][i] for i in facts["challenged_events"]["ntlm_type1"]]
        assert len(type1) == 20 and probe["status"] == 401
        assert {t["status"] for t in type1} == {401}
        assert {t["event_outcome"] for t in [probe, *type1]} == {"challenged"}
    if name == "not-yet-valid.pcap":
        nyv = facts["not_yet_valid"]
        x = next(x for x in xs if x.frame == sc["exchanges"][nyv["exchange"]]["frame"])
        assert (
            x.response is not None
            and x.response.header("x-ms-diagnostics") == nyv["x_ms_diagnostics"]
        )
        assert 3500 < nyv["seconds_before_nbf"] <= 3600
    for doc in facts.get("metadata_documents", []):
        assert any(x.status == 200 and f"http://{x.host}{x.uri}" == doc["url"] for x in xs)


def sni(record: bytes) -> str:
    body = record[9:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + struct.unpack_from(">H", body, pos)[0]
    pos += 1 + body[pos]
    end = pos + 2 + struct.unpack_from(">H", body, pos)[0]
    pos += 2
    while pos < end:
        ext, n = struct.unpack_from(">HH", body, pos)
        if ext == 0:
            return body[pos + 9 : pos + 4 + n].decode()
        pos += 4 + n
    raise AssertionError("no SNI")


def test_readme_table_agrees_with_the_truth() -> None:
    """captures/README.md's hybrid table: one row per scenario, same results and pair class."""
    text = (ROOT / "captures" / "README.md").read_text()
    section = text[text.index("## hybrid/: the scenarios verify is judged on") :]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0].isdigit():
            rows[cells[1].strip("`")] = cells
    assert sorted(rows) == sorted(TRUTH["scenarios"][s]["capture"] for s in SCENARIOS)
    for name in SCENARIOS:
        sc = TRUTH["scenarios"][name]
        cells = rows[sc["capture"]]
        for cell, rule in zip(cells[3:5], TRUTH["rules"], strict=True):
            exp = sc["expected"][rule["name"]]
            assert cell.split(":")[0].split(" ")[0] == exp["result"], (name, rule["name"])
            assert ("PASS with `--partial`" in cell) == (exp["partial"] != exp["result"])
        sfb = [p["class"] for p in sc["pairs"] if p["client"] == "10.1.0.20"]
        assert cells[5].split(" ")[0] == (sfb[0] if sfb else "–"), name
