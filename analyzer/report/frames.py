"""Records as pandas DataFrames with honest dtypes.

Times become timezone-aware UTC datetimes, closed vocabularies (schemes, classes, outcomes,
severities, signature states) categoricals, optional integers nullable ``Int64``; list and dict
fields stay Python objects. Column names are the record field names (docs/schema.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from operator import attrgetter

import pandas as pd

from analyzer.model import (
    AUTH_CLASSES,
    NOT_INSPECTED_KINDS,
    OUTCOMES,
    SCHEMES,
    SEVERITIES,
    CredentialRecord,
    Event,
    Finding,
    Handshake,
    NotInspected,
    PairVerdict,
    TlsConnection,
    TokenRecord,
    listed,
    public_fields,
)
from analyzer.oauth.keys import STATUSES

SIGNATURES = STATUSES
TOKEN_FORMATS = ("jwt", "jwt-unsigned", "jwe", "cwt", "opaque", "empty", "malformed")

#: Per record type: time columns, categorical columns (with their categories), nullable ints.
_TIMES = {
    Event: ("ts", "response_ts", "token_nbf", "token_exp"),
    Handshake: ("start_ts", "end_ts"),
    TokenRecord: ("nbf", "exp", "iat", "first_seen", "last_seen"),
    Finding: ("first_ts",),
    PairVerdict: ("first_ts", "last_ts"),
    TlsConnection: ("ts", "cert_not_before", "cert_not_after"),
    NotInspected: ("ts",),
    CredentialRecord: ("first_seen", "last_seen"),
}
_CATEGORIES = {
    Event: {
        "scheme": SCHEMES,
        "auth_class": AUTH_CLASSES,
        "outcome": OUTCOMES,
        "token_format": TOKEN_FORMATS,
        "token_signature": SIGNATURES,
        "protocol": None,
        "method": None,
        "transport": ("tcp", "udp", "tls"),
    },
    Handshake: {"auth_class": AUTH_CLASSES, "outcome": OUTCOMES},
    TokenRecord: {"format": TOKEN_FORMATS, "signature": SIGNATURES, "role": None},
    Finding: {"severity": SEVERITIES, "rule_id": None},
    PairVerdict: {"verdict": None},
    TlsConnection: {"version": None, "client_version": None},
    NotInspected: {"kind": NOT_INSPECTED_KINDS},
    CredentialRecord: {"scheme": SCHEMES},
}
_INTS = {
    Event: (
        "sip_cnum",
        "status",
        "stream_id",
        "password_len",
        "cred_len",
        "diag_code",
        "handshake_id",
        "client_port",
        "server_port",
        "event_id",
    ),
    Handshake: ("final_status", "diag_code", "server_port", "handshake_id", "exchanges"),
    TokenRecord: ("uses",),
    Finding: (),
    PairVerdict: ("server_port", "exchanges", "handshakes"),
    TlsConnection: ("client_port", "server_port"),
    NotInspected: ("client_port", "server_port", "count"),
    CredentialRecord: ("uses",),
}


def to_frame(
    records: Sequence[object], record_type: type, *, reveal_secrets: bool = False
) -> pd.DataFrame:
    """A DataFrame of ``records`` (all of ``record_type``), one column per public field.

    Built a column at a time, with each value as ``to_dict`` gives it (a tuple as a list): a
    dict per record first would hold every field of every record twice over (100,000 events
    made 500 MB of dicts)."""
    columns = public_fields(record_type, reveal_secrets)
    data = {}
    for name in columns:
        values = list(map(attrgetter(name), records))
        if any(isinstance(v, tuple) for v in values):
            values = [listed(v) if isinstance(v, tuple) else v for v in values]
        data[name] = values
    # no records: object columns, as a frame of dicts has (a list of nothing would be float)
    frame = pd.DataFrame(data, columns=columns, dtype=None if records else object)
    for name in _TIMES.get(record_type, ()):
        micros = (frame[name].astype("float64") * 1e6).round()  # captures keep microseconds
        micros = micros.where((micros >= _MIN_MICROS) & (micros <= _MAX_MICROS))  # else NaT
        frame[name] = pd.to_datetime(micros, unit="us", utc=True)
    for name, categories in _CATEGORIES.get(record_type, {}).items():
        values = frame[name].astype("object")
        if categories is None:
            categories = sorted({v for v in values if v is not None})
        frame[name] = pd.Categorical(values, categories=list(categories))
    for name in _INTS.get(record_type, ()):
        frame[name] = frame[name].astype("Int64")
    return frame


def _time_bounds() -> tuple[float, float]:
    """The times (in microseconds) a frame holds; others become NaT rather than raise
    ``OutOfBoundsDatetime``: years 1 to 9999, as the text outputs show them, narrowed to
    1677-2262 where this pandas keeps nanoseconds (pandas 2)."""
    low, high = -62_135_596_800e6, 253_402_300_799e6
    try:
        pd.to_datetime(pd.Series([low, high]), unit="us", utc=True)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return pd.Timestamp.min.value // 1000 + 1, pd.Timestamp.max.value // 1000 - 1
    return low, high


_MIN_MICROS, _MAX_MICROS = _time_bounds()


def field_names(record_type: type) -> list[str]:
    """All field names of a record type (public or not)."""
    return [f.name for f in dataclasses.fields(record_type)]
