"""The ``oauth-analyzer`` command line.

Only what ``analyze`` needs is imported up front; each other command and output format imports
its own modules (``verify``'s rules, ``decode``'s explainer, the tables, rich, pandas) when used,
so a JSON Lines run starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import IO

from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import Event, Finding, TokenRecord
from analyzer.oauth.keys import KeyFileError, KeyStore
from analyzer.report.export import write_csv, write_jsonl
from analyzer.sources.pcapfile import CaptureError

PROG = "oauth-analyzer"
PROGRESS_MIN_BYTES = 32 << 20  # show a progress bar only for captures bigger than this
USAGE_VERIFY = 3  # verify's exit status for bad usage or unreadable input


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find authentication exchanges in packet captures and decode their tokens.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    analyze = sub.add_parser(
        "analyze", help="list every auth exchange in one or more captures (pcap, pcapng, gzip)"
    )
    analyze.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="capture files; '-' reads pcap/pcapng from standard input as it arrives "
        "(e.g. tcpdump -U -w - | oauth-analyzer analyze -), printing each event when it completes",
    )
    analyze.add_argument(
        "--format",
        choices=("table", "jsonl", "csv", "parquet"),
        default="table",
        help="output format (parquet: one file per table in the folder given with -o)",
    )
    analyze.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    analyze.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="include full credentials and tokens in jsonl/csv output (off by default)",
    )
    analyze.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar on stderr"
    )
    listing = analyze.add_mutually_exclusive_group()
    listing.add_argument(
        "--tokens",
        action="store_true",
        help="list the distinct tokens (decoded, checked, verified) instead of the events",
    )
    listing.add_argument(
        "--findings", action="store_true", help="list the findings alone, with explanations"
    )
    analyze.add_argument(
        "--charts", metavar="DIR", help="also draw the charts as PNG and SVG files in DIR"
    )
    _keys_option(analyze)
    _tls_option(analyze)

    report = sub.add_parser(
        "report", help="write one self-contained HTML report (verdict, findings, charts, tables)"
    )
    report.add_argument("captures", nargs="+", metavar="CAPTURE")
    report.add_argument(
        "-o", "--output", metavar="PATH", default="report.html", help="default: report.html"
    )
    report.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="include full credentials and tokens in the report (off by default)",
    )
    report.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar on stderr"
    )
    _keys_option(report)
    _tls_option(report)

    verify = sub.add_parser(
        "verify",
        help="check that every authenticated exchange in scope used OAuth "
        "(exit 0 PASS, 1 FAIL, 2 INCONCLUSIVE, 3 bad usage)",
        description="PASS only when every authenticated exchange in scope used OAuth as the "
        "rule says and nothing in scope went unread; FAIL lists what broke the rule; "
        "INCONCLUSIVE when nothing in scope could be inspected, or traffic in scope could not "
        "be read (undecrypted TLS, lost request bytes) and --partial was not given. Every list "
        "option takes comma-separated values.",
    )
    verify.add_argument("captures", nargs="+", metavar="CAPTURE")
    add_scope_options(verify)
    verify.add_argument(
        "--issuer",
        help="accepted token issuers: app id, product (skype, exchange, acs, sharepoint, ...), "
        "or <id>[/<host>]@<realm> as tokens print them (list)",
    )
    verify.add_argument("--realm", help="accepted realms, e.g. contoso.com or a tenant id (list)")
    verify.add_argument(
        "--protocol",
        help="protocols to judge: http (the default), sip, or both (list); Skype for Business "
        "users rightly sign in to SIP with NTLM, Kerberos or TLS-DSK, so SIP is judged only here",
    )
    verify.add_argument(
        "--require-signature", action="store_true", help="require a verified token signature"
    )
    verify.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="FINDING-ID",
        help="relax one credential rule on purpose (repeatable): unsigned-token, bad-signature, "
        "token-expired-use, token-not-yet-valid, token-exp-before-nbf, untrusted-issuer",
    )
    verify.add_argument(
        "--partial",
        action="store_true",
        help="judge what was inspected even when traffic in scope could not be read",
    )
    verify.add_argument(
        "--details", action="store_true", help="list every violating exchange, not just counts"
    )
    verify.add_argument("--policy", metavar="FILE.toml", help="several rules ([[rule]] tables)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument("--scheme", help=argparse.SUPPRESS)  # refused: see _verify
    _keys_option(verify)
    _tls_option(verify)

    live = sub.add_parser(
        "live",
        help="sniff interfaces and print each auth exchange as it completes (Ctrl-C ends)",
        description="Capture from network interfaces (dumpcap when installed, else scapy's raw "
        "sockets) and print each authentication exchange the moment it completes, with a status "
        "line on a terminal; on stop (--duration, --count, Ctrl-C, SIGTERM) print the summary, "
        "verdicts and findings, with the packets the capture dropped. With --verify, print each "
        "exchange that breaks the rule as it completes and exit with verify's status. The scope "
        "options (--client ... --until) narrow the rows, or with --verify the rule, as in "
        "verify; the closing summary covers everything captured.",
    )
    live.add_argument(
        "-i",
        "--interface",
        action="append",
        default=[],
        metavar="IFACE",
        help="interface to capture on (repeatable; 'any' for all; default: any)",
    )
    live.add_argument("--bpf", metavar="EXPR", help="kernel capture filter, e.g. 'tcp port 80'")
    live.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    live.add_argument("--count", type=_positive_int, metavar="N", help="stop after about N packets")
    live.add_argument(
        "--write", metavar="FILE.pcapng", help="also keep what was captured, for a later analyze"
    )
    live.add_argument(
        "--ring",
        type=_ring,
        metavar="N:MB",
        help="with --write: keep at most N files of MB megabytes each",
    )
    live.add_argument(
        "--engine",
        choices=("dumpcap", "scapy"),
        help="capture engine (default: dumpcap when installed, else scapy)",
    )
    live.add_argument(
        "--format", choices=("table", "jsonl", "csv"), default="table", help="event rows"
    )
    live.add_argument("-o", "--output", metavar="PATH", help="write the event rows here")
    live.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="include full credentials and tokens in jsonl/csv rows (off by default)",
    )
    live.add_argument(
        "--verify",
        action="store_true",
        help="judge each exchange as verify does (the same rule options) and exit with "
        "verify's status: 0 PASS, 1 FAIL, 2 INCONCLUSIVE, 3 bad usage",
    )
    add_scope_options(live)
    live.add_argument("--issuer", help="with --verify: accepted token issuers (list)")
    live.add_argument("--realm", help="with --verify: accepted realms (list)")
    live.add_argument(
        "--require-signature", action="store_true", help="with --verify: require a signature"
    )
    live.add_argument(
        "--allow", action="append", default=[], metavar="FINDING-ID", help="with --verify"
    )
    live.add_argument("--partial", action="store_true", help="with --verify")
    live.add_argument("--details", action="store_true", help="with --verify")
    live.add_argument("--policy", metavar="FILE.toml", help="with --verify: several rules")
    live.add_argument("--json", action="store_true", help="with --verify: JSON lines and answer")
    _tls_option(live)
    live.add_argument(
        "--scheme",
        help="without --verify: rows of these schemes or classes only (list); --verify refuses "
        "it, as verify does",
    )
    _keys_option(live)

    decode = sub.add_parser(
        "decode",
        help="explain one token or x-ms-diagnostics value, verdict first "
        "(exit 0 OK, 1 PROBLEM, 2 bad input)",
        description="Explain one pasted token, verdict first: OK or PROBLEM in one line, then "
        "the layers, principals, times, signature and checks. Accepts a bare token, 'Bearer "
        "<token>', an Authorization header line, a whole request head (Authorization / "
        "Proxy-Authorization header or access_token in the query), or an x-ms-diagnostics "
        "value.",
        epilog="Exit status: 0 when every check passes; 1 when one fails (a failed token "
        "check, expired or not yet valid at --at, a bad signature, a signing key not among "
        "--keys, an unsigned token that is not an S2S outer token with a signed actor, an "
        "expired signing certificate, a token nothing can check offline, or any "
        "x-ms-diagnostics value); 2 on bad input (no token, unreadable @FILE or key file, "
        "bad --at, a non-bearer credential). Without --keys the signature is not checked "
        "and the verdict says which metadata document would check it.",
    )
    decode.add_argument(
        "token",
        nargs="?",
        default="-",
        metavar="TOKEN",
        help="the token, 'Bearer <token>', a header line, a request head or an x-ms-diagnostics "
        "value; @FILE reads it from FILE; '-' or nothing reads stdin",
    )
    decode.add_argument("--json", action="store_true", help="machine-readable output")
    decode.add_argument(
        "--at",
        metavar="TIME",
        help="check nbf/exp and certificates at this time (epoch seconds or ISO 8601; "
        "default: now)",
    )
    decode.add_argument(
        "--host",
        help="the Host the token was sent to (audience host check; default: the Host header "
        "of a pasted request)",
    )
    decode.add_argument(
        "--reveal-secrets", action="store_true", help="also print the token text itself"
    )
    _keys_option(decode)
    return parser


#: The scope filters, the same in every command that takes them (``analysis.scope``).
SCOPE_OPTIONS = (
    ("--client", "client addresses or networks"),
    ("--server", "servers: host, host:port, ip, ip:port, [v6]:port, network or URL"),
    ("--host", "Host header or TLS server name"),
    ("--path", "URI path prefixes, case-insensitive (e.g. /EWS/)"),
    ("--user", "user or token subject (user@domain, DOMAIN\\user)"),
    ("--since", "from this time (ISO 8601 or epoch seconds)"),
    ("--until", "up to this time (ISO 8601 or epoch seconds)"),
)


def add_scope_options(parser: argparse.ArgumentParser) -> None:
    for flag, text in SCOPE_OPTIONS:
        parser.add_argument(
            flag, help=text + (" (list)" if flag not in ("--since", "--until") else "")
        )


def scope_values(args: argparse.Namespace) -> dict[str, str]:
    """The scope options that were given, by name, for ``analysis.scope.make_scope``."""
    names = (flag[2:] for flag, _ in SCOPE_OPTIONS)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number")
    return int(text)


def _ring(text: str) -> tuple[int, float]:
    """``N:MB`` -> (files, megabytes per file)."""
    files, _, size = text.partition(":")
    try:
        n, mb = int(files), float(size)
    except ValueError:
        n, mb = 0, 0.0
    if n < 1 or not mb > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N:MB, e.g. 10:100")
    return n, mb


def _keys_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys",
        action="append",
        default=[],
        metavar="PATH",
        help="signing keys to verify with: PEM/DER/CER certificate, JWKS or metadata JSON "
        "(repeatable)",
    )


def _tls_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-keylog",
        metavar="PATH",
        help="decrypt TLS with tshark: an SSLKEYLOGFILE / NSS key log, or the server's PEM RSA "
        "private key (RSA key exchange only)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2 and argv[:1] == ["verify"]:
            return USAGE_VERIFY  # verify keeps 2 for INCONCLUSIVE
        raise
    if args.command == "verify":
        return _verify(args)
    if args.command == "live":
        from analyzer.stream_commands import live

        return live(args)
    try:
        if args.command == "decode":
            return _decode(args)
        if args.command == "report":
            return _report(args)
        return _analyze(args)
    except (CaptureError, KeyFileError) as exc:
        _error(str(exc))
        return 2
    except OSError as exc:
        _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return 2
    except KeyboardInterrupt:
        return 130


def _check_inputs(captures: list[str], key_files: list[str]) -> None:
    """Fail before a long read: a missing capture (CaptureError) or unusable key file."""
    for path in captures:
        if not os.path.exists(path):
            raise CaptureError(f"{path}: no such file")
    for path in key_files:
        KeyStore().add_file(path)  # raises KeyFileError


def _analyze(args: argparse.Namespace) -> int:
    if args.format == "parquet" and not args.output:
        _error("--format parquet writes one file per table: give the folder with -o DIR")
        return 2
    if "-" in args.captures:
        from analyzer.stream_commands import analyze_stdin

        return analyze_stdin(args)
    _check_inputs(args.captures, args.keys)
    result = _run_with_progress(
        args.captures,
        show=not args.no_progress,
        key_files=args.keys,
        reveal=args.reveal_secrets,
        tls_keylog=args.tls_keylog,
    )
    if args.charts:
        from analyzer.api import Analysis
        from analyzer.report.charts import save_charts

        written = save_charts(Analysis(result), args.charts)
        print(f"{PROG}: wrote {len(written)} chart files to {args.charts}", file=sys.stderr)
    if args.format == "parquet":
        from analyzer.api import Analysis

        for path in Analysis(result, reveal_secrets=args.reveal_secrets).to_parquet(args.output):
            print(path)
        return 0
    with ExitStack() as stack:
        out: IO[str] = sys.stdout
        if args.output:
            out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
        try:
            _write(result, args, out)
            out.flush()
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away: not an error for us.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return 0


def _write(result: AnalysisResult, args: argparse.Namespace, out: IO[str]) -> None:
    records = result.tokens if args.tokens else result.findings if args.findings else result.events
    if args.format == "jsonl":
        write_jsonl(records, out, reveal_secrets=args.reveal_secrets)
    elif args.format == "csv":
        kind = TokenRecord if args.tokens else Finding if args.findings else Event
        write_csv(records, out, kind, reveal_secrets=args.reveal_secrets)
    else:
        from analyzer.report.table import write_findings, write_table, write_tokens

        if args.tokens:
            write_tokens(result.tokens, out)
        elif args.findings:
            write_findings(result.findings, out, explain=True)
        elif out.isatty():
            from analyzer.report.terminal import write_rich

            write_rich(
                result.events,
                result.captures,
                result.verdicts,
                result.findings,
                out,
                result.not_inspected,
            )
        else:
            write_table(
                result.events,
                result.captures,
                out,
                result.verdicts,
                result.findings,
                result.not_inspected,
            )


def _report(args: argparse.Namespace) -> int:
    _check_inputs(args.captures, args.keys)
    result = _run_with_progress(
        args.captures,
        show=not args.no_progress,
        key_files=args.keys,
        reveal=args.reveal_secrets,
        tls_keylog=args.tls_keylog,
    )
    from analyzer.api import Analysis
    from analyzer.report.html import write_html

    analysis = Analysis(result, reveal_secrets=args.reveal_secrets)
    print(write_html(analysis, args.output, reveal_secrets=args.reveal_secrets))
    return 0


def _decode(args: argparse.Namespace) -> int:
    """``decode``: verdict first; exit 0 OK, 1 PROBLEM, 2 bad input (see the parser's epilog)."""
    from analyzer.report.decode_command import DecodeInputError, pasted_input, run_decode

    try:
        pasted, diagnostics = pasted_input(args.token)
    except DecodeInputError as exc:
        _error(str(exc))
        return 2
    store = KeyStore()
    for path in args.keys:
        store.add_file(path)
    at, label = _when(args.at)
    if at is None:
        _error(f"--at {args.at!r}: not epoch seconds or an ISO 8601 time")
        return 2
    return run_decode(
        pasted,
        diagnostics,
        store,
        at=at,
        at_label=label,
        at_given=args.at is not None,
        host=args.host,
        as_json=args.json,
        reveal_secrets=args.reveal_secrets,
    )


def _verify(args: argparse.Namespace) -> int:
    from analyzer.analysis.verify import PolicyError, evaluate

    rules = _verify_rules(args)
    if isinstance(rules, int):
        return rules
    try:
        _check_inputs(args.captures, args.keys)
        result = analyze_paths(args.captures, key_files=args.keys, tls_keylog=args.tls_keylog)
    except (PolicyError, CaptureError, KeyFileError) as exc:
        _error(str(exc))
        return USAGE_VERIFY
    except OSError as exc:
        _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return USAGE_VERIFY
    results = [
        evaluate(rule, result.events, result.captures, result.not_inspected) for rule in rules
    ]
    return _verification(results, args)


def _verify_rules(args: argparse.Namespace) -> list | int:
    """The rules ``verify`` (or ``live --verify``) judges by, or its exit status for bad usage
    (after one error line)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    from analyzer.analysis.verify import PolicyError, make_rule, rules_from_policy

    if args.scheme is not None:
        _error(
            "verify does not take --scheme: filtering by scheme would hide the very fallbacks "
            "(NTLM, Kerberos, Basic) it exists to find"
        )
        return USAGE_VERIFY
    rule_options = {
        **scope_values(args),
        **{k: v for k, v in (("issuer", args.issuer), ("realm", args.realm)) if v is not None},
        **({"protocol": args.protocol} if getattr(args, "protocol", None) else {}),
    }
    try:
        if args.policy:
            if rule_options or args.require_signature:
                raise PolicyError(
                    "give the rule on the command line or in --policy, not both (only --allow "
                    "and --partial apply to every rule of a policy)"
                )
            with open(args.policy, "rb") as fh:
                return rules_from_policy(tomllib.load(fh), args.allow, args.partial)
        return [
            make_rule(
                name="command line",
                require_signature=args.require_signature,
                allow=args.allow,
                partial=args.partial,
                **rule_options,
            )
        ]
    except (PolicyError, tomllib.TOMLDecodeError) as exc:
        _error(str(exc))
    except OSError as exc:
        _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    return USAGE_VERIFY


def _verification(results: list, args: argparse.Namespace) -> int:
    """Print verify's answer (text, or JSON with --json) and return its exit status."""
    import json

    from analyzer.analysis.verify import FAIL, INCONCLUSIVE, PASS, overall, warnings
    from analyzer.report.verification import write_verification

    verdict = overall(results)
    if args.json:
        data = {
            "result": verdict,
            "warnings": warnings(results),
            "rules": [r.to_dict() for r in results],
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        try:
            write_verification(results, verdict, sys.stdout, details=args.details)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader (e.g. `| head`) went away: the exit code stands
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return {PASS: 0, FAIL: 1, INCONCLUSIVE: 2}[verdict]


def _when(value: str | None) -> tuple[float | None, str]:
    """(epoch seconds, how it was chosen) for ``--at``; None when unparseable."""
    import time
    from datetime import datetime, timezone

    if value is None:
        return time.time(), "now: pass --at to check at the time the token was captured"
    try:
        return float(value), "as given"
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None, ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp(), "as given"


def _run_with_progress(
    paths: list[str], show: bool, key_files: list[str], reveal: bool, tls_keylog: str | None = None
) -> AnalysisResult:
    total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    if not (show and sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES):
        return analyze_paths(
            paths, key_files=key_files, reveal_secrets=reveal, tls_keylog=tls_keylog
        )
    from rich.progress import BarColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    done_before: dict[str, int] = {}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "[progress.percentage]{task.percentage:>3.0f}%",
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=None,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=total)

        def progress(path: str, nbytes: int) -> None:
            done_before[path] = nbytes
            bar.update(task, completed=sum(done_before.values()), description=_name(path))

        return analyze_paths(
            paths,
            key_files=key_files,
            reveal_secrets=reveal,
            progress=progress,
            tls_keylog=tls_keylog,
        )


def _name(path: str) -> str:
    return os.path.basename(path)[:30]


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
