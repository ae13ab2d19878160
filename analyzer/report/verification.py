"""Text output of ``oauth-analyzer verify``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import IO

from analyzer.analysis.verify import RuleResult


def write_verification(results: list[RuleResult], verdict: str, out: IO[str]) -> None:
    """One block per rule (result, scope, reason, every violating exchange), then the verdict."""
    for r in results:
        out.write(f"{r.result:<12} {r.rule.name}: {r.rule.describe()}\n")
        out.write(f"             {r.reason}\n")
        for v in r.violations:
            e = v.event
            when = datetime.fromtimestamp(e.ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            out.write(
                f"  {when}  {e.client_ip}:{e.client_port} -> {e.server_ip}:{e.server_port}"
                f" ({e.host or '-'})  {e.auth_class or e.scheme}: {v.reason}"
                f"  [event {e.event_id}]\n"
            )
    out.write(f"{verdict}\n")
