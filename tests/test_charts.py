"""Charts: lanes, bars, legends and warning marks on the bundled captures; 10,000 events stay
readable (aggregated) and fast; files written are valid PNG and SVG."""

from __future__ import annotations

import dataclasses
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

import analyzer
from analyzer.analysis.findings import Context, run_rules
from analyzer.analysis.handshakes import group_handshakes, pair_verdicts
from analyzer.api import Analysis
from analyzer.cli import main
from analyzer.engine import AnalysisResult
from analyzer.model import Event, TokenRecord
from analyzer.report import charts
from analyzer.report.charts import (
    CLASS_COLORS,
    DENSE_LANE,
    MAX_LANES,
    MAX_TOKENS,
    WARNING_COLOR,
    classes_over_time,
    clean_label,
    interval_label,
    pick_interval,
    save_charts,
    timeline,
    token_validity,
)

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SFB = CAPTURES / "exchange-sfb.pcap"
MESSY = CAPTURES / "messy.pcapng"
BASE = 1772442000.0  # 2026-03-02 09:00:00 UTC
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sfb() -> Analysis:
    return analyzer.analyze(SFB)


@pytest.fixture(scope="module")
def big() -> Analysis:
    return synthetic()


# -- a synthetic analysis built from Event records -------------------------------------------
def synthetic(
    busy: int = 8000, quiet_pairs: int = 50, per_quiet: int = 40, host: str = "mail.big.test"
) -> Analysis:
    """``busy`` bearer exchanges from one client (a new token every 100, an expired one every
    1000, each rejected and followed by an accepted NTLM exchange) plus ``quiet_pairs`` pairs
    of ``per_quiet`` basic/ntlm/kerberos/digest exchanges; handshakes, verdicts and findings
    come from the real analysis functions."""
    events: list[Event] = []
    tokens: dict[str, TokenRecord] = {}

    def add(**fields: object) -> None:
        events.append(
            Event(
                event_id=0, protocol="http/1.1", method="POST", uri="/EWS/Exchange.asmx", **fields
            )
        )

    for i in range(busy):
        ts = BASE + i * 0.9
        expired = i % 1000 == 999
        fp = f"e{i:011x}" if expired else f"{i // 100:012x}"
        nbf, exp = (BASE - 86400, BASE - 50000) if expired else (BASE - 300, BASE + 8 * 3600)
        tokens.setdefault(
            fp,
            TokenRecord(
                fingerprint=fp,
                role="bearer",
                format="jwt",
                iss_app="Skype for Business / Lync",
                nbf=nbf,
                exp=exp,
                first_seen=ts,
            ),
        )
        where = {
            "client_ip": "10.1.0.20",
            "client_port": 50000 + i // 50,
            "server_ip": "10.1.0.10",
            "server_port": 443,
            "conn_id": f"C{i // 50:011x}",
            "host": host,
        }
        bearer = {"scheme": "bearer", "cred_fp": fp, "cred_len": 900, "token_fp": fp}
        token = {"token_format": "jwt", "token_nbf": nbf, "token_exp": exp}
        if expired:
            add(ts=ts, status=401, diag_code=2000002, diag_category="token_expired",
                token_flags=("expired",), **where, **bearer, **token)  # fmt: skip
            add(ts=ts + 0.1, status=200, scheme="ntlm", cred_fp="n" * 12, cred_len=300, **where)
        else:
            add(ts=ts, status=200, **where, **bearer, **token)
    for p in range(quiet_pairs):
        scheme = ("basic", "ntlm", "negotiate", "digest")[p % 4]
        for j in range(per_quiet):
            add(
                ts=BASE + p * 60 + j * 30,
                client_ip=f"10.2.{p}.1",
                client_port=40000 + j,
                server_ip="10.1.0.10",
                server_port=80,
                conn_id=f"Q{p:05x}{j:06x}",
                host=f"app{p}.big.test",
                status=200 if j % 7 else 401,
                scheme=scheme,
                mechanism="kerberos" if scheme == "negotiate" else None,
                cred_fp="b" * 12,
                cred_len=20,
            )
    events.sort(key=lambda e: e.ts)
    events = [dataclasses.replace(e, event_id=i) for i, e in enumerate(events, 1)]
    events, handshakes = group_handshakes(events)
    verdicts = pair_verdicts(events, handshakes)
    token_list = list(tokens.values())
    findings = run_rules(Context(events, handshakes, token_list, verdicts))
    result = AnalysisResult(
        events=events,
        handshakes=handshakes,
        verdicts=verdicts,
        tokens=token_list,
        findings=findings,
    )
    return Analysis(result)


# -- helpers -----------------------------------------------------------------------------------
def ytick_labels(fig: Figure) -> list[str]:
    """Lane / bar labels from top to bottom."""
    return [t.get_text() for t in fig.axes[0].get_yticklabels()][::-1]


def legend_texts(fig: Figure) -> list[list[str]]:
    return [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]


def scatters(fig: Figure) -> dict[str, PathCollection]:
    return {c.get_label(): c for c in fig.axes[0].collections if isinstance(c, PathCollection)}


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


# -- interval choice ---------------------------------------------------------------------------
def test_pick_interval_gives_20_to_60_bins() -> None:
    assert pick_interval(0) == 1
    assert pick_interval(17) == 1
    assert pick_interval(300) == 5
    assert pick_interval(7200) == 120
    assert pick_interval(86400) == 1800
    assert pick_interval(30 * 86400) == 43200
    assert pick_interval(float("nan")) == 1
    assert pick_interval(10 * 365 * 86400) == 61 * 86400
    for span in (61, 500, 3 * 3600, 2 * 86400, 90 * 86400):
        assert 20 <= span / pick_interval(span) <= 60
    assert [interval_label(s) for s in (1, 10, 60, 300, 7200, 86400, 7 * 86400)] == [
        "1 s",
        "10 s",
        "1 min",
        "5 min",
        "2 h",
        "1 day",
        "7 days",
    ]


def test_labels_are_printable_bounded_and_literal() -> None:
    assert clean_label("a\x00b\nc") == "a?b?c"
    assert clean_label("x" * 100) == "x" * 45 + "..."
    assert clean_label(None) == ""
    assert clean_label(float("nan")) == ""


# -- a) timeline -------------------------------------------------------------------------------
def test_timeline_lanes_marks_legends_and_fallback(sfb: Analysis) -> None:
    fig = timeline(sfb)
    assert ytick_labels(fig) == ["10.1.0.20 -> mail.contoso.com", "10.1.0.50 -> mail.contoso.com"]
    assert legend_texts(fig) == [
        ["oauth", "basic", "ntlm", "kerberos"],
        ["accepted", "rejected", "challenged", "OAuth fallback"],
    ]
    marks = scatters(fig)
    # events 4-13 have a handshake: the probe (challenged), 3 oauth accepted, 2 rejected, the
    # NTLM type-1 leg (challenged) and type-3 leg (accepted), ...
    assert {k: len(c.get_offsets()) for k, c in marks.items()} == {
        "oauth challenged": 1,
        "oauth accepted": 3,
        "oauth rejected": 2,
        "ntlm challenged": 1,
        "ntlm accepted": 1,
        "basic accepted": 1,
        "kerberos accepted": 1,
    }
    assert marks["oauth rejected"].get_paths()[0] is not marks["oauth accepted"].get_paths()[0]
    green = mcolors.to_rgba(CLASS_COLORS["oauth"])
    assert tuple(marks["oauth rejected"].get_edgecolor()[0]) == pytest.approx(green)
    assert tuple(marks["ntlm accepted"].get_facecolor()[0]) == pytest.approx(
        mcolors.to_rgba(CLASS_COLORS["ntlm"])
    )
    assert "OAuth rejected (token_expired) -> ntlm" in texts(fig)
    note = next(t for t in fig.axes[0].texts if t.get_text().startswith("OAuth rejected"))
    # the arrow points at the fallback time (handshake 3 started 09:00:06.00674)
    assert charts._to_days(1772442006.00674) == pytest.approx(note.xy[0])


def test_timeline_of_messy_capture_has_a_lane_per_pair() -> None:
    fig = timeline(analyzer.analyze(MESSY))
    assert len(ytick_labels(fig)) == 6
    assert "10.9.0.15 -> lyncweb.contoso.com" in ytick_labels(fig)
    assert legend_texts(fig)[0] == ["oauth", "basic", "digest"]


# -- b) classes over time ----------------------------------------------------------------------
def test_classes_over_time_stacks_authenticated_exchanges(sfb: Analysis) -> None:
    fig = classes_over_time(sfb)
    ax = fig.axes[0]
    assert ax.get_title(loc="left") == "Authenticated exchanges per auth class (per 1 s)"
    assert [c.get_label() for c in ax.containers] == ["oauth", "basic", "ntlm", "kerberos"]
    totals = {c.get_label(): sum(p.get_height() for p in c.patches) for c in ax.containers}
    assert totals == {"oauth": 5, "basic": 1, "ntlm": 2, "kerberos": 1}  # probe not counted
    assert {len(c.patches) for c in ax.containers} == {12}  # 09:00:02 .. 09:00:13, 1 s bins
    assert legend_texts(fig) == [["oauth", "basic", "ntlm", "kerberos"]]


# -- c) token validity -------------------------------------------------------------------------
def test_token_validity_bars_and_expired_use_in_red(sfb: Analysis) -> None:
    fig = token_validity(sfb)
    labels = ytick_labels(fig)
    assert len(labels) == 8  # bearer/actor/access tokens; not the empty probe, not assertions
    assert labels[:2] == [  # used outside their validity: shown first
        "7491a62b9831 actor Skype for Business / Lync",
        "9ceea6443a88 bearer Skype for Business / Lync",
    ]
    assert labels[2] == "8f11eccf6ef0 actor Skype for Business / Lync"  # then the most used
    assert len(fig.axes[0].patches) >= 8
    marks = scatters(fig)
    outside = marks["use outside validity"]
    assert len(outside.get_offsets()) == 2
    assert tuple(outside.get_facecolor()[0]) == pytest.approx(mcolors.to_rgba(WARNING_COLOR))
    event8 = charts._to_days(sfb.result.events[7].ts)
    assert list(outside.get_offsets()[:, 0]) == pytest.approx([event8, event8])
    assert len(marks["use within validity"].get_offsets()) == 9
    assert "exp 2026-04-01 08:56 >" in texts(fig)  # the 30-day actor is cut and labelled
    assert "use outside validity" in legend_texts(fig)[0]


# -- files -------------------------------------------------------------------------------------
def test_save_charts_writes_valid_png_and_svg(sfb: Analysis, tmp_path: Path) -> None:
    paths = save_charts(sfb, tmp_path / "out")
    assert [p.name for p in paths] == [
        "timeline.png",
        "timeline.svg",
        "classes_over_time.png",
        "classes_over_time.svg",
        "token_validity.png",
        "token_validity.svg",
    ]
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        else:
            root = ET.fromstring(data)
            assert root.tag == "{http://www.w3.org/2000/svg}svg"
            assert b"<script" not in data


def test_cli_analyze_writes_charts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["analyze", str(SFB), "--charts", str(tmp_path / "c"), "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 15  # the normal output is still there
    assert "wrote 6 chart files" in captured.err
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "classes_over_time.png",
        "classes_over_time.svg",
        "timeline.png",
        "timeline.svg",
        "token_validity.png",
        "token_validity.svg",
    ]


# -- scale and hostile input -------------------------------------------------------------------
def test_ten_thousand_events_render_aggregated(big: Analysis, tmp_path: Path) -> None:
    assert len(big.result.events) == 10_008
    start = time.perf_counter()
    paths = save_charts(big, tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 120, elapsed  # a hang guard: aggregated lanes draw in seconds, not minutes
    assert len(paths) == 6

    fig = timeline(big)
    labels = ytick_labels(fig)
    assert len(labels) == MAX_LANES
    assert labels[0] == "10.1.0.20 -> mail.big.test\n8,008 exchanges (peak 134 per 2 min)"
    assert fig.axes[0].get_title(loc="right") == (
        "21 quieter pairs not shown; lanes with over 500 exchanges show counts per 2 min"
    )
    per_lane: dict[int, int] = {}  # marks drawn one by one, per lane (scatters span lanes)
    for collection in scatters(fig).values():
        for _, y in collection.get_offsets():
            per_lane[round(y)] = per_lane.get(round(y), 0) + 1
    assert max(per_lane.values()) <= DENSE_LANE
    assert "OAuth rejected (token_expired) -> ntlm (8 times)" in texts(fig)

    fig = classes_over_time(big)
    assert fig.axes[0].get_title(loc="left").endswith("(per 2 min)")
    assert {len(c.patches) for c in fig.axes[0].containers} == {60}  # 09:00 .. 10:59:59

    fig = token_validity(big)
    labels = ytick_labels(fig)
    assert len(labels) == MAX_TOKENS
    assert all(label.startswith("e0000") for label in labels[:8])  # the 8 expired uses
    assert labels[8].startswith("000000000000 bearer")
    assert len(scatters(fig)["use outside validity"].get_offsets()) == 8
    assert fig.axes[0].get_title(loc="right") == "48 less-used tokens not shown (showing 40)"


def test_hostile_host_is_drawn_literally() -> None:
    host = "$\\nosuchcmd{x}$ <script>x</script>"
    small = synthetic(busy=1000, quiet_pairs=0, host=host)
    fig = timeline(small)
    assert ytick_labels(fig) == [
        "10.1.0.20 -> $\\nosuchcmd{x}$ <script>x</script>\n1,001 exchanges (peak 17 per 15 s)"
    ]
    svg = charts.figure_bytes(fig, "svg")  # mathtext would raise on \nosuchcmd
    ET.fromstring(svg)
    assert b"<script>" not in svg


def test_empty_analysis_draws_empty_charts(tmp_path: Path) -> None:
    empty = Analysis(AnalysisResult())
    assert texts(timeline(empty)) == ["no authentication exchanges"]
    assert texts(classes_over_time(empty)) == ["no authenticated exchanges"]
    assert texts(token_validity(empty)) == ["no bearer, actor or issued access tokens"]
    assert len(save_charts(empty, tmp_path)) == 6


def test_dense_lane_counts_sum_to_the_exchanges(big: Analysis) -> None:
    fig = timeline(big)
    top = MAX_LANES - 1  # the busy pair is the first lane, drawn at the top
    bars = [p for p in fig.axes[0].patches if abs(p.get_y() - (top - 0.4)) < 0.9]
    assert bars and all(p.get_height() <= 0.8 + 1e-9 for p in bars)
    heights = np.array([p.get_height() for p in bars])
    assert heights.max() == pytest.approx(0.8)  # the busiest bin fills the lane


# -- readable charts: odd lifetimes, notes apart, one time format, legible size -------------------
def test_negative_and_missing_lifetimes_are_drawn_as_such() -> None:
    t0 = 1772442000.0
    tokens = [
        TokenRecord("a" * 12, "bearer", "jwt", nbf=t0 + 3600, exp=t0, first_seen=t0, uses=1),
        TokenRecord("b" * 12, "bearer", "jwt", first_seen=t0, uses=1),
        TokenRecord("c" * 12, "bearer", "jwt", nbf=t0, exp=t0 + 60, first_seen=t0, uses=1),
    ]
    fig = token_validity(Analysis(AnalysisResult(tokens=tokens)))
    labels = ytick_labels(fig)
    assert len(labels) == 3  # none dropped
    assert any(label.endswith("(exp 1 h before nbf)") for label in labels)
    assert any(label.endswith("(no nbf/exp)") for label in labels)
    legend = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "exp before nbf" in legend and "no nbf/exp" in legend
    hatched = [p for p in fig.axes[0].patches if p.get_hatch() == "xx"]
    assert len(hatched) == 1 and hatched[0].get_width() > 0


def test_fallback_notes_do_not_overlap(sfb: Analysis, big: Analysis) -> None:
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    for text in ("first note", "second note", "third note"):
        ax.annotate(text, xy=(5, 5), xytext=(5, 5))
    charts._spread_notes(fig, ax)
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    for analysis in (sfb, big):
        fig = timeline(analysis)
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_one_time_format_per_axis(sfb: Analysis, big: Analysis) -> None:
    import re

    for analysis, pattern, label in (
        (sfb, r"\d\d:\d\d:\d\d", "time (UTC) on 2026-03-02"),
        (big, r"\d\d:\d\d", "time (UTC) on 2026-03-02"),
    ):
        fig = timeline(analysis)
        FigureCanvasAgg(fig).draw()
        ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
        assert ticks and all(re.fullmatch(pattern, t) for t in ticks), ticks
        assert fig.axes[0].get_xlabel() == label
    assert charts.axis_format(3 * 86400, 20514.0)[0] == "%m-%d %H:%M"
    assert charts.axis_format(90 * 86400, 20514.0) == ("%Y-%m-%d", "date (UTC)")


def test_charts_are_legible_at_the_report_size(sfb: Analysis, tmp_path: Path) -> None:
    fig = timeline(sfb)
    assert fig.get_size_inches()[0] * charts.DPI == 1200  # shown 1:1 on a laptop
    sizes = [
        t.get_fontsize() for t in fig.axes[0].get_xticklabels() + fig.axes[0].get_yticklabels()
    ]
    assert min(sizes) >= charts.TICK_SIZE >= 9
    from matplotlib.image import imread

    png = save_charts(sfb, tmp_path)[0]
    assert png.suffix == ".png" and imread(png).shape[1] == 12 * charts.PNG_DPI
