"""The fixed facts every capture shares: where captures/ is, the clock, and the lab's identities.

All times are nanoseconds since the epoch; every capture starts from ``T0`` so a run never reads
the wall clock.
"""

from __future__ import annotations

from pathlib import Path

#: captures/, where the captures are written by default and the TEST keys live.
HERE = Path(__file__).resolve().parents[1]
KEYS_DIR = HERE / "keys"
KEYS_REL = "captures/keys"

US = 1_000  # nanoseconds per microsecond
MS = 1_000_000
SEC = 1_000_000_000
#: 2026-03-02T09:00:00Z, the base time of every capture (nanoseconds since the epoch).
T0 = 1_772_442_000 * SEC
T0_S = T0 // SEC

EXCHANGE_ID = "00000002-0000-0ff1-ce00-000000000000"
SFB_ID = "00000004-0000-0ff1-ce00-000000000000"
ACS_ID = "00000001-0000-0000-c000-000000000000"
TENANT = "11111111-2222-3333-4444-555555555555"
REALM = "contoso.com"
