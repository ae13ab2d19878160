"""``analyze --credentials`` as text: one row per distinct credential."""

from __future__ import annotations

from typing import IO

from analyzer.model import CredentialRecord
from analyzer.report.layout import Column
from analyzer.report.table import PIPE_WIDTH, PLAIN, Style, grid
from analyzer.report.times import format_utc

COLUMNS = [
    Column("credential", 0),
    Column("scheme", 1),
    Column("user / issuer", 2, min_width=16, max_width=50, wrap=True),
    Column("first seen", 3),
    Column("last seen", 4),
    Column("uses", 5),
    Column("clients", 6, min_width=15, max_width=40, wrap=True),
    Column("servers", 7, min_width=16, max_width=50, wrap=True),
    Column("outcomes", 8, min_width=16, max_width=50, wrap=True),
]


def write_credentials(
    records: list[CredentialRecord],
    out: IO[str],
    width: int = PIPE_WIDTH,
    style: Style = PLAIN,
    *,
    reveal_secrets: bool = False,
) -> None:
    """The credentials table; with ``reveal_secrets`` (``--reveal-secrets``) Basic passwords
    beside the user. The records always carry them (a secret field): only this flag shows them."""
    out.write(style.heading(f"Credentials ({len(records):,} distinct), times UTC") + "\n")
    if not records:
        out.write("  (no credentials found)\n")
        return
    revealed = reveal_secrets and any(r.password is not None for r in records)
    if revealed:
        out.write("  Secrets shown (--reveal-secrets): Basic passwords beside the user\n")
    rows = []
    for r in records:
        who = r.identity or "-"
        if r.issuer:
            who = f"{who} (issued by {r.issuer})" if r.identity else r.issuer
        if revealed and r.password is not None:
            who += f" password={r.password}"
        rows.append(
            [
                f"fp={r.cred_fp}",
                r.scheme,
                who,
                format_utc(r.first_seen),
                format_utc(r.last_seen),
                f"{r.uses:,}",
                ", ".join(r.clients),
                ", ".join(r.servers),
                ", ".join(f"{n} {o}" for o, n in r.outcomes.items()),
            ]
        )
    grid(COLUMNS, rows, out, width, style)
