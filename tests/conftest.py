"""Suite-wide hooks: the ``public_captures`` marker (see ``shared_dir.py``), and empty caches
for every mutant under mutmut."""

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


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under mutmut (``MUTANT_UNDER_TEST`` set) each mutant's tests run in a process forked
    from one that already ran the suite, so the analyzer's memoised results (parsed principals,
    decoded tokens, ...) of the unmutated code would answer instead of the mutant, and it
    would survive. Every cache the analyzer's modules expose (``cache_clear``) starts empty."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    for name, module in list(sys.modules.items()):
        if name != "analyzer" and not name.startswith("analyzer."):
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and not isinstance(value, type):
                clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("public_captures"):
        require_public(*marker.args)
