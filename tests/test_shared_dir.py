"""A missing ``../shared`` skips the public-capture tests with a reason, and fails them in CI.

Each case runs pytest in a subprocess on a copy of the tests that has no ``../shared`` beside
it, as a user's fresh clone (skips) or a broken CI checkout (``CI=true``: fails) would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
COPIED = ("conftest.py", "shared_dir.py", "test_public_captures.py", "test_tls.py", "tls_kit.py")


def _pytest_without_shared(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    clone = tmp_path / "clone"
    (clone / "tests").mkdir(parents=True)
    for name in COPIED:
        shutil.copy(TESTS / name, clone / "tests" / name)
    shutil.copytree(TESTS.parent / "captures", clone / "captures")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "OAUTH_ANALYZER_SHARED")}
    if ci is not None:
        env["CI"] = ci
    args = ["-q", "-ra", "-p", "no:cacheprovider", "tests/test_public_captures.py"]
    args += ["tests/test_tls.py", "-k", "public or lek"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_shared_skips_naming_the_folder(tmp_path: Path) -> None:
    proc = _pytest_without_shared(tmp_path, ci=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = tmp_path / "shared" / "captures" / "public"
    reason = f"public captures not present: no folder {folder}"
    skips = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all(line.endswith(reason) for line in skips), proc.stdout
    assert "failed" not in proc.stdout.splitlines()[-1]
    assert " skipped" in proc.stdout.splitlines()[-1]


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_missing_shared_fails_under_ci(tmp_path: Path, ci: str) -> None:
    proc = _pytest_without_shared(tmp_path, ci=ci)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    closing = proc.stdout.splitlines()[-1]
    assert "skipped" not in closing and "passed" not in closing
    assert " error" in closing
    message = "CI=true: CI must run with ../shared beside the clone"
    errors = [line for line in proc.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) >= 5 and all(message in line for line in errors), proc.stdout


def test_ci_false_still_skips(tmp_path: Path) -> None:
    proc = _pytest_without_shared(tmp_path, ci="false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SKIPPED" in proc.stdout


def test_env_names_another_shared_folder(tmp_path: Path) -> None:
    shared = tmp_path / "elsewhere"
    (shared / "captures" / "public").mkdir(parents=True)
    code = "import shared_dir; print(shared_dir.PUBLIC); print(shared_dir.missing('x.pcap'))"
    env = {**os.environ, "OAUTH_ANALYZER_SHARED": str(shared)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=TESTS, env=env, capture_output=True, text=True
    ).stdout.splitlines()
    assert out == [
        str(shared / "captures" / "public"),
        f"public captures incomplete: x.pcap missing from {shared / 'captures' / 'public'}",
    ]
