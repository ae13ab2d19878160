"""UTC times as text, for every text output (table, terminal, HTML, explanations, charts).

A capture or token can carry any number as a time: a pcapng ``if_tsoffset`` of centuries, an
``exp`` of 1e15, NaN. ``datetime`` covers years 1 to 9999 only and raises past them; here a time it
cannot show becomes ``<invalid time ...>`` with the raw number, so one bad value never ends a run.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def format_utc(ts: float | None, digits: int = 3, *, date: bool = True) -> str:
    """``2026-03-02 09:00:00.030`` for epoch seconds ``ts``; "-" for None.

    ``digits`` is how many decimals of the second to show (0 to 6, cut, not rounded, as a
    packet's clock is read), or -1 for minutes only (``2026-03-02 09:00``); ``date=False`` leaves
    the date out (``09:00:00.030``). A time outside years 1..9999 (or not a number) gives
    ``<invalid time 1000000000000000>``.
    """
    if ts is None:
        return "-"
    moment = _moment(ts)
    if moment is None:
        return invalid_time(ts)
    if digits < 0:
        text = moment.strftime("%Y-%m-%d %H:%M")
    elif digits == 0:
        text = moment.strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")[: 20 + min(digits, 6)]
    return text if date else text[11:]


def invalid_time(ts: float) -> str:
    """The text shown for a time no calendar date can show: the raw number, kept short."""
    try:
        number = float(ts)
    except (OverflowError, TypeError, ValueError):
        return f"<invalid time {str(ts)[:24]}>"
    if math.isfinite(number) and number.is_integer() and abs(number) < 1e16:
        return f"<invalid time {int(number)}>"
    return f"<invalid time {number!r}>"


def _moment(ts: float) -> datetime | None:
    """``ts`` as an aware UTC datetime, or None when out of range (or not a number)."""
    try:
        return datetime.fromtimestamp(ts, timezone.utc)
    except (OverflowError, OSError, ValueError, TypeError):
        pass
    try:  # platforms whose C library refuses negative times: add to the epoch instead
        return _EPOCH + timedelta(seconds=ts)
    except (OverflowError, OSError, ValueError, TypeError):
        return None


def iso_utc(ts: float | None) -> str:
    """``2026-03-02T09:00:00.100560Z`` (ISO 8601, UTC) for epoch seconds; "" for None and
    ``<invalid time ...>`` for a time no calendar date can show."""
    if ts is None:
        return ""
    moment = _moment(ts)
    if moment is None:
        return invalid_time(ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
