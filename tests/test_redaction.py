"""Secret-shaped values: what is masked, what stays readable, and how a masked value looks."""

from __future__ import annotations

import base64

import pytest

from analyzer.auth.schemes import fingerprint
from analyzer.redaction import identity_fields, looks_secret, mask_secret

SECRETS = [
    ("ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "ghp_"),
    ("ghs_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2", "ghs_"),
    ("ghu_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8", "ghu_"),
    ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIA"),
    ("xoxp-2184093-4402197-Xp3kQ9vTzR7mW2nB8cL5", "xoxp-"),
    ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "eyJ"),
    (base64.b64encode(bytes(range(32))).decode(), ""),  # 32 bytes, base64
    (base64.urlsafe_b64encode(bytes(range(200, 232))).decode().rstrip("="), ""),  # base64url
    (bytes(range(32)).hex(), ""),  # 32 bytes, hex
    ("9f78c26a6fa32af3954c15f0af85115e", ""),  # a 16-byte key in hex
    ("Evwin62HuuT_CqEN8vs5veKaAbpDEfzs", ""),  # random, by entropy
    ("Evwin62HuuT-CqEN8vs5-veKaAbpDEfzs-9a3k", ""),  # GUID-long with dashes, yet random
]
READABLE = [
    "alice",
    "alice@contoso.com",
    "CONTOSO\\alice",
    "Firstname.Lastname2024",
    "SPFarmSvc_Prod01_Contoso",
    "sharepoint-farm-service-account-01",
    "this_is_a_very_long_service_account_name_for_prod_2024",
    "00000004-0000-0ff1-ce00-000000000000@contoso.com",
    "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
    "72f988bf86f1-41af91ab-2d7cd011db47aa",  # hex and dashes, not a GUID: 17 symbols at most
    "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    # high entropy but with @ or \: judged by shape only
    "x9Qm2Lp7Vr4Tz8Kw1Nb6Hc3Jd5Fg0Ys@contoso.com",
    "CONTOSO\\x9Qm2Lp7Vr4Tz8Kw1Nb6Hc3Jd5Fg0Ys",
]


@pytest.mark.parametrize(("secret", "prefix"), SECRETS)
def test_secret_shapes_are_masked_recognisably(secret: str, prefix: str) -> None:
    assert looks_secret(secret)
    assert mask_secret(secret) == f"{prefix}\u2026({len(secret)} chars, fp {fingerprint(secret)})"


@pytest.mark.parametrize("value", READABLE)
def test_names_stay_readable(value: str) -> None:
    assert not looks_secret(value)
    assert mask_secret(value) is value


def test_a_secret_inside_a_longer_value_masks_all_of_it() -> None:
    value = "CONTOSO\\ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    assert mask_secret(value) == f"\u2026({len(value)} chars, fp {fingerprint(value)})"


def test_identity_fields_keep_the_raw_value_only_when_masked() -> None:
    assert identity_fields("alice", "CONTOSO") == {}
    assert identity_fields(None, None) == {}
    key = "AKIAIOSFODNN7EXAMPLE"
    assert identity_fields(key, "CONTOSO") == {"user": mask_secret(key), "raw_user": key}
