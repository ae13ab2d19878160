"""Start-up cost: importing the command line and the pipeline loads no heavy library.

A structural check, not a timing test: each case runs in a fresh interpreter and lists the
top-level packages in ``sys.modules``. cryptography / pyjwt load only when keys are needed
(a key file, or a captured metadata document), pandas / matplotlib / pyarrow only for the
notebook API, charts and parquet, rich only for the terminal table and the progress bar.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"
HEAVY = frozenset({"cryptography", "jwt", "pandas", "matplotlib", "pyarrow", "numpy", "rich"})


def loaded_packages(code: str) -> set[str]:
    """Top-level packages imported after running ``code`` in a new interpreter."""
    report = "import sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_cli_and_engine_loads_no_heavy_library() -> None:
    loaded = loaded_packages("import analyzer, analyzer.cli, analyzer.engine")
    assert "analyzer" in loaded
    assert loaded & HEAVY == set()


def test_jsonl_run_without_keys_loads_no_heavy_library(tmp_path: Path) -> None:
    # classes.pcap holds every auth class, bearer tokens included, but no key document.
    out = tmp_path / "events.jsonl"
    loaded = loaded_packages(
        "from analyzer.cli import main\n"
        f"assert main(['analyze', {str(CAPTURES / 'classes.pcap')!r}, '--format', 'jsonl',"
        f" '-o', {str(out)!r}, '--no-progress']) == 0"
    )
    assert loaded & HEAVY == set()
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["schema_version"] == 1 and first["event_id"] == 1


def test_keys_load_cryptography_when_needed(tmp_path: Path) -> None:
    # The control: a key file, or captured metadata plus signed tokens, do bring them in.
    out = tmp_path / "events.jsonl"
    loaded = loaded_packages(
        "from analyzer.cli import main\n"
        f"assert main(['analyze', {str(CAPTURES / 'small-basic.pcap')!r}, '--format', 'jsonl',"
        f" '--keys', {str(CAPTURES / 'keys' / 'sfb.cert.pem')!r},"
        f" '-o', {str(out)!r}, '--no-progress']) == 0"
    )
    assert "cryptography" in loaded  # pyjwt waits for a signed token to verify
    loaded = loaded_packages(
        "from analyzer.engine import analyze_paths\n"
        f"assert analyze_paths([{str(CAPTURES / 'exchange-sfb.pcap')!r}]).keys > 0"
    )
    assert {"cryptography", "jwt"} <= loaded
    assert loaded & {"pandas", "matplotlib", "pyarrow", "rich"} == set()
