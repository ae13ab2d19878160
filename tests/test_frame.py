"""Every event's ``frame`` is the Wireshark frame number of the packet holding the request's first
byte: checked against what was built into generated captures (scapy) with split, out-of-order,
retransmitted and pipelined requests, and against tshark's own numbers on those and on every
bundled and public capture, through every reader (native and pure walk, pcapng with blocks that
are not packets, a stream, a chain of files, a converted format, several workers)."""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from shared_dir import PUBLIC, needs_public

from analyzer import parallel
from analyzer.engine import Engine, analyze_paths
from analyzer.model import Event

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
TSHARK = shutil.which("tshark")
EDITCAP = shutil.which("editcap")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (setup.sh test)")

CLIENT, SERVER = "10.1.1.1", "10.1.1.2"
T0 = 1772442000.0
AUTH = b"Authorization: Basic dXNlcjpwYXNz\r\n"


def _request(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: web.test\r\n" + AUTH + extra + b"\r\n"


class Capture:
    """Packets of a generated capture, in file order, and the frame each request should get."""

    def __init__(self) -> None:
        from scapy.all import IP, TCP, Ether

        self._layers = (Ether, IP, TCP)
        self.packets: list = []
        self.expected: dict[str, int] = {}  # request path -> frame of its first byte

    def add(self, sport: int, seq: int, ack: int, flags: str, payload: bytes = b"",
            to_server: bool = True, starts: tuple[str, ...] = ()) -> int:  # fmt: skip
        """Append one packet; ``starts`` names the requests whose first byte it holds."""
        ether, ip, tcp = self._layers
        src, dst = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
        sp, dp = (sport, 80) if to_server else (80, sport)
        p = ether() / ip(src=src, dst=dst) / tcp(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags)
        if payload:
            p = p / payload
        p.time = T0 + len(self.packets) * 0.001
        self.packets.append(p)
        frame = len(self.packets)
        for path in starts:
            self.expected[path] = frame
        return frame

    def handshake(self, sport: int) -> None:
        self.add(sport, 999, 0, "S")
        self.add(sport, 4999, 1000, "SA", to_server=False)
        self.add(sport, 1000, 5000, "A")

    def answer(self, sport: int, seq: int, ack: int, count: int = 1) -> int:
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * count
        self.add(sport, seq, ack, "PA", ok, to_server=False)
        return seq + len(ok)

    def write(self, path: Path) -> Path:
        from scapy.all import wrpcap

        wrpcap(str(path), self.packets)
        return path


def tricky_capture() -> Capture:
    """One connection per way a request's first byte can be hard to place."""
    cap = Capture()
    # split: a head in three segments (tshark shows it in the third)
    cap.handshake(40001)
    head = _request("/split", b"X-Pad: " + b"p" * 300 + b"\r\n")
    cap.add(40001, 1000, 5000, "PA", head[:5], starts=("/split",))
    cap.add(40001, 1005, 5000, "PA", head[5:200])
    cap.add(40001, 1200, 5000, "PA", head[200:])
    cap.answer(40001, 5000, 1000 + len(head))
    # out of order: the second half comes first
    cap.handshake(40002)
    head = _request("/late-start")
    cap.add(40002, 1000 + 30, 5000, "PA", head[30:])
    cap.add(40002, 1000, 5000, "PA", head[:30], starts=("/late-start",))
    cap.answer(40002, 5000, 1000 + len(head))
    # retransmitted with other bytes: the first copy is read (and its frame given)
    cap.handshake(40003)
    first, other = _request("/first"), _request("/other")
    assert len(first) == len(other)
    cap.add(40003, 1000, 5000, "PA", first, starts=("/first",))
    cap.add(40003, 1000, 5000, "PA", other)
    cap.answer(40003, 5000, 1000 + len(first))
    # pipelined: two requests and the start of a third in one segment
    cap.handshake(40004)
    a, b, c = _request("/pipe-a"), _request("/pipe-b"), _request("/pipe-c")
    cap.add(40004, 1000, 5000, "PA", a + b + c[:10], starts=("/pipe-a", "/pipe-b", "/pipe-c"))
    cap.add(40004, 1000 + len(a + b) + 10, 5000, "PA", c[10:])
    cap.answer(40004, 5000, 1000 + len(a + b + c), count=3)
    # keep-alive after a body nobody reads: the skipped segments (absorbed by the native walk)
    # are counted, and the next request starts a segment of its own
    cap.handshake(40005)
    seq = 1000
    post = b"POST /upload HTTP/1.1\r\nHost: web.test\r\n" + AUTH + b"Content-Length: 4000\r\n\r\n"
    cap.add(40005, seq, 5000, "PA", post, starts=("/upload",))
    seq += len(post)
    for _ in range(4):
        cap.add(40005, seq, 5000, "PA", b"b" * 1000)
        seq += 1000
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 12000\r\n\r\n"
    s = 5000
    cap.add(40005, s, seq, "PA", big, to_server=False)
    s += len(big)
    for _ in range(12):
        cap.add(40005, s, seq, "PA", b"r" * 1000, to_server=False)
        s += 1000
        cap.add(40005, seq, s, "A")
    after = _request("/after-body")
    cap.add(40005, seq, s, "PA", after, starts=("/after-body",))
    cap.answer(40005, s, seq + len(after))
    return cap


def frames_by_path(events: list[Event]) -> dict[str, int | None]:
    return {e.uri: e.frame for e in events}


# -- tshark's numbers ------------------------------------------------------------------------
_FIELDS = ("frame.number", "tcp.segment", "tls.segment", "http.request.method",
           "http2.headers.method", "sip.Method", "sip.Status-Code")  # fmt: skip


def tshark_first_bytes(path: Path, keylog: Path | None = None) -> collections.Counter:
    """(frame of the first byte, method) of every request tshark shows: the frame it shows a
    request in, or for a request it reassembled, the first of the segments it was made of."""
    assert TSHARK is not None
    cmd = [TSHARK, "-r", str(path), "-n", "-o", "tcp.reassemble_out_of_order:TRUE"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    cmd += ["-Y", "http.request or http2.headers.method or sip.Request-Line", "-T", "fields"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=|"]
    for name in _FIELDS:
        cmd += ["-e", name]
    # a capture cut short makes tshark exit 2 after printing what it read
    lines = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
    assert lines or keylog is None or not path.stat().st_size
    out: collections.Counter = collections.Counter()
    for line in lines:
        f = line.split("\t")
        segments = [int(x) for x in f[1].replace("|", ",").split(",") if x]
        segments = segments or [int(x) for x in f[2].replace("|", ",").split(",") if x]
        methods = [m for col in (f[3], f[4]) for m in col.split("|") if m]
        if f[5] and not f[6]:
            methods.append(f[5].split("|")[0])
        # only the first request a packet shows can have begun in an earlier packet
        for i, method in enumerate(methods):
            out[(segments[0] if segments and i == 0 else int(f[0]), method.upper())] += 1
    return out


def ours(events: list[Event]) -> collections.Counter:
    return collections.Counter((e.frame, e.method) for e in events if e.method)


# -- generated captures ----------------------------------------------------------------------
def test_split_out_of_order_retransmitted_and_pipelined_requests(tmp_path: Path) -> None:
    cap = tricky_capture()
    path = cap.write(tmp_path / "tricky.pcap")
    events = analyze_paths([str(path)]).events
    assert frames_by_path(events) == cap.expected
    assert "/other" not in frames_by_path(events)  # the retransmission's bytes were not read


@needs_tshark
def test_generated_capture_matches_tshark(tmp_path: Path) -> None:
    cap = tricky_capture()
    path = cap.write(tmp_path / "tricky.pcap")
    theirs = tshark_first_bytes(path)
    assert ours(analyze_paths([str(path)]).events) == theirs
    assert sorted(f for f, _m in theirs.elements()) == sorted(cap.expected.values())


def test_native_and_pure_python_walks_number_alike(tmp_path: Path) -> None:
    path = tricky_capture().write(tmp_path / "tricky.pcap")
    code = (
        "import json, sys; from analyzer.engine import analyze_paths; "
        "print(json.dumps([[e.uri, e.frame] for e in analyze_paths([sys.argv[1]]).events]))"
    )
    runs = []
    for pure in ("0", "1"):
        env = {**os.environ, "OAUTH_ANALYZER_PURE_PYTHON": pure, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        runs.append(done.stdout)
    assert runs[0] == runs[1]
    assert dict(json.loads(runs[0]))["/after-body"] == 59  # after 12 absorbed body segments


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def pcapng_with_other_blocks(cap: Capture) -> tuple[bytes, int]:
    """The packets as pcapng, between blocks that are not packets: a name resolution block,
    interface statistics, a second section (its own interface) half way, and one packet as a
    simple packet block; and a custom block, which Wireshark shows as a frame of its own.
    Returns the file and the frame number the custom block takes."""
    from scapy.all import raw

    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0))
    nrb = _block(4, struct.pack("<HH", 1, 8) + bytes([10, 1, 1, 2]) + b"web\0" + b"\0" * 4)
    isb = _block(5, struct.pack("<III", 0, 0, 0))
    custom = _block(0x00000BAD, struct.pack("<I", 32473) + b"note")
    out = bytearray(shb + idb + nrb)
    half = len(cap.packets) // 2
    for i, p in enumerate(cap.packets):
        data = raw(p)
        if i == half:
            out += shb + idb + custom
        if i == 5:
            out += _block(3, struct.pack("<I", len(data)) + data)
        else:
            us = round(float(p.time) * 1e6)
            head = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), len(data))
            out += _block(6, head + data)
        if i % 7 == 3:
            out += isb
    return bytes(out), half + 1


@needs_tshark
def test_pcapng_blocks_that_are_not_packets_are_not_counted(tmp_path: Path) -> None:
    cap = tricky_capture()
    path = tmp_path / "blocks.pcapng"
    data, custom = pcapng_with_other_blocks(cap)
    path.write_bytes(data)
    events = analyze_paths([str(path)]).events
    after = {p: f + (f >= custom) for p, f in cap.expected.items()}
    assert frames_by_path(events) == after
    assert ours(events) == tshark_first_bytes(path)


def test_a_stream_is_numbered_from_its_start_as_the_file_is(tmp_path: Path) -> None:
    path = tricky_capture().write(tmp_path / "tricky.pcap")
    engine = Engine()
    engine.read_stream(io.BytesIO(path.read_bytes()), "-")
    streamed = engine.finish().events
    assert [(e.uri, e.frame) for e in streamed] == [
        (e.uri, e.frame) for e in analyze_paths([str(path)]).events
    ]


def test_files_read_as_one_chain_go_on_counting(tmp_path: Path) -> None:
    cap = tricky_capture()
    first = Capture()
    first.packets = cap.packets[:13]  # the first two connections
    second = Capture()
    second.packets = cap.packets[13:]
    a, b = first.write(tmp_path / "a.pcap"), second.write(tmp_path / "b.pcap")
    chained = analyze_paths([str(a), str(b)])
    assert frames_by_path(chained.events) == cap.expected  # as mergecap -a would number them
    alone = frames_by_path(analyze_paths([str(b)]).events)
    assert {p: f - 13 for p, f in cap.expected.items() if f > 13} == alone


def test_several_workers_number_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    cap = tricky_capture()
    path = cap.write(tmp_path / "tricky.pcap")
    for jobs in (2, 3):
        events = parallel.analyze_parallel([str(path)], jobs).events
        assert frames_by_path(events) == cap.expected


@pytest.mark.skipif(EDITCAP is None, reason="editcap (tshark) not installed")
@pytest.mark.parametrize("file_type", ["snoop", "netmon2"])
def test_a_converted_format_is_numbered_as_wireshark_numbers_it(
    file_type: str, tmp_path: Path
) -> None:
    cap = tricky_capture()
    pcap = cap.write(tmp_path / "tricky.pcap")
    out = tmp_path / f"tricky.{file_type}"
    assert EDITCAP is not None
    subprocess.run([EDITCAP, "-F", file_type, str(pcap), str(out)], check=True)
    events = analyze_paths([str(out)]).events
    assert {e.source for e in events} == {"tshark"}
    assert frames_by_path(events) == cap.expected
    assert ours(events) == tshark_first_bytes(out)


def test_archives_have_no_frame_numbers() -> None:
    sazs = sorted((CAPTURES / "archives").glob("*.saz")) + sorted(
        (CAPTURES / "archives").glob("*.har")
    )
    assert sazs
    for archive in sazs:
        events = analyze_paths([str(archive)]).events
        assert events and all(e.frame is None for e in events), archive.name


# -- bundled and public captures ---------------------------------------------------------------
BUNDLED = sorted(
    p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng") and "generate" not in p.parts
)


@needs_tshark
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_bundled_captures_match_tshark(path: Path) -> None:
    keylog = path.with_suffix(".keys")
    result = analyze_paths([str(path)], tls_keylog=str(keylog) if keylog.exists() else None)
    mine = ours(result.events)
    assert mine and all(f for f, _m in mine)
    assert mine == mine & tshark_first_bytes(path, keylog if keylog.exists() else None)


@needs_tshark
@needs_public
def test_public_captures_match_tshark() -> None:
    seen = 0
    for path in sorted(PUBLIC.glob("*.pcap*")):
        mine = ours(analyze_paths([str(path)]).events)
        assert mine == mine & tshark_first_bytes(path), path.name
        seen += sum(mine.values())
    assert seen >= 50  # SIP over UDP (ndpi__sip) among them


def test_a_gzip_compressed_capture_is_numbered_as_the_plain_one(tmp_path: Path) -> None:
    import gzip

    cap = tricky_capture()
    plain = cap.write(tmp_path / "tricky.pcap")
    packed = tmp_path / "tricky.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert frames_by_path(analyze_paths([str(packed)]).events) == cap.expected


def test_every_output_carries_the_frame(tmp_path: Path) -> None:
    """JSON Lines, CSV, the pandas API and the HTML report's event table."""
    import csv

    from analyzer.api import analyze
    from analyzer.report.export import write_csv, write_jsonl
    from analyzer.report.html import render_html

    cap = tricky_capture()
    path = cap.write(tmp_path / "tricky.pcap")
    analysis = analyze(str(path))
    events = analysis.result.events
    lines = io.StringIO()
    write_jsonl(events, lines)
    assert {
        json.loads(x)["uri"]: json.loads(x)["frame"] for x in lines.getvalue().splitlines()
    } == (cap.expected)
    table = io.StringIO()
    write_csv(events, table, Event)
    rows = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert {r["uri"]: int(r["frame"]) for r in rows} == cap.expected
    frame = analysis.events
    assert dict(zip(frame["uri"], frame["frame"], strict=True)) == cap.expected
    page = render_html(analysis, with_charts=False)
    assert 'data-key="frame"' in page
    split = next(e for e in events if e.uri == "/split")
    row = page[page.index(f'id="event-{split.event_id}"') :]
    assert f">{cap.expected['/split']}<" in row[: row.index("</tr>")]


def h2_capture() -> Capture:
    """Cleartext HTTP/2 with prior knowledge: a request in the preface's segment, one whose
    HEADERS frame header is cut after 5 bytes, one that starts after a DATA frame."""
    from h2_kit import Peer, data, request, response, settings

    client, server = Peer(), Peer()
    cap = Capture()
    cap.handshake(40010)
    auth = ("authorization", "Basic dXNlcjpwYXNz")
    first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings()
    first += client.headers(1, request("/h2-one", auth), end=True)
    second = client.headers(3, request("/h2-split", auth), end=True)
    third = data(7, b"x" * 40) + client.headers(5, request("/h2-after-data", auth), end=True)
    seq = 1000
    for payload, starts in ((first, "/h2-one"), (second[:5], "/h2-split"), (second[5:], "")):
        cap.add(40010, seq, 5000, "PA", payload, starts=(starts,) if starts else ())
        seq += len(payload)
    answer = settings() + settings(ack=True)
    for sid in (1, 3):
        answer += server.headers(sid, response(200), end=True)
    cap.add(40010, 5000, seq, "PA", answer, to_server=False)
    cap.add(40010, seq, 5000 + len(answer), "PA", third, starts=("/h2-after-data",))
    seq += len(third)
    reply = server.headers(5, response(200), end=True)
    cap.add(40010, 5000 + len(answer), seq, "PA", reply, to_server=False)
    return cap


def test_http2_requests_are_placed_by_their_headers_frame(tmp_path: Path) -> None:
    cap = h2_capture()
    path = cap.write(tmp_path / "h2.pcap")
    events = analyze_paths([str(path)]).events
    assert {e.protocol for e in events} == {"http/2"}
    assert frames_by_path(events) == cap.expected
    if TSHARK is not None:
        assert ours(events) == tshark_first_bytes(path)


def test_analyze_from_standard_input_numbers_as_the_file(tmp_path: Path) -> None:
    """``analyze -`` in a child process, the capture on its standard input."""
    cap = tricky_capture()
    path = cap.write(tmp_path / "tricky.pcap")
    with open(path, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "analyzer", "analyze", "-", "--format", "jsonl"],
            stdin=stdin,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["uri"]: r["frame"] for r in rows} == cap.expected


@needs_tshark
@pytest.mark.parametrize(
    "how", [{"segment": 200}, {"coalesce": True}, {"udp": True}], ids=["split", "coalesced", "udp"]
)
def test_sip_requests_match_tshark(how: dict, tmp_path: Path) -> None:
    """SIP over TCP cut into 200-byte segments, or two messages per segment, and over UDP."""
    import sip_kit

    messages = sip_kit.digest_register() + sip_kit.bearer_register("eyJ0eXAiOiJKV1QifQ.e30.sig")
    path = tmp_path / "sip.pcap"
    if how.pop("udp", False):
        sip_kit.udp_capture(path, messages)
    else:
        sip_kit.tcp_capture(path, messages, **how)
    events = analyze_paths([str(path)]).events
    assert {e.protocol for e in events} == {"sip"} and len(events) >= 2
    assert ours(events) == ours(events) & tshark_first_bytes(path)


def test_a_buffered_segment_retransmitted_with_other_bytes_keeps_the_first_copy(
    tmp_path: Path,
) -> None:
    """The second request's segment comes before the first's, then again, longer and with
    other bytes: the first copy is read, and its frame given; the longer copy adds its tail."""
    cap = Capture()
    cap.handshake(40020)
    one, two, wrong = _request("/one"), _request("/two"), _request("/bad")
    extra = _request("/three")
    cap.add(40020, 1000 + len(one), 5000, "PA", two, starts=("/two",))
    cap.add(40020, 1000 + len(one), 5000, "PA", wrong + extra, starts=("/three",))
    cap.add(40020, 1000, 5000, "PA", one, starts=("/one",))
    cap.answer(40020, 5000, 1000 + len(one + two + extra), count=3)
    path = cap.write(tmp_path / "again.pcap")
    assert frames_by_path(analyze_paths([str(path)]).events) == cap.expected
