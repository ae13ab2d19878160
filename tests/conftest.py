"""Suite-wide hooks: the ``public_captures`` marker (see ``shared_dir.py``), empty caches before
every test under mutmut, the ``parser`` fixture the HAR tests run twice with, and the
``reader`` fixture the capture tests run with both capture readers."""

from __future__ import annotations

import os
import sys

import pytest
from shared_dir import require_public


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "public_captures(*names): needs ../shared/captures/public (and these files in it); "
        "skips when missing, fails under CI=true",
    )


TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(params=["ijson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A HAR read with ijson (streaming) and with the single json.load it falls back to."""
    if request.param == "ijson":
        pytest.importorskip("ijson")
    else:
        monkeypatch.setitem(sys.modules, "ijson", None)
    return request.param


@pytest.fixture(params=["native", "pure-python"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both capture readers: the native walk (when built) and the pure-Python one."""
    if request.param == "pure-python":
        monkeypatch.setenv("OAUTH_ANALYZER_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("OAUTH_ANALYZER_PURE_PYTHON", raising=False)
    return request.param


def _clear_analyzer_caches() -> None:
    """Under mutmut (``MUTANT_UNDER_TEST`` set) the analyzer's memoised results (parsed
    principals, decoded tokens, ...) would answer instead of the code: mutmut's stats run would
    not see which tests reach a function whose result an earlier test cached, and each mutant
    runs in a process forked after the whole suite ran, so the unmutated results would hide it.
    Every cache the analyzer's modules expose (``cache_clear``) is emptied before each test, and
    so is every cache of a test module (an analysis a test module keeps with ``functools.cache``
    would likewise be the unmutated one)."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    for name, module in list(sys.modules.items()):
        in_tests = os.path.dirname(getattr(module, "__file__", None) or "") == TESTS
        if name != "analyzer" and not name.startswith("analyzer.") and not in_tests:
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and not isinstance(value, type):
                clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _clear_analyzer_caches()
    for marker in item.iter_markers("public_captures"):
        require_public(*marker.args)
