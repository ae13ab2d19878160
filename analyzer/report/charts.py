"""Charts of one analysis: the exchange timeline, auth classes over time, token validity.

Each chart is a pure function ``Analysis -> matplotlib.figure.Figure`` built on the Agg/SVG
backends through ``Figure`` objects only (never pyplot's global state), so it is safe in a
library, a server or a test. Dense data is aggregated so a chart stays readable with 10,000+
events: a timeline lane with many marks becomes per-interval stacked counts, the token chart keeps
the most-used tokens. Every label drawn from capture content is sanitised and shown literally
(no mathtext), because capture content is hostile input.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation

from analyzer.model import AUTH_CLASSES, OUTCOMES
from analyzer.report.times import format_utc
from analyzer.words import plural

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: Fixed colour per auth class (the same in every chart and in the HTML report).
CLASS_COLORS = {
    "oauth": "#2ca02c",  # green
    "ntlm": "#ff7f0e",  # orange
    "kerberos": "#1f77b4",  # blue
    "basic": "#d62728",  # red
    "negotiate-ntlm": "#8c564b",  # brown
    "digest": "#9467bd",  # purple
    "tls-dsk": "#17becf",  # cyan (SIP certificate sign-in)
    "anonymous": "#7f7f7f",  # grey
    "other": "#000000",  # black
}
#: Marker per handshake outcome.
OUTCOME_MARKERS = {"accepted": "o", "rejected": "x", "challenged": "^", "incomplete": "s"}
#: Colour of token uses outside the token's validity window.
WARNING_COLOR = "#e31a1c"
MISSING_COLOR = "#888888"  # a token without nbf and exp
OK_USE_COLOR = "#222222"
ROLE_COLORS = {"bearer": "#9ecae1", "actor": "#c7c7e2", "access-token": "#a1d99b"}
TOKEN_ROLES = ("bearer", "actor", "access-token")

DENSE_LANE = 500  # a timeline lane with more marks than this is drawn as per-interval counts
MAX_LANES = 30  # timeline lanes shown (the busiest pairs)
MAX_TOKENS = 40  # token bars shown (the most-used tokens)
CONTEXT = 3 * 86400.0  # the token chart shows at most this much time around the capture
CAPTURE_COLOR = "#fcd34d"
FALLBACK_COLOR = "#7a2e00"
MAX_FALLBACK_NOTES = 3  # fallback annotations per lane
MAX_BINS = 60
MAX_LABEL = 48
#: Candidate bin widths in seconds: the first giving at most MAX_BINS bins over the span wins.
INTERVALS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
)
CHART_WIDTH = 12.0  # inches: 1,200 px at DPI, the width the HTML report shows it at
DPI = 100  # SVG and the HTML report's images
PNG_DPI = 150  # --charts PNG files: sharper when zoomed or printed
TICK_SIZE = 9  # points: legible when the report scales a chart to a laptop's width
LABEL_SIZE = 10
NOTE_SIZE = 9
_DAY = 86400.0
_EPOCH_DAYS = float(mdates.date2num(np.datetime64("1970-01-01T00:00:00")))
#: The dates matplotlib can place (years 1 to 9999), as its day numbers: an axis is kept inside.
_FIRST_DAY = float(mdates.date2num(np.datetime64("0001-01-01T00:00:00")))
_LAST_DAY = float(mdates.date2num(np.datetime64("9999-12-31T23:59:59")))

Chart = Callable[["Analysis"], Figure]


# -- public helpers ------------------------------------------------------------------------
def pick_interval(span_seconds: float) -> float:
    """The bin width (seconds) for a capture spanning ``span_seconds``: ~20-60 bins."""
    if not span_seconds or not math.isfinite(span_seconds) or span_seconds <= 0:
        return float(INTERVALS[0])
    for width in INTERVALS:
        if span_seconds / width <= MAX_BINS:
            return float(width)
    return float(math.ceil(span_seconds / MAX_BINS / _DAY) * _DAY)


def interval_label(seconds: float) -> str:
    """``1 s``, ``10 s``, ``5 min``, ``6 h``, ``1 day``, ``7 days``."""
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    if seconds < _DAY:
        return f"{seconds / 3600:g} h"
    days = seconds / _DAY
    return f"{days:g} day" + ("" if days == 1 else "s")


def clean_label(text: object, limit: int = MAX_LABEL) -> str:
    """Printable, bounded text for a chart label (capture content is hostile)."""
    value = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    value = "".join(ch if ch.isprintable() else "?" for ch in value[: limit * 4])
    return value if len(value) <= limit else value[: limit - 3] + "..."


def figure_bytes(fig: Figure, fmt: str, dpi: int | None = None) -> bytes:
    """The figure rendered as ``png`` or ``svg`` (no timestamps: stable output)."""
    buf = io.BytesIO()
    metadata: dict[str, Any] = {"Software": "oauth-traffic-analyzer (matplotlib)"}
    if fmt == "svg":
        metadata = {"Creator": metadata["Software"], "Date": None}
    fig.savefig(buf, format=fmt, dpi=dpi or DPI, metadata=metadata)
    return buf.getvalue()


def save_charts(analysis: Analysis, folder: str | Path) -> list[Path]:
    """Write every chart as ``<name>.png`` and ``<name>.svg`` in ``folder``; the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chart in CHARTS.items():
        try:
            images = _images(chart(analysis))
        except Exception as exc:  # a broken chart must not cost the others: its file says so
            images = _images(_not_drawn(name, exc))
        for fmt, data in images.items():
            path = out / f"{name}.{fmt}"
            path.write_bytes(data)
            paths.append(path)
    return paths


def _images(fig: Figure) -> dict[str, bytes]:
    return {fmt: figure_bytes(fig, fmt, PNG_DPI if fmt == "png" else DPI) for fmt in ("png", "svg")}


def _not_drawn(name: str, exc: Exception) -> Figure:
    """The figure that stands for a chart that could not be drawn, and says why."""
    fig = Figure(figsize=(CHART_WIDTH, 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(name.replace("_", " "), loc="left")
    _no_data(ax, f"chart not drawn ({type(exc).__name__})")
    return fig


def unplaced(name: str, analysis: Analysis) -> int:
    """How many exchanges (token uses for ``token_validity``) chart ``name`` leaves out because
    their time is one a frame cannot hold (NaT: a clock off by centuries)."""
    events = analysis.events
    if events.empty or "ts" not in events:
        return 0
    if name == "token_validity":
        shown = {str(t.fingerprint) for t, _ in _token_rows(analysis)}
        rows = pd.Series(False, index=events.index)
        for column in ("token_fp", "token_actor_fp"):
            if column in events:
                rows |= events[column].astype("object").isin(shown)
        return int((rows & events["ts"].isna()).sum())
    if "handshake_id" not in events:
        return 0
    rows = events["handshake_id"].notna() & events["ts"].isna()
    if name == "classes_over_time":
        rows &= _authenticated(events)
    return int(rows.sum())


def unplaced_note(count: int, noun: str = "exchange") -> str:
    return f"{plural(count, noun)} not shown (time out of range)"


# -- a) timeline -----------------------------------------------------------------------------
def timeline(analysis: Analysis) -> Figure:
    """One lane per client -> server pair, a mark per exchange (colour: auth class, shape:
    outcome), OAuth fallbacks annotated; dense lanes drawn as per-interval stacked counts."""
    events = _exchanges(analysis.events)
    lanes = _lanes(events)
    shown = lanes[:MAX_LANES]
    lane_height = 0.75 if len(shown) <= 8 else 0.5
    fig = Figure(
        figsize=(CHART_WIDTH, max(3.6, 1.4 + lane_height * len(shown))), layout="constrained"
    )
    ax = fig.add_subplot()
    ax.set_title("Authentication exchanges per client -> server", loc="left")
    left_out = unplaced("timeline", analysis)
    if events.empty:
        _no_data(ax, unplaced_note(left_out) if left_out else "no authentication exchanges")
        return fig
    days = _days(events["ts"])
    span = (float(days.min()), float(days.max()))
    interval = pick_interval(float(np.nanmax(events["_t"]) - np.nanmin(events["_t"])))
    classes_seen: set[str] = set()
    outcomes_seen: set[str] = set()
    labels = []
    dense_any = fallback_any = False
    marks: dict[tuple[str, str], tuple[list, list]] = {}
    n = len(shown)
    for index, (key, label, rows) in enumerate(shown):
        y = n - 1 - index
        lane = events.loc[rows]
        classes_seen.update(lane["_class"].unique())
        rows_at: dict[str, float] = {}
        if len(lane) > DENSE_LANE:
            dense_any = True
            rejected, peak = _dense_lane(ax, lane, y, interval)
            if rejected:
                outcomes_seen.add("rejected")
            label = (
                f"{label}\n{len(lane):,} exchanges (peak {peak:,} per {interval_label(interval)})"
            )
        else:
            outcomes_seen.update(lane["_outcome"].unique())
            rows_at = _sparse_lane(marks, lane, days.loc[rows], y)
        labels.append(label)
        fallback_any |= _fallback_notes(ax, analysis.verdicts, key, y, rows_at, span)
    _draw_marks(ax, marks)
    _spread_notes(fig, ax)
    ax.set_yticks(range(n), list(reversed(labels)), parse_math=False, fontsize=TICK_SIZE)
    ax.set_ylim(-0.6, n - 0.4)
    for y in range(n - 1):
        ax.axhline(y + 0.5, color="#dddddd", linewidth=0.8)
    _time_axis(ax, *span)
    class_handles = [
        Line2D([], [], linestyle="", marker="o", color=CLASS_COLORS[c], label=c)
        for c in AUTH_CLASSES
        if c in classes_seen
    ]
    outcome_handles = [
        Line2D([], [], linestyle="", marker=OUTCOME_MARKERS[o], color="#333333", label=o)
        for o in OUTCOMES
        if o in outcomes_seen
    ]
    if fallback_any:
        outcome_handles.append(
            Line2D([], [], linestyle=":", color=FALLBACK_COLOR, label="OAuth fallback")
        )
    fig.legend(handles=class_handles, title="auth class", loc="outside right upper")
    if outcome_handles:
        fig.legend(handles=outcome_handles, title="outcome", loc="outside right lower")
    notes = [unplaced_note(left_out)] if left_out else []
    if len(lanes) > len(shown):
        notes.append(f"{plural(len(lanes) - len(shown), 'quieter pair')} not shown")
    if dense_any:
        notes.append(
            f"lanes with over {DENSE_LANE} exchanges show counts per {interval_label(interval)}"
        )
    if notes:
        ax.set_title("; ".join(notes), loc="right", fontsize=NOTE_SIZE, color="#555555")
    return fig


def _exchanges(events: pd.DataFrame) -> pd.DataFrame:
    """Events that belong to a handshake, with plain helper columns."""
    if events.empty or "handshake_id" not in events:
        return pd.DataFrame(columns=["_t", "_class", "_outcome", "_key"])
    # an exchange whose time pandas cannot hold (NaT: years out of range) has no place on an axis
    frame = events[events["handshake_id"].notna() & events["ts"].notna()].copy()
    frame["_t"] = _seconds(frame["ts"])
    frame["_class"] = frame["auth_class"].astype("object").fillna("other")
    frame["_class"] = frame["_class"].where(frame["_class"].isin(CLASS_COLORS.keys()), "other")
    frame["_outcome"] = frame["outcome"].astype("object").fillna("incomplete")
    frame["_key"] = list(
        zip(
            frame["client_ip"].astype("object"),
            frame["server_ip"].astype("object"),
            frame["server_port"].astype("object"),
            frame["host"].astype("object").where(frame["host"].notna(), None),
            strict=True,
        )
    )
    return frame


def _lanes(events: pd.DataFrame) -> list[tuple[tuple, str, pd.Index]]:
    """(pair key, label, row index) per lane: busiest first when capping, then by first time."""
    if events.empty:
        return []
    groups = events.groupby("_key", sort=False).groups
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), events.loc[kv[1], "_t"].min()))
    kept = ordered[:MAX_LANES]
    kept.sort(key=lambda kv: events.loc[kv[1], "_t"].min())
    rest = ordered[MAX_LANES:]
    labels = [_pair_label(key) for key, _ in kept + rest]
    counts = pd.Series(labels).value_counts()
    out = []
    for (key, rows), label in zip(kept + rest, labels, strict=True):
        if counts[label] > 1:  # same client and Host on two servers: tell them apart
            label = clean_label(f"{label} ({key[1]}:{key[2]})", MAX_LABEL + 24)
        out.append((key, label, rows))
    return out


def _pair_label(key: tuple) -> str:
    client, server, port, host = key
    return clean_label(f"{client} -> {host or f'{server}:{port}'}")


def _sparse_lane(
    marks: dict[tuple[str, str], tuple[list, list]], lane: pd.DataFrame, days: pd.Series, y: float
) -> dict[str, float]:
    """A mark per exchange, gathered in ``marks`` by (class, outcome) and drawn once for every
    lane (``_draw_marks``); each class on its own sub-row so a fallback is not hidden.

    Returns the y offset of each class's sub-row."""
    present = [c for c in AUTH_CLASSES if c in set(lane["_class"])]
    offsets = np.linspace(0.18, -0.18, len(present)) if len(present) > 1 else [0.0]
    row = dict(zip(present, offsets, strict=True))
    for (cls, outcome), group in lane.groupby(["_class", "_outcome"], sort=True):
        xs, ys = marks.setdefault((cls, outcome), ([], []))
        xs.extend(days.loc[group.index].to_numpy(dtype=float))
        ys.extend([y + row[cls]] * len(group))
    return row


def _draw_marks(ax: Axes, marks: dict[tuple[str, str], tuple[list, list]]) -> None:
    """One scatter per (class, outcome) for all the lanes: thousands of marks draw fast."""
    for (cls, outcome), (xs, ys) in sorted(marks.items()):
        marker = OUTCOME_MARKERS.get(outcome, "s")
        style: dict[str, Any] = (
            {"s": 64, "color": CLASS_COLORS[cls], "linewidths": 1.8}
            if marker == "x"
            else {
                "s": 50,
                "facecolors": CLASS_COLORS[cls],
                "edgecolors": "white",
                "linewidths": 0.6,
            }
        )
        ax.scatter(
            np.asarray(xs), np.asarray(ys), marker=marker, zorder=3, label=f"{cls} {outcome}",
            **style,
        )  # fmt: skip


def _spread_notes(fig: Figure, ax: Axes) -> None:
    """Move fallback annotations apart until no two overlap (each step: up by its height)."""
    notes = [t for t in ax.texts if isinstance(t, Annotation)]
    if len(notes) < 2:
        return
    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    placed: list[Any] = []
    for note in notes:
        for _ in range(12):
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            x, y = note.get_position()
            _, dy = ax.transData.inverted().transform((0, box.height + 2)) - (
                ax.transData.inverted().transform((0, 0))
            )
            note.set_position((x, y - dy))
        placed.append(note.get_window_extent(renderer))


def _dense_lane(ax: Axes, lane: pd.DataFrame, y: float, interval: float) -> tuple[bool, int]:
    """Per-interval stacked counts inside the lane, an x over bins that held a rejection.

    Returns (some exchange was rejected, the busiest bin's count)."""
    start = math.floor(float(lane["_t"].min()) / interval) * interval
    bins = np.floor((lane["_t"].to_numpy(dtype=float) - start) / interval).astype(int)
    counts = pd.crosstab(bins, lane["_class"].to_numpy())
    peak = max(int(counts.sum(axis=1).max()), 1)
    x = _to_days(start + counts.index.to_numpy(dtype=float) * interval)
    width = interval / _DAY
    bottom = np.full(len(counts), y - 0.4)
    for cls in AUTH_CLASSES:
        if cls not in counts.columns:
            continue
        height = counts[cls].to_numpy(dtype=float) / peak * 0.8
        ax.bar(x, height, width=width, bottom=bottom, align="edge", color=CLASS_COLORS[cls])
        bottom = bottom + height
    rejected = lane["_outcome"].to_numpy() == "rejected"
    if rejected.any():
        bad = np.unique(bins[rejected])
        ax.scatter(
            _to_days(start + (bad + 0.5) * interval),
            np.full(len(bad), y + 0.44),
            marker="x",
            s=28,
            c="#333333",
            linewidths=1.2,
            zorder=4,
        )
    return bool(rejected.any()), peak


def _fallback_notes(
    ax: Axes,
    verdicts: pd.DataFrame,
    key: tuple,
    y: float,
    rows_at: dict[str, float],
    span: tuple[float, float],
) -> bool:
    """A dotted line at every OAuth fallback of this pair, and an arrow with
    'OAuth rejected (reason) -> class' at the first of each kind. True when there was one."""
    fallbacks = []
    for v in verdicts.itertuples(index=False) if not verdicts.empty else ():
        host = v.host if isinstance(v.host, str) else None
        if (v.client_ip, v.server_ip, int(v.server_port), host) != key:
            continue
        for fb in v.fallbacks or ():
            at = fb.get("at") if isinstance(fb, dict) else None
            if isinstance(at, (int, float)) and math.isfinite(at):
                fallbacks.append(fb)
    if not fallbacks:
        return False
    xs = _to_days(np.array([float(fb["at"]) for fb in fallbacks]))
    ax.vlines(xs, y - 0.45, y + 0.45, colors=FALLBACK_COLOR, linestyles=":", linewidth=1.0)
    kinds: dict[str, list[dict]] = {}
    for fb in fallbacks:
        text = f"OAuth rejected ({fb.get('reason') or 'unknown'}) -> {fb.get('to_class')}"
        kinds.setdefault(clean_label(text, 72), []).append(fb)
    for i, (text, group) in enumerate(list(kinds.items())[:MAX_FALLBACK_NOTES]):
        x = _to_days(float(group[0]["at"]))
        right_half = span[1] > span[0] and x > (span[0] + span[1]) / 2
        ax.annotate(
            text + (f" ({len(group):,} times)" if len(group) > 1 else ""),
            xy=(x, y + rows_at.get(str(group[0].get("to_class")), 0.0)),
            xytext=(x, y + (0.36 if i % 2 == 0 else -0.36)),
            textcoords="data",
            ha="right" if right_half else "left",
            va="center",
            fontsize=NOTE_SIZE,
            color=FALLBACK_COLOR,
            arrowprops={"arrowstyle": "->", "color": FALLBACK_COLOR, "linewidth": 0.9},
            bbox={"boxstyle": "round,pad=0.2", "fc": "#fff4e5", "ec": "#e0b080", "lw": 0.6},
            zorder=5,
            parse_math=False,
        )
    if len(kinds) > MAX_FALLBACK_NOTES:
        ax.text(
            0.995,
            y - 0.42,
            f"+{len(kinds) - MAX_FALLBACK_NOTES:,} other kinds of fallback",
            transform=ax.get_yaxis_transform(),
            fontsize=NOTE_SIZE - 1,
            ha="right",
            color=FALLBACK_COLOR,
            parse_math=False,
        )
    return True


# -- b) classes over time ----------------------------------------------------------------------
def classes_over_time(analysis: Analysis) -> Figure:
    """Stacked counts of authenticated exchanges per auth class per interval (~20-60 bins)."""
    fig = Figure(figsize=(CHART_WIDTH, 4.2), layout="constrained")
    ax = fig.add_subplot()
    events = _exchanges(analysis.events)
    if not events.empty:
        events = events[_authenticated(events)]
    left_out = unplaced("classes_over_time", analysis)
    if events.empty:
        ax.set_title("Authenticated exchanges per auth class", loc="left")
        _no_data(ax, unplaced_note(left_out) if left_out else "no authenticated exchanges")
        return fig
    t = events["_t"].to_numpy(dtype=float)
    interval = pick_interval(float(t.max() - t.min()))
    start = math.floor(t.min() / interval) * interval
    nbins = max(math.floor((t.max() - start) / interval) + 1, 1)
    bins = np.floor((t - start) / interval).astype(int)
    counts = pd.crosstab(bins, events["_class"].to_numpy()).reindex(range(nbins), fill_value=0)
    x = _to_days(start + np.arange(nbins) * interval)
    width = interval / _DAY
    bottom = np.zeros(nbins)
    for cls in AUTH_CLASSES:
        if cls not in counts.columns:
            continue
        height = counts[cls].to_numpy(dtype=float)
        ax.bar(
            x,
            height,
            width=width,
            bottom=bottom,
            align="edge",
            color=CLASS_COLORS[cls],
            edgecolor="white",
            linewidth=0.4 if nbins <= 60 else 0,
            label=cls,
        )
        bottom = bottom + height
    label = interval_label(interval)
    ax.set_title(f"Authenticated exchanges per auth class (per {label})", loc="left")
    ax.set_ylabel(f"exchanges per {label}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    _time_axis(ax, float(x[0]), float(x[-1] + width), pad=0.0)
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)
    fig.legend(title="auth class", loc="outside right upper")
    if left_out:
        ax.set_title(unplaced_note(left_out), loc="right", fontsize=NOTE_SIZE, color="#555555")
    return fig


def _authenticated(events: pd.DataFrame) -> pd.Series:
    """The exchanges that carry a credential (not the empty bearer of a realm probe)."""
    probe = (events["scheme"].astype("object") == "bearer") & (events["cred_len"].fillna(0) == 0)
    return (events["scheme"].astype("object") != "none") & ~probe


# -- c) token validity -----------------------------------------------------------------------
def token_validity(analysis: Analysis) -> Figure:
    """A bar per token from nbf to exp with a mark per use; uses outside the window in red.

    At most ``MAX_TOKENS`` tokens, most-used first. When some validity window reaches far from
    the capture (a 30-day token), the axis is cut ``CONTEXT`` around the capture and the cut
    ends are labelled with their dates, so the 8-hour bars stay visible.
    """
    rows = _token_rows(analysis)
    shown = rows[:MAX_TOKENS]
    fig = Figure(figsize=(CHART_WIDTH, max(3.4, 1.5 + 0.34 * len(shown))), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Token validity (nbf -> exp) and uses", loc="left")
    if not shown:
        _no_data(ax, "no bearer, actor or issued access tokens")
        return fig
    first, last = _capture_span(analysis.events)
    low, high = _token_range(shown, first, last)
    n = len(shown)
    uses: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    odd_seen: set[str] = set()
    labels = []
    roles_seen: list[str] = []
    for index, (t, times) in enumerate(shown):
        y = n - 1 - index
        start, end = _start(t), _secs(t.exp)
        role = str(t.role)
        if role not in roles_seen:
            roles_seen.append(role)
        negative = start is not None and end is not None and end < start
        if negative:
            odd_seen.add("negative")
            _negative_bar(ax, y, end, start, low, high)
        elif start is not None or end is not None:
            _validity_bar(ax, y, start, end, low, high, ROLE_COLORS.get(role, "#dddddd"))
        else:
            odd_seen.add("missing")
            ax.plot([_to_days(low), _to_days(high)], [y, y], linestyle=":", color=MISSING_COLOR)
        for ts in times:
            outside = (start is not None and ts < start) or (end is not None and ts > end)
            uses[outside][0].append(ts)
            uses[outside][1].append(y)
        issuer = (
            t.iss_app if isinstance(t.iss_app, str) else t.iss if isinstance(t.iss, str) else "?"
        )
        suffix = ""
        if negative:
            suffix = f" (exp {_duration(start - end)} before nbf)"
        elif start is None and end is None:
            suffix = " (no nbf/exp)"
        elif start is None or end is None:
            suffix = " (open)"
        labels.append(clean_label(f"{t.fingerprint} {role} {issuer}", 56) + suffix)
    for outside, (xs, ys) in uses.items():
        if xs:
            ax.scatter(
                _to_days(np.array(xs)),
                ys,
                marker="D",
                s=36 if outside else 24,
                c=WARNING_COLOR if outside else OK_USE_COLOR,
                edgecolors="black" if outside else "none",
                linewidths=0.5,
                zorder=5 if outside else 4,
                label="use outside validity" if outside else "use within validity",
            )
    if first is not None and last is not None:
        width = max(last - first, (high - low) / 400)
        ax.axvspan(
            _to_days(first), _to_days(first + width), color=CAPTURE_COLOR, alpha=0.6, zorder=0
        )
    ax.set_yticks(range(n), list(reversed(labels)), parse_math=False, fontsize=TICK_SIZE)
    ax.set_ylim(-0.7, n - 0.3)
    _time_axis(ax, _to_days(low), _to_days(high), pad=0.0)
    handles: list[Any] = [
        Patch(facecolor=ROLE_COLORS.get(r, "#dddddd"), edgecolor="#555555", label=f"{r} validity")
        for r in roles_seen
    ]
    handles += [
        Line2D([], [], linestyle="", marker="D", color=OK_USE_COLOR, label="use within validity"),
        Line2D([], [], linestyle="", marker="D", color=WARNING_COLOR, label="use outside validity"),
        Patch(color=CAPTURE_COLOR, label="capture span"),
    ]
    if "negative" in odd_seen:
        handles.append(
            Patch(facecolor="#fde2e1", edgecolor=WARNING_COLOR, hatch="xx", label="exp before nbf")
        )
    if "missing" in odd_seen:
        handles.append(Line2D([], [], linestyle=":", color=MISSING_COLOR, label="no nbf/exp"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=NOTE_SIZE)
    notes = []
    if len(rows) > n:
        notes.append(f"{plural(len(rows) - n, 'less-used token')} not shown (showing {n})")
    left_out = unplaced("token_validity", analysis)
    if left_out:
        notes.append(unplaced_note(left_out, "use"))
    if notes:
        ax.set_title("; ".join(notes), loc="right", fontsize=NOTE_SIZE, color="#555555")
    return fig


def _token_rows(analysis: Analysis) -> list[tuple[Any, np.ndarray]]:
    """(token row, use times) for bearer/actor/access tokens: those used outside their
    validity first (the anomalies must survive the cut), then the most used."""
    tokens = analysis.tokens
    if tokens.empty:
        return []
    tokens = tokens[
        tokens["role"].astype("object").isin(TOKEN_ROLES)
        & (tokens["format"].astype("object") != "empty")  # the realm-discovery probe
    ]
    uses = _token_uses(analysis.events)
    rows = [(t, uses.get(t.fingerprint, np.array([]))) for t in tokens.itertuples(index=False)]
    rows.sort(
        key=lambda r: (
            not _used_outside(r[0], r[1]),
            -len(r[1]),
            _secs(r[0].first_seen) or 0.0,
            str(r[0].fingerprint),
        )
    )
    return rows


def _token_range(
    shown: list[tuple[Any, np.ndarray]], first: float | None, last: float | None
) -> tuple[float, float]:
    """The x range (epoch s): every nbf, exp and use, cut to CONTEXT around the capture."""
    known: list[float] = []
    for t, times in shown:
        known += [v for v in (_start(t), _secs(t.exp)) if v is not None]
        known += [float(v) for v in times]
    if not known:  # no token has a time, nor a use: show the capture
        known = [v for v in (first, last) if v is not None] or [0.0]
    low, high = min(known), max(known)
    if first is not None and last is not None:
        if low < first - CONTEXT * 1.25:
            low = min(first - CONTEXT, *(float(v) for _, ts in shown for v in ts))
        if high > last + CONTEXT * 1.25:
            high = max(last + CONTEXT, *(float(v) for _, ts in shown for v in ts))
    pad = max((high - low) * 0.03, 1.0)
    return low - pad, high + pad


def _validity_bar(
    ax: Axes,
    y: float,
    start: float | None,
    end: float | None,
    low: float,
    high: float,
    color: str,
) -> None:
    """The nbf..exp bar, hatched when open-ended, cut at the axis with the true date written."""
    left = start if start is not None else low
    right = end if end is not None else high
    cut_left, cut_right = max(left, low), min(right, high)
    style = {"fontsize": NOTE_SIZE - 1, "color": "#444444", "va": "center", "parse_math": False}
    style["zorder"] = 6
    if cut_left < cut_right:
        ax.barh(
            y,
            _to_days(cut_right) - _to_days(cut_left),
            left=_to_days(cut_left),
            height=0.55,
            color=color,
            edgecolor="#555555",
            linewidth=0.5,
            hatch="//" if start is None or end is None else None,
        )
    if start is not None and start < low:
        what = f"valid until {_stamp(end)}" if end is not None and end < low else "nbf"
        ax.text(_to_days(low), y + 0.36, f"< {what} {_stamp(start)}", ha="left", **style)
    if end is not None and end > high:
        what = f"valid from {_stamp(start)}, " if start is not None and start > high else ""
        ax.text(_to_days(high), y + 0.36, f"{what}exp {_stamp(end)} >", ha="right", **style)


def _negative_bar(ax: Axes, y: float, exp: float, nbf: float, low: float, high: float) -> None:
    """A token whose exp is before its nbf: a red cross-hatched bar from exp to nbf (never
    valid), at least a sliver wide so it is seen."""
    left, right = max(exp, low), min(nbf, high)
    width = max(_to_days(right) - _to_days(left), (_to_days(high) - _to_days(low)) / 300)
    ax.barh(
        y, width, left=_to_days(left), height=0.55, color="#fde2e1", edgecolor=WARNING_COLOR,
        linewidth=0.8, hatch="xx",
    )  # fmt: skip


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h``, ``2 days``: how far apart two times are."""
    for size, unit in ((_DAY, "day"), (3600.0, "h"), (60.0, "min")):
        if seconds >= size:
            n = seconds / size
            return f"{n:.0f} {unit}" + ("s" if unit == "day" and round(n) != 1 else "")
    return f"{seconds:.0f} s"


def _stamp(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return format_utc(seconds, -1)


def _token_uses(events: pd.DataFrame) -> dict[str, np.ndarray]:
    """Token fingerprint -> capture times (epoch s) of the events that carried it."""
    if events.empty:
        return {}
    t = _seconds(events["ts"])
    parts = []
    for column in ("token_fp", "token_actor_fp"):
        if column in events:
            part = pd.DataFrame({"fp": events[column].astype("object"), "t": t})
            parts.append(part[part["fp"].notna() & part["t"].notna()])  # NaT: no place
    if not parts:
        return {}
    both = pd.concat(parts, ignore_index=True)
    return {fp: g.to_numpy(dtype=float) for fp, g in both.groupby("fp", sort=False)["t"]}


def _used_outside(t: Any, times: np.ndarray) -> bool:
    start, end = _start(t), _secs(t.exp)
    return any((start is not None and ts < start) or (end is not None and ts > end) for ts in times)


def _start(t: Any) -> float | None:
    start = _secs(t.nbf)
    return start if start is not None else _secs(t.iat)


def _capture_span(events: pd.DataFrame) -> tuple[float | None, float | None]:
    t = _seconds(events["ts"]).dropna() if not events.empty else events
    if t.empty:  # no events, or only times pandas cannot hold (NaT)
        return None, None
    return float(t.min()), float(t.max())


# -- shared drawing and time helpers ---------------------------------------------------------
def _time_axis(ax: Axes, low: float, high: float, pad: float = 0.03) -> None:
    """UTC date axis between ``low`` and ``high`` (matplotlib day numbers)."""
    if not high > low:
        low, high = low - 1 / _DAY, high + 1 / _DAY
    margin = (high - low) * pad
    # matplotlib places years 1 to 9999 only: an axis at their edge is moved inside, its width
    # kept where it fits
    left, right = low - margin, high + margin
    if right > _LAST_DAY:
        left, right = left - (right - _LAST_DAY), _LAST_DAY
    if left < _FIRST_DAY:
        left, right = _FIRST_DAY, min(right + (_FIRST_DAY - left), _LAST_DAY)
    ax.set_xlim(left, right)
    low, high = max(low, left), min(high, right)
    locator = mdates.AutoDateLocator(tz=timezone.utc, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    pattern, label = axis_format((high - low) * _DAY, low)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(pattern, tz=timezone.utc))
    ax.tick_params(axis="x", labelsize=TICK_SIZE)
    if not ax.get_xlabel():
        ax.set_xlabel(label, fontsize=LABEL_SIZE)


def axis_format(span_seconds: float, low_days: float) -> tuple[str, str]:
    """One tick format for a whole time axis (strftime pattern, axis label), chosen by its span:
    the date moves to the label when every tick falls on one day."""
    start = mdates.num2date(low_days, tz=timezone.utc)
    end = mdates.num2date(low_days + max(span_seconds, 0.0) / _DAY, tz=timezone.utc)
    one_day = start.date() == end.date()
    if one_day and span_seconds <= 120:
        return "%H:%M:%S", f"time (UTC) on {start:%Y-%m-%d}"
    if one_day:
        return "%H:%M", f"time (UTC) on {start:%Y-%m-%d}"
    if span_seconds <= 14 * _DAY:
        return "%m-%d %H:%M", f"time (UTC), {start:%Y}"
    return "%Y-%m-%d", "date (UTC)"


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])


def _seconds(series: pd.Series) -> pd.Series:
    """Epoch seconds (float, NaN for missing) of a UTC datetime column.

    Worked out in the column's own unit (microseconds): pandas arithmetic with a nanosecond
    ``Timestamp`` would raise ``OutOfBoundsDatetime`` for a time outside 1677-2262."""
    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        values = series.to_numpy(dtype="datetime64[us]")
        seconds = values.astype("int64").astype(float) / 1e6
        seconds[np.isnat(values)] = np.nan
        return pd.Series(seconds, index=series.index, dtype=float)
    return pd.to_numeric(series, errors="coerce").astype(float)


def _secs(value: Any) -> float | None:
    """Epoch seconds of one timestamp cell, None when missing."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.timestamp()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _to_days(seconds: Any) -> Any:
    """Epoch seconds (a number or an array) -> matplotlib date numbers."""
    if isinstance(seconds, (int, float)):
        return float(seconds) / _DAY + _EPOCH_DAYS
    return np.asarray(seconds, dtype=float) / _DAY + _EPOCH_DAYS


def _days(series: pd.Series) -> pd.Series:
    return _seconds(series) / _DAY + _EPOCH_DAYS


#: Every chart, by the file name ``save_charts`` gives it.
CHARTS: dict[str, Chart] = {
    "timeline": timeline,
    "classes_over_time": classes_over_time,
    "token_validity": token_validity,
}


def has_data(name: str, analysis: Analysis) -> bool:
    """Would chart ``name`` draw anything (the HTML report leaves out empty ones)?"""
    if name == "token_validity":
        return bool(_token_rows(analysis))
    events = _exchanges(analysis.events)
    if name == "classes_over_time" and not events.empty:
        events = events[events["scheme"].astype("object") != "none"]
    return not events.empty
