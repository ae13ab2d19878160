"""The user-facing Python examples run and say what they claim.

``notebooks/walkthrough.ipynb`` is executed top to bottom in a real kernel (the running
interpreter, cwd ``notebooks/``) and its outputs checked; every ```` ```python ```` block of
``docs/api.md`` is executed in order (cwd: the repository root) and its printed output compared
with the ```` ```text ```` block that follows it.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from notebook_kit import CAPTURE_LINE, NOTEBOOK, run_notebook  # noqa: E402 (after the skips)

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
NOTEBOOK_BUDGET = 60  # seconds for the whole notebook

#: A ```python block, optionally followed (after one blank line) by the ```text block it prints.
DOC_BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", re.S)


# -- the notebook ----------------------------------------------------------------------------
def _text(cell: dict) -> str:
    """Everything a code cell showed as text: streams and the text/plain of results."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.fixture(scope="module")
def executed() -> tuple[dict, float]:
    """The notebook after a run, and how long the run took."""
    start = time.monotonic()
    nb = run_notebook()
    return nb, time.monotonic() - start


def test_notebook_is_saved_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 15
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_notebook_takes_its_capture_from_one_variable() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0].splitlines()[-1] == CAPTURE_LINE
    assert not [c for c in code[1:] if ".pcap" in c or "captures/" in c]


def test_setup_has_a_notebook_job() -> None:
    setup = (ROOT / "setup.sh").read_text()
    assert "notebook)" in setup and "pip_install -e '.[notebook]'" in setup
    assert "jupyter lab" in setup and "notebooks/walkthrough.ipynb" in setup
    assert "--allow-root --no-browser" in setup


def test_notebook_runs_clean_within_budget(executed) -> None:
    nb, seconds = executed
    assert seconds < NOTEBOOK_BUDGET
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count == i for i, c in enumerate(code, 1))
    for cell in code:
        for output in cell.outputs:
            assert output["output_type"] != "error", cell.source
            if output["output_type"] == "stream":
                assert output["name"] == "stdout", output["text"]


def test_notebook_tells_the_sfb_story(executed) -> None:
    nb, _ = executed
    out = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    # 1. the capture was read
    assert "exchange-sfb.pcap: 136 packets, 8 TCP connections, 8 HTTP, 0 TLS (unreadable)" in out
    assert "events      15 rows" in out and "tokens      11 rows" in out
    # 3. the S2S calls and who issued their tokens
    assert "event  4: empty Bearer (realm discovery), answered 401" in out
    assert (
        "event  5: token issued by Skype for Business / Lync for alice.johnson@contoso.com "
        "-> Exchange (mail.contoso.com); Exchange answered 200"
    ) in out
    assert (
        "event  8: token issued by Skype for Business / Lync for alice.johnson@contoso.com "
        "-> Exchange (mail.contoso.com); Exchange answered 401 (token_expired)"
    ) in out
    assert "event 10: NTLM (no token), Exchange answered 200" in out
    # 4. the pair verdict
    assert "10.1.0.20 -> mail.contoso.com (10.1.0.10:80): oauth-with-fallback" in out
    assert (
        "at 09:00:06 UTC: OAuth rejected (token_expired, x-ms-diagnostics 2000002) "
        "and the client fell back to NTLM"
    ) in out
    assert "10.1.0.50 -> mail.contoso.com (10.1.0.10:80): no-oauth" in out
    # 5. the decoded claims of the rejected token and its actor
    assert "outer token 9ceea6443a88 jwt-unsigned flags: ['expired', 'actor-expired']" in out
    assert '"upn": "alice.johnson@contoso.com"' in out
    assert '"actortoken": "<actor token fp=7491a62b9831>"' in out
    assert "actor token 7491a62b9831 jwt RS256 signature: verified" in out
    assert "valid 2026-02-27 09:00:00+00:00 .. 2026-02-28 09:00:00+00:00" in out
    # 6. findings
    assert "[high] Token used after it expired: token 9ceea6443a88" in out
    assert "[medium] OAuth rejected, then another scheme accepted" in out
    # 8. verify
    assert "FAIL         SfB pool -> Exchange: from 10.1.0.20/32; to mail.contoso.com" in out
    assert "3 of 6 exchanges break the rule" in out
    assert out.rstrip().endswith("FAIL")


def test_notebook_draws_both_charts(executed) -> None:
    nb, _ = executed
    images = [
        o["data"]["image/png"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "data" in o and "image/png" in o["data"]
    ]
    assert len(images) == 2
    assert all(image.startswith("iVBORw0KGgo") for image in images)  # base64 of the PNG magic


def test_notebook_tables_render(executed) -> None:
    nb, _ = executed
    tables = [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "data" in o and "text/html" in o["data"]
    ]
    assert len(tables) == 5  # events, S2S events, handshakes, tokens, findings
    assert all("<table" in t for t in tables)
    assert "/metadata/jason/1" in tables[0]
    assert "Skype for Business / Lync" in tables[1]
    assert "token_expired" in tables[2]


# -- docs/api.md -----------------------------------------------------------------------------
def test_api_doc_examples_print_what_the_doc_shows(monkeypatch, tmp_path: Path) -> None:
    blocks = DOC_BLOCK.findall(API_DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 13
    assert all(expected for _, expected in blocks), "every example shows its output"
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the export example's mkdtemp()
    namespace: dict = {"__name__": "api_doc"}
    for number, (source, expected) in enumerate(blocks, 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(source, f"docs/api.md python block {number}", "exec"), namespace)
        assert printed.getvalue() == expected, f"python block {number}"
