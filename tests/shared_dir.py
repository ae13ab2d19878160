"""Where the tests find ``../shared`` (the public captures), and what a missing folder means.

The public captures live beside the clone, in ``<project root>/../shared/captures/public``.
Outside CI a missing folder (a user's fresh clone) skips the tests that need it, and the skip
names the folder. Under ``CI=true`` it fails them instead: CI runs with a copy of ``../shared``
beside the clone, so a missing folder there is a broken setup, not a reason to pass quietly.

``OAUTH_ANALYZER_SHARED`` names the shared folder explicitly; ``bench/mutation.py`` sets it,
because mutmut runs the tests in a ``mutants/`` copy that has no ``../shared`` beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ENV = "OAUTH_ANALYZER_SHARED"
ROOT = Path(__file__).resolve().parents[1]

#: Use as ``@needs_public`` or ``@needs_public("file.pcap", ...)``: conftest.py skips (or, in
#: CI, fails) the test before it runs when the folder or one of the named files is missing.
needs_public = pytest.mark.public_captures


def shared_dir() -> Path:
    """The shared folder: ``$OAUTH_ANALYZER_SHARED``, else ``<project root>/../shared``."""
    named = os.environ.get(ENV)
    return Path(named) if named else ROOT.parent / "shared"


PUBLIC = shared_dir() / "captures" / "public"


def in_ci() -> bool:
    """True under CI (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(*names: str) -> str | None:
    """Why the public captures (and ``names`` in them) cannot be used, or None when they can."""
    if not PUBLIC.is_dir():
        return f"public captures not present: no folder {PUBLIC}"
    absent = [name for name in names if not (PUBLIC / name).exists()]
    if absent:
        return f"public captures incomplete: {', '.join(absent)} missing from {PUBLIC}"
    return None


def require_public(*names: str) -> Path:
    """The public captures folder; skips the calling test when it (or a named file) is
    missing, and fails it under CI."""
    reason = missing(*names)
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: CI must run with ../shared beside the clone)")
        pytest.skip(reason)
    return PUBLIC


def public_expected() -> dict[str, Any]:
    """``expected.json`` of the public captures (tshark's ground truth), or skip / fail."""
    return json.loads((require_public("expected.json") / "expected.json").read_text())


def public_captures_listed() -> list[dict[str, Any]]:
    """The captures ``expected.json`` lists, for parametrising at collection time: empty when
    the folder is missing (the tests are then marked ``needs_public`` and skip or fail)."""
    path = PUBLIC / "expected.json"
    return json.loads(path.read_text())["captures"] if path.is_file() else []
