"""Damage inside TLS decrypted with a key log must not read as a clean capture (review round 5).

Every capture here is real TLS (OpenSSL through ``ssl.MemoryBIO``, the project's test server
certificate, a key log written by the client) wrapped in TCP with scapy; tshark decrypts it.

- A hole in a decrypted connection's ciphertext (a TCP gap; records tshark could not decrypt)
  is a hole in its plaintext: the request it held is lost (a blind spot), and the capture
  warns of the gap. Before, the plaintext was numbered by its own offsets and the loss vanished.
- Two connections on one address pair (a port reused) are judged one by one: the key log
  decrypting the first does not make the second inspected.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap
from tls_kit import MemoryTls, contexts

from analyzer.cli import main
from analyzer.engine import Engine, analyze_paths

KEYS = Path(__file__).resolve().parents[1] / "captures" / "keys"
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
CLIENT, SERVER = ("10.1.0.20", 41000), ("10.1.0.10", 443)
T0 = 1_772_442_000.0

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

BEARER = (
    b"GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
    b"Authorization: Bearer opaque-token-123456\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
)
BASIC = (
    b"GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
    b"Authorization: Basic ZGVtbzpkZW1v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
)
UPLOAD = (
    b"POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
    b"Authorization: Bearer opaque-token-123456\r\nContent-Length: 2500\r\n\r\n" + b"x" * 2500,
    BEARER[1],
)
RULE = ["--client", "10.1.0.20", "--server", "10.1.0.10", "--path", "/EWS/"]


def session(
    exchanges: list[tuple[bytes, bytes]], version: ssl.TLSVersion, keylog: Path | None
) -> tuple[list[tuple[int, bytes]], list[int]]:
    """One real TLS session in memory: its flights (0 client / 1 server, bytes) in order, and the
    index of the first flight of each exchange."""
    client, server = contexts(KEYS / "exchange.cert.pem", KEYS / "exchange.key.pem")
    for ctx in (server, client):
        ctx.minimum_version = ctx.maximum_version = version
    if keylog is not None:
        client.keylog_filename = str(keylog)
    tls = MemoryTls(client, server, "mail.contoso.com")
    starts = []
    for request, response in exchanges:
        starts.append(len(tls.flights))
        tls.exchange(request, response)
        tls.pump()  # a TLS 1.3 session ticket read by the client
    return tls.flights, starts


def tcp(
    flights: list[tuple[int, bytes]],
    t0: float,
    isn: tuple[int, int] = (1000, 9000),
    drop: set[int] = frozenset(),  # type: ignore[assignment]
    swap: int | None = None,
    reset: bool = False,
) -> list:
    """The flights as one TCP connection (MSS 1000). Flights in ``drop`` are not captured (their
    sequence numbers are used: a TCP gap); flight ``swap`` has its segments sent last first
    (reordering, nothing lost). It ends with FINs, or with the client's RST (``reset``)."""
    frames: list = []
    seq = list(isn)
    t = [t0]

    def send(side: int, flags: str, data: bytes = b"", at: int | None = None) -> None:
        (sip, sport), (dip, dport) = (CLIENT, SERVER) if side == 0 else (SERVER, CLIENT)
        number = seq[side] if at is None else at
        frame = Ether() / IP(src=sip, dst=dip)
        frame = frame / TCP(sport=sport, dport=dport, seq=number, ack=seq[1 - side], flags=flags)
        if data:
            frame = frame / data
        frame.time = t[0]
        t[0] += 0.001
        frames.append(frame)

    send(0, "S")
    seq[0] += 1
    send(1, "SA")
    seq[1] += 1
    send(0, "A")
    for i, (side, data) in enumerate(flights):
        parts = [(seq[side] + at, data[at : at + 1000]) for at in range(0, len(data), 1000)]
        if i == swap:
            parts.reverse()
        if i not in drop:
            for number, part in parts:
                send(side, "PA", part, number)
        seq[side] += len(data)
    if reset:
        send(0, "R")
        return frames
    send(0, "FA")
    seq[0] += 1
    send(1, "FA")
    seq[1] += 1
    send(0, "A")
    return frames


def capture(tmp_path: Path, name: str, *connections: list) -> Path:
    path = tmp_path / f"{name}.pcap"
    wrpcap(str(path), [frame for frames in connections for frame in frames])
    return path


def verify(path: Path, keylog: Path, capsys) -> tuple[int, str]:
    code = main(["verify", str(path), *RULE, "--tls-keylog", str(keylog)])
    return code, capsys.readouterr().out


# -- 1. a hole in the ciphertext is a hole in the plaintext --------------------------------
@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
def test_a_whole_exchange_lost_in_a_decrypted_connection_is_a_blind_spot(
    tmp_path: Path, capsys, version: ssl.TLSVersion
) -> None:
    keylog = tmp_path / "s.keys"
    flights, starts = session([BEARER, BASIC, BEARER], version, keylog)
    lost = set(range(starts[1], starts[2]))  # the Basic request and its answer
    path = capture(tmp_path, "gap", tcp(flights, T0, drop=lost))
    code, out = verify(path, keylog, capsys)
    assert code == 2, out  # INCONCLUSIVE, not PASS over the one Bearer exchange left
    assert out.splitlines()[-1].startswith("INCONCLUSIVE")
    assert "request bytes lost 1 time on 1 connection to mail.contoso.com:443 (10.1.0.10)" in out
    assert "TCP gaps: bytes missing from the capture" in out  # one each way
    assert "TLS: 1 decrypted connection(s) with 2 stretch(es) of ciphertext missing" in out


def test_a_lost_exchange_before_a_reset_is_a_blind_spot(tmp_path: Path, capsys) -> None:
    """No FIN to say where the bytes ended: the RST says it, and the hole at the end of the
    plaintext is carried past (a FIN of the decoder's) so the reader sees it."""
    keylog = tmp_path / "s.keys"
    flights, starts = session([BEARER, BASIC], V13, keylog)
    lost = set(range(starts[1], len(flights)))
    path = capture(tmp_path, "rst", tcp(flights, T0, drop=lost, reset=True))
    code, out = verify(path, keylog, capsys)
    assert code == 2, out
    assert "request bytes lost 1 time on 1 connection to mail.contoso.com:443" in out
    assert "1 TCP gap: bytes missing from the capture" in out


@pytest.mark.parametrize("version", [V13, V12], ids=["tls13", "tls12"])
def test_controls_the_same_connection_whole(
    tmp_path: Path, capsys, version: ssl.TLSVersion
) -> None:
    keylog = tmp_path / "s.keys"
    flights, _ = session([BEARER, BASIC, BEARER], version, keylog)
    code, out = verify(capture(tmp_path, "whole", tcp(flights, T0)), keylog, capsys)
    assert code == 1, out  # the Basic exchange is read: FAIL
    assert "warning" not in out
    keylog = tmp_path / "b.keys"
    flights, _ = session([BEARER, BEARER, BEARER], version, keylog)
    code, out = verify(capture(tmp_path, "good", tcp(flights, T0)), keylog, capsys)
    assert code == 0, out
    assert "all 3 authenticated exchanges used OAuth as required" in out
    assert "warning" not in out and "blind spot" not in out


def test_a_reordered_segment_is_no_hole(tmp_path: Path) -> None:
    """tshark flags the early segment "previous segment not captured"; the late one fills the
    hole and every record is read: nothing is missing."""
    keylog = tmp_path / "s.keys"
    flights, starts = session([BEARER, UPLOAD], V13, keylog)
    assert len(flights[starts[1]][1]) > 2000  # three segments: sent 3, 2, 1
    path = capture(tmp_path, "ooo", tcp(flights, T0, swap=starts[1]))
    result = analyze_paths([str(path)], tls_keylog=str(keylog))
    assert [e.scheme for e in result.events] == ["bearer", "bearer"]
    assert result.not_inspected == []
    assert result.captures[0].gaps == 0
    assert result.captures[0].warnings == []


def test_records_tshark_could_not_decrypt_are_a_hole(tmp_path: Path, capsys) -> None:
    """TLS 1.3 key log without the client's traffic secret: the server's answer is decrypted,
    the Basic request that asked for it is not. Beside a good decrypted connection."""
    keylog = tmp_path / "s.keys"
    flights, _ = session([BASIC], V13, keylog)
    lines = keylog.read_text().splitlines()
    keylog.write_text("".join(f"{x}\n" for x in lines if "CLIENT_TRAFFIC_SECRET_0" not in x))
    good_log = tmp_path / "g.keys"
    good, _ = session([BEARER], V13, good_log)
    with keylog.open("a") as out:
        out.write(good_log.read_text())
    path = capture(tmp_path, "half", tcp(good, T0), tcp(flights, T0 + 30, isn=(5000, 7000)))
    code, out = verify(path, keylog, capsys)
    assert code == 2, out
    assert "request bytes lost 1 time on 1 connection to 10.1.0.10:443" in out  # no Host read
    assert "TLS: 1 decrypted connection(s) with 1 TLS record(s) that could not be decrypted" in out


# -- 2. a reused address pair: each connection on its own ------------------------------------
def test_a_port_reused_by_a_connection_the_key_log_does_not_decrypt_is_a_blind_spot(
    tmp_path: Path, capsys
) -> None:
    keylog = tmp_path / "s.keys"
    first, _ = session([BEARER], V13, keylog)
    second, _ = session([BASIC], V13, None)  # no keys logged
    path = capture(tmp_path, "reuse", tcp(first, T0), tcp(second, T0 + 30, isn=(777000, 999000)))
    code, out = verify(path, keylog, capsys)
    assert code == 2, out
    assert "1 TLS connection to mail.contoso.com:443 (10.1.0.10) not inspected" in out
    result = analyze_paths([str(path)], tls_keylog=str(keylog))
    assert [(t.ts - T0 < 1, t.inspected) for t in result.tls] == [(True, True), (False, False)]


def test_control_both_connections_on_the_reused_pair_decrypted(tmp_path: Path, capsys) -> None:
    keylog = tmp_path / "s.keys"
    first, _ = session([BEARER], V13, keylog)
    second, _ = session([BASIC], V13, keylog)
    path = capture(tmp_path, "reuse", tcp(first, T0), tcp(second, T0 + 30, isn=(777000, 999000)))
    code, out = verify(path, keylog, capsys)
    assert code == 1, out  # the Basic exchange is read: FAIL
    assert "blind spot" not in out
    result = analyze_paths([str(path)], tls_keylog=str(keylog))
    assert [t.inspected for t in result.tls] == [True, True]
    second, _ = session([BEARER], V13, keylog)
    path = capture(tmp_path, "reuse2", tcp(first, T0), tcp(second, T0 + 30, isn=(777000, 999000)))
    code, out = verify(path, keylog, capsys)
    assert code == 0, out
    assert "warning" not in out


# -- 3. tshark stopped before the end: what it did not decrypt was not read -----------------
def appended(tmp_path: Path, keylog: Path) -> Path:
    """Two captures appended (``cat``, ``tcpdump -w - >>``) with one decrypted connection
    across the join: its Bearer exchange before, a Basic one after. Our reader reads on past
    the second file header; tshark stops there ("appears to be damaged or corrupt")."""
    flights, starts = session([BEARER, BASIC], V13, keylog)
    frames = tcp(flights, T0)
    first = 3 + sum(len(range(0, len(d), 1000)) for _, d in flights[: starts[1]])
    wrpcap(str(tmp_path / "a.pcap"), frames[:first])
    wrpcap(str(tmp_path / "b.pcap"), frames[first:])
    path = tmp_path / "joined.pcap"
    path.write_bytes((tmp_path / "a.pcap").read_bytes() + (tmp_path / "b.pcap").read_bytes())
    return path


def test_a_connection_going_on_after_tshark_failed_is_not_read_whole(
    tmp_path: Path, capsys
) -> None:
    """Before, the connection counted as decrypted and its Bearer exchange alone was judged:
    PASS, with the Basic request after the join never read."""
    keylog = tmp_path / "s.keys"
    code, out = verify(appended(tmp_path, keylog), keylog, capsys)
    assert code == 2, out
    assert "request bytes lost 1 time on 1 connection to mail.contoso.com:443" in out
    assert "tshark failed on this file (exit 2)" in out
    result = analyze_paths([str(tmp_path / "joined.pcap")], tls_keylog=str(keylog))
    assert [t.inspected for t in result.tls] == [True]  # decrypted, up to where tshark stopped
    (spot,) = result.not_inspected
    assert (spot.kind, spot.host, spot.server_port) == ("request-lost", "mail.contoso.com", 443)
    assert spot.detail == "decrypted only until tshark stopped: its later requests were not read"


def test_a_stream_whose_decryption_broke_off_is_not_read_whole(tmp_path: Path) -> None:
    """The same bytes as a stream (``analyze -``, ``live``): tshark decrypts alongside, and the
    connections it was cut off from are known only when it ends."""
    keylog = tmp_path / "s.keys"
    engine = Engine()
    with appended(tmp_path, keylog).open("rb") as stream:
        engine.read_stream(stream, "stdin", tls_keylog=str(keylog))
    result = engine.finish()
    assert [e.scheme for e in result.events] == ["bearer"]
    assert [(n.kind, n.host) for n in result.not_inspected] == [
        ("request-lost", "mail.contoso.com")
    ]
    assert any(
        "tshark failed decrypting the stream (exit 2)" in w for w in result.captures[0].warnings
    )


def test_control_a_whole_stream_decrypted_is_read_whole(tmp_path: Path) -> None:
    keylog = tmp_path / "s.keys"
    flights, _ = session([BEARER, BASIC], V13, keylog)
    path = capture(tmp_path, "whole", tcp(flights, T0))
    engine = Engine()
    with path.open("rb") as stream:
        engine.read_stream(stream, "stdin", tls_keylog=str(keylog))
    result = engine.finish()
    assert [e.scheme for e in result.events] == ["bearer", "basic"]
    assert result.not_inspected == [] and result.captures[0].warnings == []


def test_control_a_connection_over_before_tshark_failed_was_read_whole(
    tmp_path: Path, capsys
) -> None:
    """Two appended captures, a connection in each: the first, over before the join, was read
    whole; the second, which tshark never reached, is TLS not decrypted."""
    keylog = tmp_path / "s.keys"
    first, _ = session([BEARER], V13, keylog)
    second, _ = session([BEARER], V13, keylog)
    wrpcap(str(tmp_path / "a.pcap"), tcp(first, T0))
    wrpcap(str(tmp_path / "b.pcap"), tcp(second, T0 + 30, isn=(777000, 999000)))
    path = tmp_path / "joined.pcap"
    path.write_bytes((tmp_path / "a.pcap").read_bytes() + (tmp_path / "b.pcap").read_bytes())
    code, out = verify(path, keylog, capsys)
    assert code == 2, out
    assert "1 TLS connection to mail.contoso.com:443 (10.1.0.10) not inspected" in out
    assert "request bytes lost" not in out
    result = analyze_paths([str(path)], tls_keylog=str(keylog))
    assert [(t.ts - T0 < 1, t.inspected) for t in result.tls] == [(True, True), (False, False)]
    assert [n.kind for n in result.not_inspected] == ["tls"]
    # a later file, which its own tshark pass read whole, owes nothing to the first one's break
    third, _ = session([BEARER], V13, keylog)
    wrpcap(str(tmp_path / "c.pcap"), tcp(third, T0 + 60, isn=(5000, 7000)))
    result = analyze_paths([str(path), str(tmp_path / "c.pcap")], tls_keylog=str(keylog))
    assert [t.inspected for t in result.tls] == [True, False, True]
    assert [n.kind for n in result.not_inspected] == ["tls"]


def test_a_request_lost_at_the_end_with_only_the_servers_ack_is_a_blind_spot(
    tmp_path: Path, capsys
) -> None:
    """The Basic request and its answer never captured, no FIN or RST after them: the server's
    bare ACK of the request ("ACKed unseen segment") is what says the client's bytes went on."""
    keylog = tmp_path / "s.keys"
    flights, starts = session([BEARER, BASIC], V13, keylog)
    frames = tcp(flights[: starts[1]], T0)[:-3]  # no FINs: the capture stopped
    client_end = 1001 + sum(len(d) for side, d in flights if side == 0)
    server_end = 9001 + sum(len(d) for side, d in flights[: starts[1]] if side == 1)
    ack = Ether() / IP(src=SERVER[0], dst=CLIENT[0])
    ack = ack / TCP(sport=SERVER[1], dport=CLIENT[1], seq=server_end, ack=client_end, flags="A")
    ack.time = T0 + 5
    code, out = verify(capture(tmp_path, "tail", [*frames, ack]), keylog, capsys)
    assert code == 2, out
    assert "request bytes lost 1 time on 1 connection to mail.contoso.com:443" in out
    code, out = verify(capture(tmp_path, "whole", frames), keylog, capsys)
    assert code == 0, out  # control: without the ACK nothing shows the loss
