"""The HTML report: one self-contained page (inline CSS, JS and charts; works offline).

Verdict first, then findings by severity, charts, the pair, handshake, token and event tables.
Capture content is hostile input: every value goes through ``html.escape`` by construction
(``tag`` escapes any child or attribute that is not already ``Html``), charts are embedded as
``<img>`` data URIs (an SVG inside ``<img>`` cannot run script), and a Content-Security-Policy
allows only this page's own script and style (by hash) and ``data:`` images, so nothing is
fetched from the network. Secrets (credentials, token text) are written only when
``reveal_secrets`` is passed here, whatever the ``Analysis`` was built with.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.analysis.coverage import blind_spot_lines, from_tls
from analyzer.model import (
    AUTH_CLASSES,
    SEVERITIES,
    CaptureStats,
    Event,
    Finding,
    Handshake,
    PairVerdict,
    TlsConnection,
    TokenRecord,
)
from analyzer.oauth.certificates import expiry, expiry_text
from analyzer.report import charts
from analyzer.report.cells import identity_text, notes_text, scheme_text
from analyzer.report.table import spans_days
from analyzer.report.times import format_utc
from analyzer.words import endpoint, plural

if TYPE_CHECKING:
    from analyzer.api import Analysis
    from analyzer.engine import AnalysisResult
    from analyzer.oauth.keys import SigningKey

VERDICT_TONE = {
    "oauth-only": "good",
    "oauth-with-fallback": "warn",
    "mixed": "warn",
    "oauth-rejected": "bad",
    "no-oauth": "bad",
    "unauthenticated": "neutral",
}
TONE_RANK = {"bad": 0, "warn": 1, "good": 2, "neutral": 3}
MAX_CELL = 120  # characters of a long value shown in a table cell (the full text in its title)
VOID = frozenset({"meta", "img", "input", "br", "hr", "link"})  # elements without an end tag
SECRET_FIELDS = (
    "password",
    "credential",
    "assertion",
    "access_token",
    "refresh_token",
    "id_token",
    "other_tokens",
    "raw_user",
    "raw_domain",
)


class Html(str):
    """Text that is already safe HTML (built by ``tag`` or ``raw``); everything else is escaped."""

    __slots__ = ()


def raw(text: str) -> Html:
    """Mark trusted markup (our own constants only) as safe."""
    return Html(text)


def esc(value: Any) -> Html:
    """``value`` as escaped HTML text (``Html`` passes through unchanged)."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def tag(element: str, /, *children: Any, **attrs: Any) -> Html:
    """``<element attrs>children</element>`` with every attribute value and plain-str child escaped.

    Attribute names: a trailing ``_`` is dropped (``class_``), ``_`` becomes ``-`` (``data_v``);
    ``None``/``False`` attributes are left out, ``True`` ones written bare.
    """
    parts = [element]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{esc(value)}"')
    if element in VOID:
        return Html(f"<{' '.join(parts)}>")
    inner = "".join(esc(c) for c in _flat(children) if c is not None)
    return Html(f"<{' '.join(parts)}>{inner}</{element}>")


def _flat(children: Iterable[Any]) -> Iterable[Any]:
    for child in children:
        if isinstance(child, (list, tuple)):
            yield from _flat(child)
        else:
            yield child


# -- entry points ----------------------------------------------------------------------------
def render_html(
    analysis: Analysis,
    *,
    reveal_secrets: bool = False,
    title: str | None = None,
    with_charts: bool = True,
) -> str:
    """The whole report as one HTML document (a str)."""
    result = analysis.result
    reveal = reveal_secrets
    captures = list(result.captures)
    files = ", ".join(os.path.basename(c.path) or c.path for c in captures)
    name = title or "OAuth traffic report" + (f": {files}" if files else "")
    body = [
        _header(name, captures, result.events),
        _nav(),
        _verdicts(result.verdicts, result.findings, _blind_spots(result), _unread(result)),
        _findings(result.findings),
        _charts(analysis) if with_charts else Html(""),
        _pairs(result.verdicts),
        _handshakes(result.handshakes),
        _tokens(result.tokens, reveal),
        _signing_keys(result.signing_keys, _capture_end(result.events, result.tls)),
        _tls(result.tls),
        _events(result.events, reveal),
        _captures(captures, result.key_warnings),
        tag(
            "footer",
            "Generated by oauth-traffic-analyzer. Secrets are "
            + (
                "INCLUDED in this file (--reveal-secrets): handle it as a credential store."
                if reveal
                else "redacted: credentials and tokens appear as fingerprints only."
            ),
        ),
    ]
    policy = (
        "default-src 'none'; img-src data:; "
        f"style-src '{_sha256(STYLE)}'; script-src '{_sha256(SCRIPT)}'; "
        "base-uri 'none'; form-action 'none'"
    )
    head = [
        raw('<meta charset="utf-8">'),
        tag("meta", http_equiv="Content-Security-Policy", content=policy),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        tag("meta", name="referrer", content="no-referrer"),
        tag("title", name),
        raw(f"<style>{STYLE}</style>"),
    ]
    return (
        "<!DOCTYPE html>\n"
        + tag(
            "html",
            tag("head", head),
            tag("body", body, raw(f"<script>{SCRIPT}</script>")),
            lang="en",
        )
        + "\n"
    )


def write_html(analysis: Analysis, path: str | Path, *, reveal_secrets: bool = False) -> Path:
    """Write the report to ``path`` (UTF-8); returns the path."""
    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(analysis, reveal_secrets=reveal_secrets), encoding="utf-8")
    return out


# -- sections --------------------------------------------------------------------------------
def _header(name: str, captures: list[CaptureStats], events: list[Event]) -> Html:
    packets = sum(c.packets for c in captures)
    span = ""
    if events:
        first, last = min(e.ts for e in events), max(e.ts for e in events)
        span = f"; {format_utc(first)} - {format_utc(last)} UTC"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return tag(
        "header",
        tag("h1", name),
        tag(
            "p",
            f"{plural(len(captures), 'capture')}, {plural(packets, 'packet')}, "
            f"{plural(len(events), 'event')}{span}. "
            f"Report generated {now}.",
            class_="muted",
        ),
    )


def _nav() -> Html:
    links = [
        ("verdict", "Verdict"),
        ("findings", "Findings"),
        ("charts", "Charts"),
        ("pairs", "Pairs"),
        ("handshakes", "Handshakes"),
        ("tokens", "Tokens"),
        ("keys", "Signing keys"),
        ("tls", "TLS"),
        ("events", "Events"),
        ("captures", "Captures"),
    ]
    return tag("nav", [tag("a", text, href=f"#sec-{anchor}") for anchor, text in links])


def _blind_spots(result: AnalysisResult) -> list[str]:
    """Warnings for the banner: what was not inspected, and what the capture lost."""
    from analyzer.analysis.coverage import Coverage, damage

    coverage = Coverage(not_inspected=result.not_inspected, damage=damage(result.captures))
    return [f"Not inspected: {line}" for line in coverage.blind_spots()] + [
        f"Damaged capture: {line}" for line in coverage.damage
    ]


def _unread(result: AnalysisResult) -> bool:
    """Was any traffic not read (a blind spot), or the capture damaged?"""
    from analyzer.analysis.coverage import damage

    return bool(result.not_inspected or damage(result.captures))


def _verdicts(
    verdicts: list[PairVerdict],
    findings: list[Finding],
    warnings: list[str] = (),
    unread: bool = False,
) -> Html:
    """The banner and a card per pair. Green only when every pair used OAuth alone, everything
    was read and no finding is high: traffic not read, or a high finding (an expired, unsigned
    or forged token accepted, a token in the clear), makes it amber - the pairs' verdicts judge
    schemes, not tokens nor coverage, which ``verify`` judges by a rule."""
    tones = [VERDICT_TONE.get(v.verdict, "neutral") for v in verdicts]
    tone = min(tones, key=TONE_RANK.__getitem__) if tones else "neutral"
    high = sum(1 for f in findings if f.severity == "high")
    if tone == "good" and (unread or high):
        tone = "warn"
    counts = Counter(v.verdict for v in verdicts)
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.most_common())
    severity = Counter(f.severity for f in findings)
    found = ", ".join(f"{severity[s]} {s}" for s in SEVERITIES if severity[s])
    lines = [
        f"{plural(len(verdicts), 'client -> server pair')}" + (f": {summary}" if summary else "")
        if verdicts
        else "no authentication handshake was found in the capture(s)",
        f"{plural(len(findings), 'finding')}" + (f": {found}" if found else ""),
    ]
    cards = []
    for v in verdicts:
        vt = VERDICT_TONE.get(v.verdict, "neutral")
        classes = ", ".join(f"{n} {c}" for c, n in v.classes.items()) or "none"
        facts = [
            f"{plural(v.exchanges, 'authenticated exchange')}: {classes}",
            f"{plural(v.handshakes, 'handshake')}; OAuth {v.oauth_attempted} attempted, "
            f"{v.oauth_accepted} accepted, {v.oauth_rejected} rejected",
        ]
        if v.issuers:
            facts.append("issuers: " + ", ".join(v.issuers))
        if v.signatures:
            facts.append("signatures: " + ", ".join(f"{n} {s}" for s, n in v.signatures.items()))
        cards.append(
            tag(
                "div",
                tag("div", v.verdict.upper(), class_="verdict-word"),
                tag("div", _pair_name(v), class_="pair"),
                tag("p", v.summary, class_="summary"),
                tag("ul", [tag("li", f) for f in facts], class_="facts"),
                class_=f"card tone-{vt}",
            )
        )
    return tag(
        "section",
        tag(
            "div",
            tag("div", "Verdict", class_="eyebrow"),
            tag("div", _headline(verdicts, unread, high), class_="headline"),
            [tag("p", line) for line in lines],
            [tag("p", "Warning: " + w, class_="banner-warning") for w in warnings],
            class_=f"banner tone-{tone}",
        ),
        tag("div", cards, class_="cards") if cards else Html(""),
        id="sec-verdict",
    )


def _headline(verdicts: list[PairVerdict], unread: bool = False, high: int = 0) -> str:
    """The answer in a few words: is OAuth really in use? (Pairs without authentication are
    no answer either way; "OAuth only" says what else stands against it.)"""
    total = len(verdicts)
    tones = Counter(VERDICT_TONE.get(v.verdict, "neutral") for v in verdicts)
    if not total or tones["neutral"] == total:
        return "No authenticated exchanges"
    if tones["good"] == total - tones["neutral"]:
        head = "OAuth only"
        if unread:
            head += " in what was read: some traffic could not be read (see the warnings)"
        if high:
            head += f"{';' if unread else ','} {plural(high, 'high finding')} (see Findings)"
        return head
    if all(v.verdict in ("no-oauth", "unauthenticated") for v in verdicts):
        return "No OAuth in use"
    if tones["bad"]:
        extra = f"; {tones['warn']} fell back or mixed schemes" if tones["warn"] else ""
        return f"OAuth missing or rejected on {tones['bad']} of {total} pairs{extra}"
    return f"OAuth in use, but {tones['warn']} of {total} pairs fell back or mixed schemes"


def _findings(findings: list[Finding]) -> Html:
    parts: list[Html] = [tag("h2", f"Findings ({len(findings)})")]
    if not findings:
        parts.append(tag("p", "No findings.", class_="muted"))
    for severity in SEVERITIES:
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        parts.append(tag("h3", f"{severity.capitalize()} ({len(group)})", class_=f"sev-{severity}"))
        for f in group:
            evidence = []
            if f.event_ids:
                evidence.append(_links("events", "event", f.event_ids))
            if f.handshake_ids:
                evidence.append(_links("handshakes", "handshake", f.handshake_ids))
            if f.token_fps:
                evidence.append(_links("tokens", "token", f.token_fps))
            parts.append(
                tag(
                    "article",
                    tag(
                        "div",
                        tag("span", severity.upper(), class_=f"badge sev-{severity}"),
                        tag("code", f.rule_id, class_="rule"),
                        tag("span", f.title, class_="title"),
                        class_="finding-head",
                    ),
                    tag("p", f.detail, class_="detail"),
                    tag("p", f.explanation, class_="explanation"),
                    tag("div", evidence, class_="evidence") if evidence else Html(""),
                    class_=f"finding sev-{severity}",
                    id=f"finding-{f.rule_id}",
                )
            )
    return tag("section", parts, id="sec-findings")


def _links(label: str, prefix: str, ids: Iterable[Any]) -> Html:
    return tag("span", f"{label}: ", _id_links(prefix, ids), class_="links")


def _charts(analysis: Analysis) -> Html:
    captions = {
        "timeline": "Every exchange that belongs to a handshake, per client -> server pair: "
        "colour is the auth class, shape the outcome; OAuth fallbacks are annotated.",
        "classes_over_time": "Authenticated exchanges per auth class over time.",
        "token_validity": "Each token's validity window (nbf -> exp) and its uses; "
        "uses outside the window are red.",
    }
    figures = []
    for name, chart in charts.CHARTS.items():
        if not charts.has_data(name, analysis):
            if left_out := charts.unplaced(name, analysis):  # say why it is not there
                note = f"{name}: chart left out: {charts.unplaced_note(left_out)}"
                figures.append(tag("p", note, class_="muted"))
            continue  # no empty chart boxes
        try:
            data = _chart_image(chart(analysis))
        except Exception as exc:  # a broken chart must not cost the whole report
            figures.append(
                tag("p", f"{name}: chart not drawn ({type(exc).__name__})", class_="muted")
            )
            continue
        figures.append(
            tag(
                "figure",
                tag("img", src=data, alt=name.replace("_", " "), id=f"chart-{name}"),
                tag("figcaption", captions.get(name, "")),
            )
        )
    if not figures:
        figures = [tag("p", "Nothing to draw: no handshakes or tokens.", class_="muted")]
    return tag("section", tag("h2", "Charts"), figures, id="sec-charts")


#: An SVG chart bigger than this (thousands of marks) is embedded as PNG instead.
MAX_SVG = 200_000


def _chart_image(figure: Any) -> str:
    """A chart as a data URI: SVG (sharp at any zoom), or PNG when the SVG would be large."""
    svg = charts.figure_bytes(figure, "svg")
    if len(svg) <= MAX_SVG:
        return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    png = _palette_png(charts.figure_bytes(figure, "png"))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _palette_png(png: bytes) -> bytes:
    """A chart PNG with a 64-colour palette: a chart has few colours, and this is a third of
    the size (Pillow comes with matplotlib)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        small = image.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE)
        out = io.BytesIO()
        small.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def _pairs(verdicts: list[PairVerdict]) -> Html:
    head = [
        "client",
        "server",
        "host",
        "verdict",
        "exchanges",
        "classes",
        "handshakes",
        "OAuth tried / ok / rejected",
        "fallbacks",
        "issuers",
        "signatures",
        "first (UTC)",
        "last (UTC)",
    ]
    rows = []
    for v in verdicts:
        fallbacks = "; ".join(
            f"{format_utc(fb['at'], date=False)} -> {fb.get('to_class')} ({fb.get('reason')})"
            if isinstance(fb.get("at"), (int, float))
            else str(fb.get("to_class"))
            for fb in v.fallbacks
        )
        rows.append(
            [
                v.client_ip,
                f"{v.server_ip}:{v.server_port}",
                f"SIP {v.host or '-'}" if v.protocol == "sip" else v.host or "-",
                _verdict_badge(v.verdict),
                _num(v.exchanges),
                _classes(v.classes),
                _num(v.handshakes),
                f"{v.oauth_attempted} / {v.oauth_accepted} / {v.oauth_rejected}",
                fallbacks or "-",
                ", ".join(v.issuers) or "-",
                ", ".join(f"{n} {s}" for s, n in v.signatures.items()) or "-",
                _when(v.first_ts),
                _when(v.last_ts),
            ]
        )
    return _section("pairs", f"Client -> server pairs ({len(verdicts)})", head, rows)


def _handshakes(handshakes: list[Handshake]) -> Html:
    head = [
        "#",
        "class",
        "outcome",
        "start (UTC)",
        "end (UTC)",
        "connection",
        "client",
        "server",
        "host",
        "events",
        "exchanges",
        "offered",
        "identity",
        "tokens",
        "status",
        "reason",
    ]
    dated = any(h.end_ts - handshakes[0].start_ts > 86400 for h in handshakes)
    day = format_utc(handshakes[0].start_ts)[:10] if handshakes else ""
    if not dated and day and not day.startswith("<"):
        head[3:5] = [f"start (UTC, {day})", "end"]
    else:
        dated = True

    def row(h: Handshake) -> tuple:
        who = f"{h.domain}\\{h.user}" if h.domain and h.user else h.user or ""
        cells = [
            h.handshake_id,
            _class_cell(h.auth_class),
            _outcome_cell(h.outcome),
            format_utc(h.start_ts, date=dated),
            format_utc(h.end_ts, date=dated),
            Cell(h.conn_id, "mono"),
            h.client_ip,
            endpoint(h.server_ip, h.server_port),
            h.host or "-",
            Links("event", h.event_ids),
            h.exchanges,
            ", ".join(h.offered) or "-",
            who or "-",
            Links("token", h.token_fps),
            "-" if h.final_status is None else h.final_status,
            h.reason + (f" [{h.diag_code} {h.diag_category}]" if h.diag_code else ""),
        ]
        return (f"handshake-{h.handshake_id}", None, cells)

    columns = [(_key(h), h, "text") for h in head]
    rows = LazyRows(handshakes, row)
    return _table_section(
        "handshakes", f"Handshakes ({len(handshakes)})", columns, rows, empty="None."
    )


def _tokens(tokens: list[TokenRecord], reveal: bool) -> Html:
    """One row per distinct token; its facts, checks, header and claims sit once in a data
    template and are drawn by the script when the row is opened (``claims``)."""
    head = [
        ("fp", "token", "text"),
        ("role", "role", "text"),
        ("format", "format", "text"),
        ("issuer", "issuer", "text"),
        ("audience", "audience", "text"),
        ("valid", "valid (UTC)", "text"),
        ("signature", "signature", "text"),
        ("uses", "uses", "num"),
        ("flags", "flags", "text"),
        ("claims", "claims", "text"),
    ]
    rows: list[Any] = []
    data = {}
    for t in tokens:
        validity = f"{_when(t.nbf)} -> {_when(t.exp)}" if t.nbf or t.exp else "no nbf/exp"
        cells = [
            Cell(t.fingerprint, "mono"),
            t.role + (f" of {', '.join(t.outer_fps)}" if t.outer_fps else ""),
            t.format,
            Cell(_named(t.iss_app, t.iss), "wrap"),
            Cell(_named(t.aud_app, t.aud, t.aud_host), "wrap"),
            validity,
            Cell(t.signature or "-", f"sig sig-{t.signature}"),
            t.uses,
            Cell(", ".join(t.flags) or "-", "flags" if t.flags else None),
            Cell("show", "claims"),
        ]
        rows.append((f"token-{t.fingerprint}", None, cells))
        data[t.fingerprint] = _token_data(t, reveal)
    return _table_section(
        "tokens",
        f"Tokens ({len(tokens)} distinct)",
        head,
        rows,
        extra=tag("template", packed(data), id="token-data", data_encoding="deflate-raw+base64"),
        empty="No tokens.",
    )


def packed_rows(rows: Iterable[Any]) -> str:
    """``packed(list(rows))``, made as the rows come: a table of 100,000 rows never holds
    their JSON (nor their cells) all at once."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [squeeze.compress(b"[")]
    first = True
    for row in rows:
        text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
        out.append(
            squeeze.compress((text if first else "," + text).encode("utf-8", "surrogatepass"))
        )
        first = False
    out.append(squeeze.compress(b"]") + squeeze.flush())
    return base64.b64encode(b"".join(out)).decode("ascii")


class LazyRows:
    """A table's rows made from its records one at a time (``make`` gives ``(id, data-class,
    cells)``), so the cells of a table of 100,000 events are never all held at once."""

    __slots__ = ("make", "records")

    def __init__(self, records: Sequence[Any], make: Callable[[Any], tuple]) -> None:
        self.records, self.make = records, make

    def __len__(self) -> int:
        return len(self.records)


def _secret_text(value: str | tuple[str, ...]) -> str:
    """A secret field as its revealed cell shows it (several tokens one per line)."""
    return value if isinstance(value, str) else "\n".join(value)


def _rows_from(rows: Any, start: int, stop: int | None = None) -> Iterator[Any]:
    """Rows ``start`` to ``stop`` of a list of rows or of ``LazyRows``, made as they are read."""
    if isinstance(rows, LazyRows):
        return map(rows.make, itertools.islice(rows.records, start, stop))
    return itertools.islice(rows, start, stop)


def packed(value: Any) -> str:
    """``value`` as JSON, raw-deflated and base64-encoded: the page's script unpacks it with
    the browser's ``DecompressionStream`` when a token is opened (tokens share most of their
    claims, so this is a small fraction of the JSON)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_bytes = squeeze.compress(text.encode("utf-8", "surrogatepass")) + squeeze.flush()
    return base64.b64encode(raw_bytes).decode("ascii")


def _token_data(t: TokenRecord, reveal: bool) -> dict[str, Any]:
    """What a token's opened row shows (facts, checks, header, claims): compact, drawn on demand."""
    facts = [
        ("issuer", t.iss or "-"),
        ("audience", t.aud or "-"),
        ("realm", t.realm or "-"),
        ("subject / nameid / appid", f"{t.subject or '-'} / {t.nameid or '-'} / {t.appid or '-'}"),
        ("alg / typ", f"{t.alg or '-'} / {t.typ or '-'}"),
        ("lifetime", f"{t.lifetime:,.0f} s" if t.lifetime is not None else "-"),
        ("signature", f"{t.signature or '-'}: {t.signature_detail or ''}"),
        ("key source", t.key_source or "-"),
        ("x5t / kid", f"{t.x5t or '-'} / {t.kid or '-'}"),
        ("actor", t.actor_fp or "-"),
        ("seen (UTC)", f"{_when(t.first_seen)} - {_when(t.last_seen)}"),
        ("clients / servers", f"{', '.join(t.clients) or '-'} / {', '.join(t.servers) or '-'}"),
        ("problems", "; ".join(t.problems) or "-"),
    ]
    out: dict[str, Any] = {
        "f": facts,
        "c": [[c.get("ok"), f"{c.get('id')}: {c.get('message')}"] for c in t.checks],
        "h": t.header,
        "l": t.claims,
    }
    if reveal and t.text:
        out["t"] = t.text
    return out


def _events(events: list[Event], reveal: bool) -> Html:
    columns = [
        ("id", "#", "num"),
        ("time", "time (UTC)", "text"),
        ("client", "client", "text"),
        ("server", "server", "text"),
        ("community_id", "community id", "text"),
        ("frame", "frame", "num"),
        ("host", "host", "text"),
        ("request", "request", "text"),
        ("status", "status", "num"),
        ("scheme", "scheme", "text"),
        ("class", "class", "text"),
        ("outcome", "outcome", "text"),
        ("identity", "identity", "text"),
        ("notes", "notes", "text"),
        ("agent", "user agent", "text"),
    ]
    if reveal:
        columns.append(("secret", "credential / tokens (revealed)", "text"))
    present = [c for c in AUTH_CLASSES if any(e.auth_class == c for e in events)]
    options = [tag("option", "all auth classes", value="")]
    options += [tag("option", c, value=c) for c in present]
    if any(e.auth_class is None for e in events):
        options.append(tag("option", "no handshake", value="none"))
    controls = tag(
        "div",
        tag(
            "input",
            type="search",
            id="event-filter",
            class_="filter",
            placeholder="filter: text, or field:value (status:401 scheme:ntlm)",
            aria_label="filter events",
            data_table="events",
        ),
        tag("select", options, id="class-filter", aria_label="auth class"),
        tag(
            "span",
            f"{len(events)} of {len(events)} events",
            id="event-count",
            class_="count muted",
        ),
        class_="controls",
    )
    dated = spans_days(events)
    day = "" if dated or not events else format_utc(events[0].ts)[:10]
    if day and not day.startswith("<"):
        columns[1] = ("time", f"time (UTC, {day})", "text")
    else:
        dated = True

    def row(e: Event) -> tuple:
        request = f"{e.method} {e.uri}".strip() or "(response only)"
        cells: list[Any] = [
            e.event_id,
            format_utc(e.ts, date=dated),
            endpoint(e.client_ip, e.client_port),
            endpoint(e.server_ip, e.server_port),
            e.community_id or "-",
            "-" if e.frame is None else e.frame,
            _short(e.host or "-"),
            _short(request),
            "-" if e.status is None else e.status,
            scheme_text(e),
            _class_cell(e.auth_class),
            _outcome_cell(e.outcome),
            _short(identity_text(e, reveal)),
            _short(notes_text(e), 300),
            _short(e.user_agent or "-", 60),
        ]
        if reveal:
            secrets = [
                f"{n}: {_secret_text(getattr(e, n))}" for n in SECRET_FIELDS if getattr(e, n)
            ]
            cells.append(Cell("\n".join(secrets) or "-", "secret"))
        return (f"event-{e.event_id}", e.auth_class or "none", cells)

    rows = LazyRows(events, row)
    return _table_section(
        "events", f"Events ({len(events)})", columns, rows, controls=controls, empty="None."
    )


def _captures(captures: list[CaptureStats], key_warnings: list[str]) -> Html:
    head = ["capture", "format", "packets", "TCP connections", "HTTP", "TLS", "gaps", "notes"]
    rows = []
    for c in captures:
        notes = []
        if c.ip_datagrams_lost:
            notes.append(f"{c.ip_datagrams_lost:,} fragmented IP datagrams not put together")
        if c.truncated_packets:
            notes.append(f"{c.truncated_packets:,} packets cut by the snap length")
        notes += [f"warning: {w}" for w in c.warnings]
        rows.append(
            [
                c.path,
                c.file_format or "?",
                _num(c.packets),
                _num(c.tcp_connections),
                _num(c.http_connections),
                _num(c.tls_connections),
                _num(c.gaps),
                "; ".join(notes) or "-",
            ]
        )
    warnings = [tag("li", f"key warning: {w}") for w in key_warnings]
    return _section("captures", "Captures", head, rows, extra=tag("ul", warnings))


def _capture_end(events: list[Event], tls: list[TlsConnection]) -> float | None:
    times = [e.response_ts or e.ts for e in events] + [t.ts for t in tls]
    return max(times, default=None)


def _validity(not_before: float | None, not_after: float | None, at: float | None) -> Html:
    """Validity with the 30-day rule's verdict at the capture time ``at``."""
    text = f"{_when(not_before)} -> {_when(not_after)}"
    state = expiry(not_after, at)
    if state is None or not_after is None or at is None:
        return esc(text)
    tone = "bad" if state == "expired" else "warn"
    note = tag("span", expiry_text(not_after, at), class_=f"badge tone-{tone}")
    return Html(f"{esc(text)} {note}")


def _signing_keys(keys: list[SigningKey], at: float | None) -> Html:
    """The keys tokens were checked against: thumbprint, subject, validity, origin."""
    head = ["thumbprint (SHA-1)", "subject", "issuer", "valid (UTC)", "key", "published by", "from"]
    rows = []
    for k in keys:
        origin = k.source.location
        if k.source.ts is not None:
            origin += f" (captured {format_utc(k.source.ts)})"
        rows.append(
            [
                tag("code", k.thumbprint or k.x5t or k.kid or "-"),
                k.subject or "-",
                k.issuer or "-",
                _validity(k.not_before, k.not_after, at),
                k.describe(),
                k.metadata_issuer or "-",
                origin,
            ]
        )
    return _section("keys", f"Signing keys ({len(keys)})", head, rows)


def _tls(tls: list[TlsConnection]) -> Html:
    """TLS connections grouped by server, handshake facts and certificate."""
    groups: dict[tuple, list[TlsConnection]] = {}
    for t in tls:
        key = (t.server_ip, t.server_port, t.sni, t.version, t.cert_sha1, t.inspected)
        groups.setdefault(key, []).append(t)
    head = [
        "server",
        "SNI",
        "connections",
        "inspected",
        "version",
        "ALPN",
        "certificate subject",
        "certificate issuer",
        "valid (UTC)",
        "thumbprint (SHA-1)",
        "first (UTC)",
        "last (UTC)",
        "notes",
    ]
    rows = []
    for (ip, port, sni, version, sha1, inspected), conns in groups.items():
        first = conns[0]
        problems = sorted({t.problem for t in conns if t.problem})
        rows.append(
            [
                f"{ip}:{port}",
                sni or "-",
                _num(len(conns)),
                "yes" if inspected else tag("span", "no", class_="badge tone-warn"),
                version or "-",
                ", ".join(first.alpn) or "-",
                first.cert_subject or "-",
                first.cert_issuer or "-",
                _validity(first.cert_not_before, first.cert_not_after, conns[-1].ts)
                if sha1
                else "-",
                tag("code", sha1) if sha1 else "-",
                _when(first.ts),
                _when(conns[-1].ts),
                "; ".join(problems) or "-",
            ]
        )
    blind = [from_tls(t) for t in tls if not t.inspected]
    lines = [tag("li", line) for line in blind_spot_lines(blind)]
    return _section("tls", f"TLS connections ({len(tls)})", head, rows, extra=tag("ul", lines))


# -- small pieces ----------------------------------------------------------------------------
def _section(
    anchor: str,
    title: str,
    head: list[str],
    rows: list[list[Any]],
    ids: list[str] | None = None,
    extra: Html | None = None,
) -> Html:
    """A titled section holding one sortable, filterable table (``ids``: an id per row, for
    evidence links)."""
    columns = [(_key(h), h, "text") for h in head]
    body = [(ids[i] if ids else None, None, row) for i, row in enumerate(rows)]
    return _table_section(anchor, title, columns, body, extra=extra)


def _table_section(
    anchor: str,
    title: str,
    columns: list[tuple[str, str, str]],
    rows: list[Html | tuple[str | None, str | None, list[Any]]],
    *,
    extra: Html | None = None,
    empty: str = "None.",
    controls: Html | None = None,
) -> Html:
    """A section with a filter box (text or ``field:value``), sortable headers and the table,
    scrolling inside its box. ``columns``: (key, label, ``num`` or ``text``); ``rows``: built
    ``<tr>`` markup, or (id, data-class, cells) of which the first ``HTML_ROWS`` are written
    as HTML and the rest packed for the script to add (``packed``)."""
    total = len(rows)
    if total > HTML_ROWS:
        more = _rows_from(rows, HTML_ROWS)
        extra_after = extra
        extra = tag(
            "p",
            f"The first {HTML_ROWS:,} rows are part of the page; the other "
            f"{total - HTML_ROWS:,} are added by its script (JavaScript is needed to see them).",
            tag(
                "template",
                packed_rows([rid, cls, [_plain(c) for c in cells]] for rid, cls, cells in more),
                class_="more-rows",
                data_for=anchor,
            ),
            class_="muted more",
        )
        extra = Html(extra + (extra_after or ""))
    rows = [
        r if isinstance(r, Html) else _row(r[2], r[0], r[1]) for r in _rows_from(rows, 0, HTML_ROWS)
    ]
    if not rows:
        return tag(
            "section", tag("h2", title), tag("p", empty, class_="muted"), extra, id=f"sec-{anchor}"
        )
    head = tag(
        "thead",
        tag(
            "tr",
            [
                tag("th", label, data_key=key, data_type=kind, title="click to sort",
                    aria_sort="none")
                for key, label, kind in columns
            ],
        ),
    )  # fmt: skip
    if controls is None:
        controls = tag(
            "div",
            tag(
                "input",
                type="search",
                class_="filter",
                placeholder="filter: text, or field:value (" + _example(columns) + ")",
                aria_label=f"filter {anchor}",
                data_table=anchor,
            ),
            tag("span", f"{len(rows)} of {len(rows)}", class_="count muted"),
            class_="controls",
        )
    table = tag("table", head, tag("tbody", rows), id=anchor, class_="grid sortable")
    return tag(
        "section",
        tag("h2", title),
        controls,
        tag("div", table, class_="scroll"),
        extra,
        id=f"sec-{anchor}",
    )


def _key(label: str) -> str:
    """A column's filter and sort name: ``first (UTC)`` -> ``first``."""
    words = label.split(" (")[0].lower()
    return "".join(ch if ch.isalnum() else "_" for ch in words).strip("_")


def _example(columns: list[tuple[str, str, str]]) -> str:
    return f"{columns[1][0] if len(columns) > 1 else columns[0][0]}:..."


class Links:
    """A cell of links to rows of another table (``#event-8 #event-9``)."""

    __slots__ = ("ids", "prefix")

    def __init__(self, prefix: str, ids: Iterable[Any]) -> None:
        self.prefix, self.ids = prefix, list(ids)


#: Rows of a table written as HTML; past them the rows are packed for the script to add, so
#: the report of a capture with thousands of exchanges stays a few megabytes.
HTML_ROWS = 1000


def _plain(cell: Any) -> Any:
    """A cell as packed JSON: text, [text, class, sort value], or {"p": prefix, "i": ids}."""
    if isinstance(cell, Cell):
        return [str(cell.content), cell.cls or "", cell.v]
    if isinstance(cell, Links):
        return {"p": cell.prefix, "i": [str(i) for i in cell.ids]}
    return str(cell)


class Cell:
    """A table cell with a class (``wrap``, ``k-oauth``, ...) or a sort value (``data-v``)."""

    __slots__ = ("cls", "content", "v")

    def __init__(self, content: Any, cls: str | None = None, v: Any = None) -> None:
        self.content, self.cls, self.v = content, cls, v


def _row(cells: list[Any], row_id: str | None = None, data_class: str | None = None) -> Html:
    """One table row, compact: end tags left out (HTML allows it) and attribute values that
    are our own tokens unquoted, so a report of thousands of rows stays small."""
    head = "<tr"
    if row_id is not None:
        head += f' id="{esc(row_id)}"'
    if data_class is not None:
        head += f' data-class="{esc(data_class)}"'
    parts = [head, ">"]
    for cell in cells:
        if isinstance(cell, Links):
            parts.append(f"<td>{_id_links(cell.prefix, cell.ids)}")
        elif isinstance(cell, Cell):
            attrs = f' class="{esc(cell.cls)}"' if cell.cls else ""
            attrs += f' data-v="{esc(cell.v)}"' if cell.v is not None else ""
            parts.append(f"<td{attrs}>{esc(cell.content)}")
        else:
            parts.append(f"<td>{esc(cell)}")
    return Html("".join(parts))


def _class_cell(auth_class: str | None) -> Cell:
    """An auth class with its colour dot (drawn by the stylesheet)."""
    name = auth_class or "-"
    known = name if name in charts.CLASS_COLORS else "other"
    return Cell(name, f"k-{known}" if auth_class else None)


def _outcome_cell(outcome: str | None) -> Cell:
    return Cell(outcome or "-", f"o-{outcome}" if outcome else None)


def _pair_name(v: PairVerdict) -> str:
    sip = "SIP " if v.protocol == "sip" else ""
    return f"{v.client_ip} -> {sip}{v.host or v.server_ip} ({v.server_ip}:{v.server_port})"


def _verdict_badge(verdict: str) -> Html:
    return tag("span", verdict, class_=f"badge tone-{VERDICT_TONE.get(verdict, 'neutral')}")


def _class_dot(auth_class: str | None) -> Html:
    name = auth_class or "-"
    known = name if name in charts.CLASS_COLORS else "other"
    return tag("span", tag("i", class_=f"dot c-{known}"), name, class_="cls")


def _classes(classes: dict[str, int]) -> Html:
    if not classes:
        return esc("-")
    return Html(", ".join(f"{_class_dot(c)} {n}" for c, n in classes.items()))


def _id_links(prefix: str, ids: Iterable[Any]) -> Html:
    links = [f'<a href="#{prefix}-{esc(i)}">{esc(i)}</a>' for i in ids]
    return Html(" ".join(links)) if links else esc("-")


def _named(app: str | None, raw_value: str | None, host: str | None = None) -> str:
    if raw_value is None:
        return "-"
    if app is None:
        return _short(raw_value, 60)
    realm = raw_value.rsplit("@", 1)[1] if "@" in raw_value else ""
    return app + (f" ({host})" if host else "") + (f"@{realm}" if realm else "")


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _when(ts: float | None) -> str:
    return format_utc(ts)


def _short(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


# -- inline style and script (constants: hashed into the page's Content-Security-Policy) -----
_CLASS_CSS = "".join(
    f".c-{c}{{background:{color}}}td.k-{c}{{--k:{color}}}"
    for c, color in charts.CLASS_COLORS.items()
)

STYLE = (
    """
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#f6f8fa;--good:#1a7f37;--good-bg:#dafbe1;
--warn:#9a6700;--warn-bg:#fff8c5;--bad:#cf222e;--bad-bg:#ffebe9;--neutral:#57606a;
--neutral-bg:#eaeef2;--low:#0969da;--low-bg:#ddf4ff}
*{box-sizing:border-box}
html{overflow-x:hidden}
body{margin:0;padding:0 32px 48px;max-width:100%;font:14px/1.5 -apple-system,"Segoe UI",
"Noto Sans",Helvetica,
Arial,"Liberation Sans",sans-serif;color:var(--fg);background:#fff}
header{padding:24px 0 8px}
h1{font-size:24px;margin:0 0 4px;font-weight:650;word-break:break-word}
h2{font-size:19px;margin:36px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}
h4{font-size:13px;margin:14px 0 4px;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",
monospace;font-size:12.5px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px;
overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-all}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
.muted{color:var(--muted)}
nav{position:sticky;top:0;z-index:2;background:rgba(255,255,255,.95);border-bottom:1px solid
var(--line);padding:8px 0;margin-bottom:16px}
nav{display:flex;flex-wrap:wrap;gap:4px 18px}nav a{font-weight:500}
.banner{border-radius:10px;padding:18px 22px;border:1px solid;margin:8px 0 16px}
.banner .eyebrow{font-size:12px;text-transform:uppercase;letter-spacing:.08em;font-weight:600}
.banner .headline{font-size:30px;font-weight:700;line-height:1.2;margin:2px 0 8px}
.banner p{margin:2px 0;font-size:15px}
.banner .banner-warning{font-weight:600;color:var(--warn)}
.tone-good{background:var(--good-bg);border-color:var(--good);color:var(--good)}
.tone-warn{background:var(--warn-bg);border-color:#d4a72c;color:var(--warn)}
.tone-bad{background:var(--bad-bg);border-color:var(--bad);color:var(--bad)}
.tone-neutral{background:var(--neutral-bg);border-color:var(--neutral);color:var(--neutral)}
.banner p,.card .summary,.card .facts{color:var(--fg)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(380px,100%),1fr));gap:14px}
.card{border:1px solid;border-left-width:6px;border-radius:8px;padding:14px 16px}
.card .verdict-word{font-size:22px;font-weight:750;letter-spacing:.02em}
.card .pair{font-weight:600;color:var(--fg);word-break:break-word}
.card .summary{margin:6px 0;font-size:15px}
.card .facts{margin:0;padding-left:18px;font-size:13px}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:650;
border:1px solid;white-space:nowrap}
.sev-high{--c:var(--bad);--cb:var(--bad-bg)}.sev-medium{--c:var(--warn);--cb:var(--warn-bg)}
.sev-low{--c:var(--low);--cb:var(--low-bg)}.sev-info{--c:var(--neutral);--cb:var(--neutral-bg)}
h3[class^=sev-]{color:var(--c)}
.badge[class*=sev-]{color:var(--c);background:var(--cb);border-color:var(--c)}
.finding{border:1px solid var(--line);border-left:5px solid var(--c);border-radius:8px;
padding:10px 14px;margin:8px 0;background:#fff}
.finding-head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.finding .rule{font-weight:600}.finding .title{font-weight:600}
.finding .detail{margin:6px 0 2px;word-break:break-word}
.finding .explanation{margin:2px 0 6px;color:var(--muted);font-size:13px}
.evidence{font-size:13px;display:flex;flex-wrap:wrap;gap:2px 16px}
.links{overflow-wrap:anywhere}.links a{margin-right:6px;display:inline-block}
figure{margin:0 0 22px}figure img{max-width:100%;height:auto;border:1px solid var(--line);
border-radius:6px}
figcaption{color:var(--muted);font-size:13px;margin-top:4px}
.scroll{overflow:auto;max-width:100%;max-height:80vh;border:1px solid var(--line);
border-radius:6px}
section,article,tr{scroll-margin-top:84px}
#sec-handshakes,#sec-tokens,#sec-keys,#sec-tls,#sec-events,#sec-captures{
content-visibility:auto;contain-intrinsic-size:auto 900px}
table.grid{border-collapse:collapse;width:100%;font-size:12.5px}
.grid th,.grid td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top;white-space:nowrap}
.grid td.wrap{white-space:normal;min-width:190px;max-width:380px;word-break:break-word}
.grid tr.token-detail td{white-space:normal;background:var(--bg)}
.grid tr.token-detail pre{max-width:min(900px,85vw)}
.grid td.claims{color:#0969da;cursor:pointer;text-decoration:underline;user-select:none}
.grid td.flags{color:var(--bad);white-space:normal}
.grid td.sig-verified{color:var(--good);font-weight:600}
.grid td.sig-bad-signature,.grid td.sig-unknown-key,
.grid td.sig-untrusted-key{color:var(--bad);font-weight:600}
.grid td.sig-unsigned{color:var(--warn);font-weight:600}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
.banner p,.card li,.finding p{overflow-wrap:anywhere}
@media (max-width:700px){body{padding:0 12px 32px}.banner{padding:12px 14px}
.banner .headline{font-size:22px}h1{font-size:20px}.card{padding:10px 12px}}
.grid th{background:var(--bg);position:sticky;top:0;font-weight:600}
.grid tbody tr:hover{background:#f6f8fa}
.grid tr:target{background:#fff8c5;outline:2px solid #d4a72c}
.sortable th{cursor:pointer;user-select:none}
.sortable th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
.sortable th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:0 0 10px}
.controls input{flex:1 1 240px;max-width:420px;min-width:0;padding:6px 10px;
border:1px solid var(--line);border-radius:6px;font:inherit}
.controls select{padding:6px 8px;border:1px solid var(--line);border-radius:6px;font:inherit;
background:#fff}
.cls{white-space:nowrap}.dot{display:inline-block;width:9px;height:9px;border-radius:50%;
margin-right:5px;vertical-align:baseline}
.outcome{font-weight:600}.out-accepted{color:var(--good)}.out-rejected{color:var(--bad)}
.out-challenged{color:var(--warn)}.out-incomplete{color:var(--neutral)}
td[class^=o-]{font-weight:600}td.o-accepted{color:var(--good)}td.o-rejected{color:var(--bad)}
td.o-challenged{color:var(--warn)}td.o-incomplete{color:var(--neutral)}
td[class^=k-]::before{content:"";display:inline-block;width:9px;height:9px;border-radius:50%;
margin-right:5px;background:var(--k)}
#events td:nth-child(7),#events td:nth-child(n+12),#handshakes td:nth-child(16),td.wrap{
white-space:normal;min-width:190px;max-width:380px;word-break:break-word}
#events td.secret{white-space:pre-wrap;font-family:ui-monospace,monospace}
details.token{border:1px solid var(--line);border-radius:8px;margin:6px 0;padding:0 12px}
details.token[open]{padding-bottom:10px}
details.token summary{cursor:pointer;padding:8px 0;display:flex;gap:8px;align-items:baseline;
flex-wrap:wrap}
details.token:target{outline:2px solid #d4a72c}
.pill{border:1px solid var(--line);border-radius:999px;padding:0 8px;font-size:12px;
background:var(--bg)}
.sig{font-weight:600;font-size:12px}.sig-verified{color:var(--good)}
.sig-bad-signature,.sig-unknown-key,.sig-untrusted-key{color:var(--bad)}.sig-unsigned{color:var(--warn)}
.flag{background:var(--bad-bg);color:var(--bad);border-radius:4px;padding:0 6px;font-size:12px}
table.kv{border-collapse:collapse;font-size:13px;margin-top:4px}
.kv th{text-align:left;color:var(--muted);font-weight:500;padding:2px 14px 2px 0;
white-space:nowrap;vertical-align:top}
.kv td{padding:2px 0;word-break:break-word}
ul.checks{margin:0;padding-left:18px;font-size:13px}
.check{font-weight:700}.check-true{color:var(--good)}.check-false{color:var(--bad)}
.check-none{color:var(--muted)}
.secret{color:var(--bad)}
footer{margin-top:40px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);
padding-top:10px}
"""
    + _CLASS_CSS
    + "\n"
)

SCRIPT = """
"use strict";
(function () {
  // State in the URL: #events.q=status:401&events.sort=status:desc (any table), and the older
  // ?filter=ntlm&class=oauth&sort=status:desc for the events table.
  var state = new URLSearchParams(location.search);
  var hash = location.hash.slice(1);
  if (hash.indexOf("=") >= 0) {
    new URLSearchParams(hash).forEach(function (v, k) { state.set(k, v); });
  }
  [["filter", "events.q"], ["sort", "events.sort"], ["class", "events.class"]].forEach(
    function (p) {
      if (state.has(p[0]) && !state.has(p[1])) { state.set(p[1], state.get(p[0])); }
    });
  var tables = [];

  function cellText(cell) { return cell.textContent.toLowerCase(); }
  function parse(q) {
    return q.trim().toLowerCase().split(/\\s+/).filter(Boolean).map(function (t) {
      var not = t.charAt(0) === "-" && t.length > 1;
      if (not) { t = t.slice(1); }
      var m = /^([a-z_]+):(.*)$/.exec(t);
      return m ? {not: not, field: m[1], value: m[2]} : {not: not, value: t};
    });
  }
  function matches(t, r, terms) {
    return terms.every(function (term) {
      var hit;
      if (term.field !== undefined && t.index[term.field] !== undefined) {
        var i = t.index[term.field], v = term.value, m = /^(<=|>=|<|>)(.*)$/.exec(v);
        if (m && t.numeric[i]) {
          var n = parseFloat(key(r, i, true)), x = parseFloat(m[2]);
          hit = m[1] === "<" ? n < x : m[1] === ">" ? n > x : m[1] === "<=" ? n <= x : n >= x;
        } else {
          hit = cellText(r.cells[i]).indexOf(v) >= 0;
        }
      } else {
        var text = term.field !== undefined ? term.field + ":" + term.value : term.value;
        hit = r._text.indexOf(text) >= 0;
      }
      return term.not ? !hit : hit;
    });
  }
  function key(r, col, numeric) {
    var cell = r.cells[col], v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent; }
    if (numeric) { var n = parseFloat(v.replace(/,/g, "")); return isNaN(n) ? -Infinity : n; }
    return v.toLowerCase();
  }
  function write() {
    var out = new URLSearchParams();
    tables.forEach(function (t) {
      if (t.box.value.trim()) { out.set(t.id + ".q", t.box.value.trim()); }
      if (t.sorted) { out.set(t.id + ".sort", t.sorted); }
      if (t.pick && t.pick.value) { out.set(t.id + ".class", t.pick.value); }
    });
    var text = out.toString();
    try {
      var url = location.pathname + location.search + (text ? "#" + text : "");
      history.replaceState(null, "", url);
    } catch (e) { /* a page opened from a file may refuse: the filters still apply */ }
  }
  function setup(table) {
    var section = table.closest("section");
    var t = {
      id: table.id, table: table, body: table.tBodies[0], sorted: "",
      rows: Array.prototype.slice.call(table.tBodies[0].rows),
      heads: Array.prototype.slice.call(table.tHead.rows[0].cells),
      box: section.querySelector("input.filter"), count: section.querySelector(".count"),
      pick: table.id === "events" ? document.getElementById("class-filter") : null,
      index: {}, numeric: []
    };
    t.rows.forEach(function (r, i) { r._i = i; r._text = r.textContent.toLowerCase(); });
    t.heads.forEach(function (h, i) {
      t.index[h.getAttribute("data-key")] = i;
      t.numeric[i] = h.getAttribute("data-type") === "num";
    });
    t.apply = function (save) {
      var terms = parse(t.box.value), c = t.pick ? t.pick.value : "", shown = 0;
      t.rows.forEach(function (r) {
        var ok = matches(t, r, terms) && (!c || r.getAttribute("data-class") === c);
        r.hidden = !ok;
        if (ok) { shown++; }
      });
      t.count.textContent = shown + " of " + t.rows.length + (t.id === "events" ? " events" : "");
      if (save) { write(); }
    };
    t.sort = function (col, dir, save) {
      var numeric = t.numeric[col];
      t.rows.sort(function (a, b) {
        var x = key(a, col, numeric), y = key(b, col, numeric);
        var d = x < y ? -1 : (x > y ? 1 : 0);
        return (dir === "desc" ? -d : d) || a._i - b._i;
      });
      var frag = document.createDocumentFragment();
      t.rows.forEach(function (r) {
        frag.appendChild(r);
        if (r._detail) { frag.appendChild(r._detail); }
      });
      t.body.appendChild(frag);
      t.heads.forEach(function (h, i) {
        var state = dir === "desc" ? "descending" : "ascending";
        h.setAttribute("aria-sort", i === col ? state : "none");
      });
      t.sorted = t.heads[col].getAttribute("data-key") + ":" + dir;
      if (save) { write(); }
    };
    t.heads.forEach(function (h, i) {
      h.addEventListener("click", function () {
        t.sort(i, h.getAttribute("aria-sort") === "ascending" ? "desc" : "asc", true);
      });
    });
    t.box.addEventListener("input", function () { t.apply(true); });
    if (t.pick) { t.pick.addEventListener("change", function () { t.apply(true); }); }
    if (state.has(t.id + ".q")) { t.box.value = state.get(t.id + ".q"); }
    if (t.pick && state.has(t.id + ".class")) {
      t.pick.value = state.get(t.id + ".class");
      if (t.pick.selectedIndex < 0) { t.pick.value = ""; }
    }
    if (state.has(t.id + ".sort")) {
      var spec = state.get(t.id + ".sort").split(":");
      if (t.index[spec[0]] !== undefined) {
        t.sort(t.index[spec[0]], spec[1] === "desc" ? "desc" : "asc");
      }
    }
    t.apply(false);
    tables.push(t);
  }
  function unpack(text) {  // base64 of raw-deflated JSON
    var bytes = Uint8Array.from(atob(text), function (c) { return c.charCodeAt(0); });
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Response(stream).text().then(function (t) { return JSON.parse(t || "null"); });
  }
  function build(spec) {  // [id, data-class, cells]: a packed row, as the page writes them
    var tr = document.createElement("tr");
    if (spec[0]) { tr.id = spec[0]; }
    if (spec[1]) { tr.setAttribute("data-class", spec[1]); }
    spec[2].forEach(function (c) {
      var td = document.createElement("td");
      if (typeof c === "string") {
        td.textContent = c;
      } else if (Array.isArray(c)) {
        td.textContent = c[0];
        if (c[1]) { td.className = c[1]; }
        if (c[2] !== null && c[2] !== undefined) { td.setAttribute("data-v", c[2]); }
      } else {
        c.i.forEach(function (id, k) {
          if (k) { td.appendChild(document.createTextNode(" ")); }
          var a = document.createElement("a");
          a.href = "#" + c.p + "-" + id;
          a.textContent = id;
          td.appendChild(a);
        });
        if (!c.i.length) { td.textContent = "-"; }
      }
      tr.appendChild(td);
    });
    return tr;
  }
  var packs = Array.prototype.slice.call(document.querySelectorAll("template.more-rows"));
  Promise.all(packs.map(function (t) {
    return unpack(t.content.textContent).then(function (rows) {
      var body = document.getElementById(t.getAttribute("data-for")).tBodies[0];
      var frag = document.createDocumentFragment();
      rows.forEach(function (r) { frag.appendChild(build(r)); });
      body.appendChild(frag);
      t.parentNode.hidden = true;
    });
  })).then(start, start);

  function start() {  // performance marks: the browser test reads them
    performance.mark("rows-added");
    Array.prototype.slice.call(document.querySelectorAll("table.sortable[id]")).forEach(setup);
    window.addEventListener("hashchange", reveal);
    reveal();
    document.body.setAttribute("data-js", "ready");
    performance.mark("report-ready");
  }

  // Tokens: facts, checks, header and claims drawn when a row is opened.
  var data = document.getElementById("token-data"), tokens = null;
  function unpacked() {  // the token details, unpacked once
    if (tokens) { return Promise.resolve(tokens); }
    return unpack(data ? data.content.textContent : "").then(function (all) {
      tokens = all || {};
      return tokens;
    });
  }
  function el(name, text, cls) {
    var e = document.createElement(name);
    if (text !== undefined) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }
  function json(v) { return v === null || v === undefined ? "(none)" : JSON.stringify(v, null, 2); }
  function open(row, show) {
    var button = row.querySelector("td.claims");
    if (!button) { return; }
    if (row._detail) {
      if (!show) {
        row._detail.remove();
        row._detail = null;
        button.textContent = "show";
        row.removeAttribute("data-open");
      }
      return;
    }
    unpacked().then(function (all) {
      draw(row, button, all[row.id.slice(6)] || {});
    });
  }
  function draw(row, button, d) {
    if (row._detail) { return; }
    var tr = el("tr", undefined, "token-detail"), td = el("td");
    td.colSpan = row.cells.length;
    var kv = el("table", undefined, "kv");
    (d.f || []).forEach(function (f) {
      var r = el("tr");
      r.appendChild(el("th", f[0]));
      r.appendChild(el("td", f[1]));
      kv.appendChild(r);
    });
    td.appendChild(kv);
    if (d.c && d.c.length) {
      td.appendChild(el("h4", "Checks"));
      var ul = el("ul", undefined, "checks");
      d.c.forEach(function (c) {
        var li = el("li");
        li.appendChild(el("span", c[0] === true ? "ok" : c[0] === false ? "FAIL" : "?",
                          "check check-" + String(c[0]).toLowerCase()));
        li.appendChild(document.createTextNode(" " + c[1]));
        ul.appendChild(li);
      });
      td.appendChild(ul);
    }
    td.appendChild(el("h4", "Header")); td.appendChild(el("pre", json(d.h)));
    td.appendChild(el("h4", "Claims")); td.appendChild(el("pre", json(d.l)));
    if (d.t) {
      td.appendChild(el("h4", "Token text (revealed)"));
      td.appendChild(el("pre", d.t, "secret"));
    }
    tr.appendChild(td);
    row.parentNode.insertBefore(tr, row.nextSibling);
    row._detail = tr;
    button.textContent = "hide";
    row.setAttribute("data-open", "yes");
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("td.claims");
    if (b) { open(b.closest("tr"), false); }
  });

  // A link to a hidden row (from a finding) clears that table's filter; a token opens.
  function reveal() {
    var m = /^#((event|handshake|token)-[^&=]+)$/.exec(location.hash);
    var row = m && document.getElementById(decodeURIComponent(m[1]));
    if (!row) { return; }
    tables.forEach(function (t) {
      if (row.hidden && t.table.contains(row)) {
        t.box.value = ""; if (t.pick) { t.pick.value = ""; } t.apply(false);
      }
    });
    if (m[2] === "token") { open(row, true); }
    row.scrollIntoView();
  }
})();
"""
