"""Suite-wide hooks: the ``public_captures`` marker (see ``shared_dir.py``)."""

from __future__ import annotations

import pytest
from shared_dir import require_public


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "public_captures(*names): needs ../shared/captures/public (and these files in it); "
        "skips when missing, fails under CI=true",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("public_captures"):
        require_public(*marker.args)
