"""Record what ``analyze FILE`` writes for every bundled and public capture, as SHA-256 digests.

The engine must not change the batch output by accident: ``tests/test_engine.py`` compares each
run against ``tests/data/batch-digests.json``. When an output changes on purpose (a new field, a
fixed parser), re-record and say why in the commit:

    .venv/bin/python tests/record_batch_digests.py
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from shared_dir import PUBLIC  # noqa: E402

from analyzer.cli import main  # noqa: E402

DIGESTS = HERE / "data" / "batch-digests.json"
#: The outputs compared: the events, and the two listings derived from the whole analysis.
OUTPUTS = {"events": [], "tokens": ["--tokens"], "findings": ["--findings"]}
CAPTURE_SUFFIXES = (".pcap", ".pcapng")


def capture_files() -> dict[str, Path]:
    """Name (as stored in the digest file) -> path, bundled first, then the public ones."""
    out = {}
    bundled = REPO / "captures"
    for path in sorted(bundled.rglob("*")):
        if path.suffix in CAPTURE_SUFFIXES:
            out[str(path.relative_to(REPO))] = path
    if PUBLIC.is_dir():
        for path in sorted(PUBLIC.iterdir()):
            if path.suffix in CAPTURE_SUFFIXES:
                out[f"public/{path.name}"] = path
    return out


def keys_for(path: Path) -> list[str]:
    """The TLS key log beside a capture, when there is one (its TLS is then read too)."""
    for keylog in (path.with_suffix(".keys"), path.with_name("lek__tls-works-premaster.txt")):
        if keylog.exists() and (keylog.suffix == ".keys" or path.name.startswith("lek__")):
            return ["--tls-keylog", str(keylog)]
    return []


def digest(path: Path, extra: list[str]) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["analyze", str(path), "--format", "jsonl", *keys_for(path), *extra])
    assert code == 0, path
    return hashlib.sha256(buf.getvalue().encode()).hexdigest()


def record() -> dict[str, dict[str, str]]:
    return {
        name: {kind: digest(path, extra) for kind, extra in OUTPUTS.items()}
        for name, path in capture_files().items()
    }


if __name__ == "__main__":
    DIGESTS.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")
