"""Every input the fuzzing campaign (``bench/fuzz.py``) ever crashed, hung or blew up on.

``tests/fuzz-regressions/`` keeps each such capture (its ``.txt`` sibling holds the traceback
as found); each one runs through the campaign's own pipeline (read as a stream, every table
derived, every text output rendered and encoded) and must come through within a time bound.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDER = Path(__file__).resolve().parent / "fuzz-regressions"
SECONDS = 20.0  # bench/fuzz.py's -timeout: slower is a hang


def _campaign() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fuzz", REPO / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INPUTS = sorted(p for p in FOLDER.iterdir() if p.suffix != ".txt") if FOLDER.is_dir() else []


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_fuzz_regression(path: Path) -> None:
    started = time.monotonic()
    _campaign().run_pipeline(path.read_bytes())
    assert time.monotonic() - started < SECONDS


def test_regressions_are_kept() -> None:
    assert INPUTS, "tests/fuzz-regressions/ holds the campaign's crash inputs"
