"""Run ``notebooks/walkthrough.ipynb`` in a real kernel of the running interpreter.

Shared by the notebook's own tests and the leak scan, which runs it on another capture by
rewriting the one ``CAPTURE = ...`` line the notebook reads its capture from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
CELL_TIMEOUT = 60  # seconds per cell
CAPTURE_LINE = 'CAPTURE = Path("../captures/exchange-sfb.pcap")'


def kernel_manager() -> KernelManager:
    """A manager for the ``python3`` kernel of the running interpreter.

    Only ipykernel's own spec is considered (no kernel_dirs): a user-level ``python3`` spec
    pointing at another Python must not decide which interpreter runs the notebook.
    """
    specs = KernelSpecManager(kernel_dirs=[])
    assert "python3" in specs.find_kernel_specs()
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    assert manager.kernel_spec is not None
    assert manager.kernel_spec.argv[0] == sys.executable
    return manager


def run_notebook(capture: str | None = None) -> nbformat.NotebookNode:
    """The notebook after a run top to bottom (cwd ``notebooks/``), on ``capture`` if given.

    Raises on the first failing cell.
    """
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if capture is not None:
        first = nb.cells[[c.cell_type for c in nb.cells].index("code")]
        assert CAPTURE_LINE in first.source
        first.source = first.source.replace(CAPTURE_LINE, f"CAPTURE = Path({capture!r})")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPLBACKEND", "Agg")
        # The kernel imports `analyzer` from this checkout even without `pip install -e .`.
        patch.setenv("PYTHONPATH", str(ROOT))
        client = nbclient.NotebookClient(
            nb,
            km=kernel_manager(),
            timeout=CELL_TIMEOUT,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        client.execute(cleanup_kc=True)  # stops the kernel
    return nb
