"""The bundled captures: every scenario, the file format it is written in, and ``generate``, which
writes them all with their expected and truth files.
"""

from __future__ import annotations

from pathlib import Path

from .keys import load_keys
from .scenarios.certificates import build_certificates
from .scenarios.classes import build_classes
from .scenarios.exchange_sfb import build_exchange_sfb
from .scenarios.findings import build_findings
from .scenarios.healthy_oauth import build_healthy
from .scenarios.messy import build_messy
from .scenarios.small_basic import build_small_basic
from .truth import finish
from .writers import write_pcap, write_pcapng


def generate(out_dir: Path) -> dict[str, int]:
    """Write every capture and its JSON files to ``out_dir``; returns events per capture."""
    keys = load_keys()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for cap, writer in (
        (build_exchange_sfb(keys), lambda fr: write_pcap(fr, 1)),
        (build_messy(keys), lambda fr: write_pcapng(fr, [(1, 6, "eth0"), (276, 9, "any")])),
        (build_small_basic(), lambda fr: write_pcap(fr, 0)),
        (build_findings(keys), lambda fr: write_pcap(fr, 1)),
        (build_healthy(keys), lambda fr: write_pcap(fr, 1)),
        (build_classes(), lambda fr: write_pcap(fr, 1)),
        (build_certificates(keys), lambda fr: write_pcap(fr, 1)),
    ):
        expected, truth, frames = finish(cap, keys)
        stem = cap.name.rsplit(".", 1)[0]
        (out_dir / cap.name).write_bytes(writer(frames))
        (out_dir / f"{stem}.expected.json").write_bytes(expected)
        (out_dir / f"{stem}.truth.json").write_bytes(truth)
        counts[cap.name] = len(cap.events)
    return counts
