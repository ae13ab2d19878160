"""The bundled captures, analyzed end to end, give exactly the events their generator knows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.engine import analyze_paths
from analyzer.model import to_dict

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
BUNDLED = ["exchange-sfb.pcap", "messy.pcapng", "small-basic.pcap"]
# Fields the generator cannot know (ids, notes).
NOT_COMPARED = {"extra", "conn_id", "event_id"}


def expected_events(capture: str) -> list[dict]:
    name = capture.rsplit(".", 1)[0]
    return json.loads((CAPTURES / f"{name}.expected.json").read_text())["events"]


def comparable(expected: dict, found: dict) -> tuple[dict, dict]:
    keys = [k for k in expected if k not in NOT_COMPARED]
    extra = expected.get("extra", {})
    # The generator notes what NTLM / Kerberos blobs hold; the decoders put it on the event.
    if "ntlm_user" in extra:
        expected = {**expected, "user": extra["ntlm_user"], "domain": extra["ntlm_domain"]}
        keys += ["workstation"]
        expected["workstation"] = extra["workstation"]
    if "krb_realm" in extra:
        expected = {**expected, "domain": extra["krb_realm"], "spn": extra["krb_sname"]}
        keys += ["spn"]
    return {k: expected[k] for k in keys}, {k: found.get(k) for k in keys}


@pytest.mark.parametrize("capture", BUNDLED)
def test_events_match_the_generator(capture: str) -> None:
    result = analyze_paths([str(CAPTURES / capture)])
    expected = expected_events(capture)
    found = [to_dict(e) for e in result.events]
    for event in found:  # the generator lists challenges as sent, without the decoded view
        for challenge in event["challenges"]:
            challenge.pop("details", None)
    assert len(found) == len(expected)
    for want, got in zip(expected, found, strict=True):
        assert got["ts"] == pytest.approx(want["ts"], abs=1e-6)
        if want.get("response_ts") is not None:
            assert got["response_ts"] == pytest.approx(want["response_ts"], abs=1e-6)
        want.pop("ts"), want.pop("response_ts", None)
        a, b = comparable(want, got)
        assert b == a, want.get("extra")


def test_cli_jsonl_is_the_same_events(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    capture = str(CAPTURES / "exchange-sfb.pcap")
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", capture, "--format", "jsonl", "-o", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == ""
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["cred_fp"] for line in lines] == [e["cred_fp"] for e in expected_events(capture)]
    assert all(line["schema_version"] == 1 for line in lines)


def test_progress_follows_the_file_and_results_do_not_depend_on_it(tmp_path: Path) -> None:
    capture = tmp_path / "bulk.pcap"
    make = Path(__file__).resolve().parents[1] / "bench" / "make_capture.py"
    subprocess.run(
        [sys.executable, str(make), str(capture), "--size-gb", "0.03", "--auth", "40"],
        check=True,
        capture_output=True,
    )
    seen: list[int] = []
    with_progress = analyze_paths([str(capture)], progress=lambda path, n: seen.append(n))
    assert len(seen) >= 3  # every 8 MiB of a ~30 MB file, and at the end
    assert seen == sorted(seen) and seen[-1] == with_progress.captures[0].bytes
    truth = json.loads(capture.with_name("bulk.pcap.truth.json").read_text())
    found = sorted(e.cred_fp for e in with_progress.events if e.scheme != "none")
    assert found == sorted(truth["cred_fps"])
    assert [e.cred_fp for e in analyze_paths([str(capture)]).events] == [
        e.cred_fp for e in with_progress.events
    ]
