"""The ``oauth-analyzer`` command line.

Only what ``analyze`` needs is imported up front; each other command and output format imports
its own modules (``verify``'s rules, ``decode``'s explainer, the tables, rich, pandas) when used,
so a JSON Lines run starts fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import IO

from analyzer.engine import AnalysisResult, Engine
from analyzer.oauth.keys import KeyFileError, KeyStore
from analyzer.report.export import write_csv, write_jsonl
from analyzer.report.progress import Stages
from analyzer.sources.pcapfile import CaptureError

PROG = "oauth-analyzer"
USAGE_VERIFY = 3  # verify's exit status for bad usage or unreadable input
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
#: ``--table`` names: the tables of ``analyzer.api.Analysis``, and the credentials view.
TABLES = (
    "events", "handshakes", "tokens", "findings", "verdicts", "tls", "not_inspected",
    "credentials",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find authentication exchanges in packet captures and decode their tokens.",
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    analyze = sub.add_parser(
        "analyze",
        help="list every auth exchange in one or more inputs: captures (pcap, pcapng, gzip, and "
        "any format tshark reads, e.g. Network Monitor .cap), Fiddler .saz, browser .har",
    )
    analyze.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="capture files, Fiddler session archives (.saz) or HTTP archives (.har), read as one "
        "timeline; '-' reads pcap/pcapng from standard input as it arrives "
        "(e.g. tcpdump -U -w - | oauth-analyzer analyze -), printing each event when it completes",
    )
    analyze.add_argument(
        "--format",
        choices=("table", "jsonl", "csv", "parquet"),
        default="table",
        help="output format (parquet: -o DIR writes a dataset per table, partitioned by date "
        "and input; -o FILE.parquet writes the chosen table to one file)",
    )
    analyze.add_argument(
        "-o", "--output", metavar="PATH", help="write here instead of stdout (FILE.xlsx: Excel)"
    )
    analyze.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="show full credentials, tokens and Basic passwords in every output (off by default)",
    )
    analyze.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar on stderr"
    )
    listing = analyze.add_mutually_exclusive_group()
    listing.add_argument(
        "--table",
        choices=TABLES,
        help="which records to write (default: events; jsonl, csv and table)",
    )
    listing.add_argument(
        "--tokens",
        action="store_true",
        help="list the distinct tokens (decoded, checked, verified): --table tokens",
    )
    listing.add_argument(
        "--findings", action="store_true", help="list the findings alone, with explanations"
    )
    listing.add_argument(
        "--credentials",
        action="store_true",
        help="one row per distinct credential: scheme, user or issuer, first and last seen, "
        "clients, servers, outcomes",
    )
    analyze.add_argument(
        "--excel",
        action="store_true",
        help="for Excel: a CSV with a byte order mark, or with -o FILE.xlsx one sheet per table",
    )
    analyze.add_argument(
        "-q", "--summary", action="store_true", help="inputs, pairs, verdicts and findings only"
    )
    analyze.add_argument(
        "--wide", action="store_true", help="do not fit the table to 160 columns or the terminal"
    )
    analyze.add_argument(
        "--no-pager", action="store_true", help="never page long output on a terminal"
    )
    analyze.add_argument(
        "--charts", metavar="DIR", help="also draw the charts as PNG and SVG files in DIR"
    )
    analyze.add_argument(
        "--crosscheck",
        action="store_true",
        help="also have tshark (through pyshark) list each file's HTTP/1.x Authorization "
        "headers and say, on standard error, which no event holds (slow: Wireshark dissects "
        "every packet)",
    )
    add_scope_options(analyze, scheme=True)
    _keys_option(analyze)
    _tls_option(analyze)
    _wire_options(analyze)

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
    add_scope_options(report, scheme=True)
    _keys_option(report)
    _tls_option(report)
    _wire_options(report)

    verify = sub.add_parser(
        "verify",
        help="check that every authenticated exchange in scope used OAuth "
        "(exit 0 PASS, 1 FAIL, 2 INCONCLUSIVE, 3 bad usage)",
        description="PASS only when every authenticated exchange in scope used OAuth as the "
        "rule says and nothing in scope went unread; FAIL lists what broke the rule; "
        "INCONCLUSIVE when nothing in scope could be inspected, or traffic in scope could not "
        "be read (undecrypted TLS, lost request bytes) and --partial was not given. Every list "
        "option takes comma-separated values, and given again adds its values.",
    )
    verify.add_argument("captures", nargs="+", metavar="CAPTURE")
    add_scope_options(verify)
    verify.add_argument(
        "--issuer",
        action=_Union,
        help="accepted token issuers: app id, product (skype, exchange, acs, sharepoint, ...), "
        f"or <id>[/<host>]@<realm> as tokens print them {LIST}",
    )
    verify.add_argument(
        "--realm", action=_Union, help=f"accepted realms, e.g. contoso.com or a tenant id {LIST}"
    )
    verify.add_argument(
        "--protocol",
        action=_Union,
        help=f"protocols to judge: http (the default), sip, or both {LIST}; Skype for Business "
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
    verify.add_argument(
        "--policy", action=_Once, metavar="FILE.toml", help="several rules ([[rule]] tables)"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar on stderr"
    )
    verify.add_argument("--scheme", action=_Union, help=argparse.SUPPRESS)  # refused: _verify
    _keys_option(verify)
    _tls_option(verify)
    _wire_options(verify)

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
        "verify's status: 0 PASS, 1 FAIL, 2 INCONCLUSIVE, 3 bad usage or a run that could "
        "not finish",
    )
    add_scope_options(live)
    live.add_argument(
        "--issuer", action=_Union, help=f"with --verify: accepted token issuers {LIST}"
    )
    live.add_argument("--realm", action=_Union, help=f"with --verify: accepted realms {LIST}")
    live.add_argument(
        "--protocol",
        action=_Union,
        help=f"with --verify: protocols to judge: http (the default), sip, or both {LIST}",
    )
    live.add_argument(
        "--require-signature", action="store_true", help="with --verify: require a signature"
    )
    live.add_argument(
        "--allow", action="append", default=[], metavar="FINDING-ID", help="with --verify"
    )
    live.add_argument("--partial", action="store_true", help="with --verify")
    live.add_argument("--details", action="store_true", help="with --verify")
    live.add_argument(
        "--policy", action=_Once, metavar="FILE.toml", help="with --verify: several rules"
    )
    live.add_argument("--json", action="store_true", help="with --verify: JSON lines and answer")
    _tls_option(live)
    _wire_options(live, jobs=False)
    live.add_argument(
        "--scheme",
        action=_Union,
        help=f"without --verify: rows of these schemes or classes only {LIST}; --verify refuses "
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

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script: source <(oauth-analyzer completion bash), or "
        "save it as _oauth-analyzer on zsh's fpath.",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    return parser


#: How a list option's help ends: a value holds several, and the option may come back.
LIST = "(list; repeatable)"
#: The scope filters, the same in every command that takes them (``analysis.scope``).
SCOPE_OPTIONS = (
    ("--client", "client addresses or networks"),
    ("--server", "servers: host, host:port, ip, ip:port, [v6]:port, network or URL"),
    ("--host", "Host header, TLS server name or SIP domain, exactly (no wildcards)"),
    (
        "--path",
        "URI path prefixes, case-insensitive (e.g. /EWS/; no wildcards); HTTP only: SIP "
        "exchanges (no path) are not narrowed by it",
    ),
    ("--user", "user or token subject (user@domain, DOMAIN\\user)"),
    ("--since", "from this time: ISO 8601, epoch seconds, or an offset into the capture (+30s)"),
    ("--until", "up to this time: ISO 8601, epoch seconds, or an offset into the capture (+5m)"),
)
#: The scope filters that take one value (given twice: a usage error, not the last one).
SINGLE_SCOPE_OPTIONS = ("--since", "--until")
SCHEME_HELP = f"exchanges of these credential schemes or auth classes only {LIST}; e.g. ntlm,basic"


def add_scope_options(parser: argparse.ArgumentParser, scheme: bool = False) -> None:
    """The scope options; ``scheme`` adds ``--scheme`` (never to verify: see ``_verify_rules``)."""
    for flag, text in SCOPE_OPTIONS:
        if flag in SINGLE_SCOPE_OPTIONS:
            parser.add_argument(flag, action=_Once, help=text)
        else:
            parser.add_argument(flag, action=_Union, help=f"{text} {LIST}")
    if scheme:
        parser.add_argument("--scheme", action=_Union, help=SCHEME_HELP)


class _Repeated(argparse.Action):
    """An option whose value, given again, is ``combined`` with the one before."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if given is None else self.combined(given, values))

    def combined(self, given: object, values: object) -> object:
        raise NotImplementedError


class _Union(_Repeated):
    """A list option given more than once means all of its values: ``--server a --server b``
    is ``--server a,b`` (argparse's default keeps the last alone, and a verdict over the
    narrower scope could PASS)."""

    repeatable = True  # for the shell completion (``completion._repeatable``)

    def combined(self, given: object, values: object) -> str:
        return f"{given},{values}"


class _Once(_Repeated):
    """An option that takes one value: given twice, a usage error (not the last one alone)."""

    def combined(self, given: object, values: object) -> object:
        raise argparse.ArgumentError(self, "given more than once (it takes one value)")


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


def _wire_options(parser: argparse.ArgumentParser, jobs: bool = True) -> None:
    """Options about reading the wire, the same in every command that reads captures."""
    parser.add_argument(
        "--vxlan-port",
        action="append",
        type=_port,
        default=[],
        metavar="PORT",
        help="also read UDP PORT as VXLAN (4789 and 8472 always are; repeatable)",
    )
    if jobs:
        parser.add_argument(
            "--jobs",
            type=_positive_int,
            default=_default_jobs(),
            metavar="N",
            help="processes to read captures of 64 MB or more with, split by connection "
            "(default: the cores, here %(default)s); the output is the same for any N",
        )
        parser.add_argument(
            "--dask",
            metavar="ADDRESS",
            default=os.environ.get("DASK_SCHEDULER_ADDRESS") or None,
            help="read the inputs on the Dask cluster of this scheduler (tcp://host:8786; "
            "default: $DASK_SCHEDULER_ADDRESS): one task per file or ring-buffer chain, the "
            "workers open the paths or URLs (s3://, gs://, file://) themselves",
        )


def _default_jobs() -> int:
    from analyzer.parallel import default_jobs

    return default_jobs()


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a UDP port (1-65535)")
    return int(text)


def _tls_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-keylog",
        metavar="PATH",
        help="decrypt TLS with tshark: an SSLKEYLOGFILE / NSS key log, or the server's PEM RSA "
        "private key (RSA key exchange only)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2 and (
            argv[:1] == ["verify"] or (argv[:1] == ["live"] and "--verify" in argv)
        ):
            return USAGE_VERIFY  # verify (live --verify too) keeps 2 for INCONCLUSIVE
        raise
    if args.command == "completion":
        from analyzer.completion import bash_script, zsh_script

        script = bash_script if args.shell == "bash" else zsh_script
        sys.stdout.write(script(parser, PROG))
        return 0
    # verify keeps 2 for INCONCLUSIVE: a run of it (live --verify too) that could not finish
    # exits 3, never with a verdict's status
    failed = USAGE_VERIFY if args.command == "verify" or getattr(args, "verify", False) else 2
    try:
        if args.command == "live":
            from analyzer.stream_commands import live

            return live(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "decode":
            return _decode(args)
        if args.command == "report":
            return _report(args)
        return _analyze(args)
    except _usage_errors() as exc:
        _error(str(exc))
        return failed
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return _reader_gone()
        _error(os_error_text(exc))
        return failed
    except KeyboardInterrupt:
        packets = sum(c.packets for engine in _ENGINES for c in engine.captures)
        print(
            f"{PROG}: interrupted after {packets:,} packets; partial results not written",
            file=sys.stderr,
        )
        return INTERRUPTED
    except MemoryError:
        # said once the exception (whose frames hold what was read) is gone: see below
        out_of_memory = sum(c.packets for engine in _ENGINES for c in engine.captures)
    finally:
        _ENGINES.clear()  # what they read belongs to this command: a caller of main keeps none
    _error(
        f"out of memory after {out_of_memory:,} packets: stopped, the results are not complete. "
        "Narrow what is kept "
        "(--since/--until, --client, --server), or write events as they are read "
        "(analyze --format jsonl -o FILE)"
    )
    return failed


def _usage_errors() -> tuple[type[Exception], ...]:
    """The errors that are one line for the user (evaluated only when something was raised,
    so a run that succeeds never imports the modules that define them)."""
    from analyzer.analysis.scope import ScopeError
    from analyzer.report.outputs import OutputError

    return (CaptureError, KeyFileError, OutputError, ScopeError)


class _Version(argparse.Action):
    """``--version``: looked up only when asked (reading package metadata costs a start-up)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


#: The engines the running command started: an interrupted command says how far they read.
_ENGINES: list[Engine] = []


def os_error_text(exc: OSError) -> str:
    """One line for an OSError: ``path: reason`` (or the reason alone)."""
    return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")


def _reader_gone() -> int:
    """The reader of our output (e.g. ``| head``) went away: not an error, nothing to say."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def _check_inputs(captures: list[str], key_files: list[str], remote: bool = False) -> None:
    """Fail before a long read: a missing capture (CaptureError) or unusable key file.
    ``remote``: the inputs are opened by Dask workers, which report the ones they cannot read
    (so are URLs, wherever they are read)."""
    for path in captures:
        if not (remote or "://" in path or os.path.exists(path)):
            raise CaptureError(f"{path}: no such file")
    for path in key_files:
        KeyStore().add_file(path)  # raises KeyFileError


def read_captures(args: argparse.Namespace, stages: Stages) -> AnalysisResult:
    """Read every capture of a file command with one engine, the bar showing the bytes read;
    or, with ``--jobs`` above 1 on captures big enough, on that many processes."""
    if getattr(args, "vxlan_port", None):
        from analyzer.sources.linklayer import set_vxlan_ports

        set_vxlan_ports(args.vxlan_port)
    if getattr(args, "dask", None) or any("://" in p for p in args.captures):
        return _read_many(args, stages)
    jobs = getattr(args, "jobs", 1) or 1
    if jobs > 1:
        from analyzer import parallel

        if parallel.worth_it(args.captures, jobs, args.tls_keylog):
            with stages.stage(f"reading on {jobs} processes"):
                return parallel.analyze_parallel(
                    args.captures,
                    jobs,
                    key_files=args.keys,
                    reveal_secrets=getattr(args, "reveal_secrets", False),
                )
    engine = Engine(key_files=args.keys, reveal_secrets=getattr(args, "reveal_secrets", False))
    _ENGINES.append(engine)
    for path in args.captures:
        engine.read_file(path, stages.reading, args.tls_keylog)
    return engine.finish()


def _read_many(args: argparse.Namespace, stages: Stages) -> AnalysisResult:
    """``read_captures`` on the Dask cluster of ``--dask`` (or, for URL inputs without one,
    here): inputs a worker could not read are skipped, one warning line each."""
    from analyzer import cluster

    options = {
        "key_files": args.keys,
        "reveal_secrets": getattr(args, "reveal_secrets", False),
        "tls_keylog": args.tls_keylog,
        "progress": stages.reading,
    }
    if args.dask:
        try:
            client = cluster.connect(args.dask)
        except ImportError as exc:
            raise CaptureError(str(exc)) from exc
        except (OSError, TimeoutError) as exc:
            raise CaptureError(f"--dask {args.dask}: no scheduler answered ({exc})") from exc
        with client:  # the bar shows the bytes of the tasks the scheduler reports done
            result = cluster.analyze_many(args.captures, client, **options)
    else:
        result = cluster.analyze_many(args.captures, **options)
    for line in cluster.failures(result):
        _say(f"warning: {line} (skipped)")
    return result


def _scoped(result: AnalysisResult, args: argparse.Namespace) -> AnalysisResult:
    """``result`` narrowed to the scope options (``analysis.subset``), or as it is."""
    from analyzer.analysis.scope import make_scope
    from analyzer.analysis.subset import narrow

    values = scope_values(args)
    if getattr(args, "scheme", None):
        values["scheme"] = args.scheme
    return narrow(result, make_scope(**values)) if values else result


def _table_name(args: argparse.Namespace) -> str:
    if args.tokens:
        return "tokens"
    if args.findings:
        return "findings"
    if args.credentials:
        return "credentials"
    return args.table or "events"


def _analyze(args: argparse.Namespace) -> int:
    from analyzer.analysis.scope import make_scope
    from analyzer.report import outputs

    xlsx = bool(args.output and args.output.lower().endswith(".xlsx"))
    if args.format == "parquet" and not args.output:
        _error(
            "--format parquet writes a dataset per table: give the folder with -o DIR "
            "(or one table's file with -o FILE.parquet)"
        )
        return 2
    if args.format == "parquet" and not _one_parquet_file(args):
        outputs.check_folder(args.output)
    elif args.output:
        outputs.check_file(args.output)
    if args.charts:
        outputs.check_folder(args.charts, "--charts")
    make_scope(**scope_values(args), scheme=args.scheme)  # a bad filter fails now, not later
    if "-" in args.captures:
        from analyzer.stream_commands import analyze_stdin

        return analyze_stdin(args)
    _check_inputs(args.captures, args.keys, bool(getattr(args, "dask", None)))
    stages = Stages(args.captures, show=not args.no_progress)
    try:
        whole = read_captures(args, stages)
        if args.crosscheck:
            with stages.stage("crosscheck (tshark)"):
                _crosscheck(whole, args)
        result = _scoped(whole, args)
        if _needs_findings(args, xlsx):  # JSON Lines or CSV of events never pay for them
            with stages.stage("tokens"):
                result.findings  # noqa: B018 - tokens, verdicts and findings, under the bar
        with stages.stage("report"):
            if args.charts:
                _charts(result, args.charts)
            if args.format == "parquet":
                names = write_parquet(result, args)
                stages.close()
                print("\n".join(names))
                return 0
            if xlsx:
                _xlsx(result, args)
                stages.close()
                print(args.output)
                return 0
            if args.output:
                with outputs.atomic_file(args.output) as out:
                    _write(result, args, out)
                return 0
    finally:
        stages.close()
    _write(result, args, sys.stdout)
    sys.stdout.flush()
    return 0


def _crosscheck(result: AnalysisResult, args: argparse.Namespace) -> None:
    """``--crosscheck``: one line per local capture file on standard error."""
    from analyzer.sources.crosscheck import compare, tshark_fingerprints
    from analyzer.sources.kinds import input_kind

    for path in args.captures:
        if "://" in path or not os.path.isfile(path) or input_kind(path) != "capture":
            continue
        events = [e for e in result.events if result.inputs.get(e.conn_id) == path]
        found = tshark_fingerprints(path, args.tls_keylog)
        _say(compare(path, found, events).line())


def _one_parquet_file(args: argparse.Namespace) -> bool:
    """``-o FILE.parquet``: the chosen table as one file (else ``-o DIR``: a dataset each)."""
    return args.output.lower().endswith(".parquet")


def write_parquet(result: AnalysisResult, args: argparse.Namespace) -> list[str]:
    """``--format parquet``: one file of the chosen table (``-o FILE.parquet``), or a dataset
    per table partitioned by date and input (``-o DIR``); written whole or not at all. Returns
    what was written."""
    from analyzer.report import dataset, outputs

    if _one_parquet_file(args):
        record_type, records = _records(result, _table_name(args))
        with outputs.atomic_file(args.output, binary=True) as out:
            dataset.write_file(records, record_type, _table_name(args), out, args.reveal_secrets)
        return [args.output]
    with outputs.atomic_folder(args.output) as folder:
        written = dataset.write_dataset(result, folder, args.reveal_secrets)
    return [os.path.join(args.output, p.name) for p in written]


def _needs_findings(args: argparse.Namespace, xlsx: bool) -> bool:
    """Does this output show tokens, verdicts or findings (worked out under the bar), or only
    events (then they are never worked out)?"""
    if args.format in ("table", "parquet") or xlsx or args.charts:
        return True
    return _table_name(args) in ("tokens", "findings", "verdicts")


def _charts(result: AnalysisResult, folder: str) -> None:
    from analyzer.api import Analysis
    from analyzer.report.charts import save_charts
    from analyzer.report.outputs import atomic_folder

    with atomic_folder(folder) as scratch:
        written = save_charts(Analysis(result), scratch)
    print(f"{PROG}: wrote {len(written)} chart files to {folder}", file=sys.stderr)


def _xlsx(result: AnalysisResult, args: argparse.Namespace) -> None:
    from analyzer.analysis.credential_view import credential_records
    from analyzer.api import TABLES as API_TABLES
    from analyzer.model import CredentialRecord
    from analyzer.report.excel import write_xlsx
    from analyzer.report.outputs import atomic_file

    tables = [(n, t, getattr(result, a)) for n, (t, a) in API_TABLES.items()]
    tables.append(("credentials", CredentialRecord, credential_records(result.events)))
    with atomic_file(args.output, binary=True) as out:
        write_xlsx(tables, out, args.reveal_secrets)


def _records(result: AnalysisResult, name: str) -> tuple[type, list]:
    """The record type and records of one ``--table`` (pandas stays unloaded)."""
    from analyzer.report.schema import RECORDS

    if name == "credentials":
        from analyzer.analysis.credential_view import credential_records
        from analyzer.model import CredentialRecord

        return CredentialRecord, credential_records(result.events)
    return RECORDS[name], getattr(result, name)


def _write(result: AnalysisResult, args: argparse.Namespace, out: IO[str]) -> None:
    """Write the chosen table in the chosen format to ``out`` (paged on a terminal)."""
    name = _table_name(args)
    reveal = args.reveal_secrets
    if args.format == "jsonl":
        write_jsonl(_records(result, name)[1], out, reveal_secrets=reveal)
        return
    if args.format == "csv" or args.excel:
        record_type, records = _records(result, name)
        write_csv(records, out, record_type, reveal_secrets=reveal, bom=args.excel)
        return
    from analyzer.report.layout import UNLIMITED
    from analyzer.report.table import PIPE_WIDTH

    terminal = out.isatty()
    width = UNLIMITED if args.wide else PIPE_WIDTH
    if terminal and not args.wide:
        from analyzer.report.pager import terminal_width

        width = terminal_width(out)
    if terminal and not getattr(args, "no_pager", True):
        import io

        from analyzer.report.pager import page

        text = io.StringIO()
        _write_text(result, args, name, text, width, terminal)
        page(text.getvalue(), out)
    else:
        _write_text(result, args, name, out, width, terminal)


def _write_text(
    result: AnalysisResult,
    args: argparse.Namespace,
    name: str,
    out: IO[str],
    width: int,
    terminal: bool,
) -> None:
    from analyzer.report import table

    style = table.PLAIN
    if terminal:
        from analyzer.report.terminal import AnsiStyle

        style = AnsiStyle()
    if name == "events":
        table.write_table(
            result.events,
            result.captures,
            out,
            result.verdicts,
            result.findings,
            result.not_inspected,
            width=width,
            style=style,
            summary_only=args.summary,
            reveal=args.reveal_secrets,
        )
    elif name == "findings":
        table.write_findings(result.findings, out, explain=True, width=width, style=style)
    elif name == "tokens":
        table.write_tokens(result.tokens, out, width, style)
    elif name == "verdicts":
        table.write_verdicts(result.verdicts, out, width, style)
    elif name == "handshakes":
        table.write_handshakes(result.handshakes, out, width, style)
    elif name == "credentials":
        from analyzer.analysis.credential_view import credential_records
        from analyzer.report.credentials_text import write_credentials

        write_credentials(
            credential_records(result.events),
            out,
            width,
            style,
            reveal_secrets=args.reveal_secrets,
        )
    else:
        write_csv(*reversed(_records(result, name)), out, reveal_secrets=args.reveal_secrets)


def _report(args: argparse.Namespace) -> int:
    from analyzer.analysis.scope import make_scope
    from analyzer.report import outputs

    outputs.check_file(args.output, "report -o")
    make_scope(**scope_values(args), scheme=args.scheme)
    _check_inputs(args.captures, args.keys, bool(getattr(args, "dask", None)))
    stages = Stages(args.captures, show=not args.no_progress)
    try:
        result = _scoped(read_captures(args, stages), args)
        with stages.stage("tokens"):
            result.findings  # noqa: B018 - tokens, verdicts and findings, under the bar
        from analyzer.api import Analysis
        from analyzer.report.html import render_html

        with stages.stage("report"):
            analysis = Analysis(result, reveal_secrets=args.reveal_secrets)
            page = render_html(analysis, reveal_secrets=args.reveal_secrets)
            with outputs.atomic_file(args.output) as out:
                out.write(page)
    finally:
        stages.close()
    print(args.output)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oauth-traffic-analyzer")
    except PackageNotFoundError:
        return "unknown (not installed)"


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
    from analyzer.analysis.subset import capture_start
    from analyzer.analysis.verify import PolicyError, evaluate

    rules = _verify_rules(args)
    if isinstance(rules, int):
        return rules
    stages = Stages(args.captures, show=not args.no_progress)
    try:
        if "-" in args.captures:  # not a file named "-" either: that one is ./-
            raise CaptureError(
                "-: verify reads capture files, not standard input: judge a live stream with "
                "live --verify, or a capture piped in with verify /dev/stdin"
            )
        _check_inputs(args.captures, args.keys, bool(getattr(args, "dask", None)))
        result = read_captures(args, stages)
        with stages.stage("tokens"):
            start = capture_start(result)
            rules = [dataclasses.replace(r, scope=r.scope.anchored(start)) for r in rules]
            results = [
                evaluate(rule, result.events, result.captures, result.not_inspected)
                for rule in rules
            ]
    except (PolicyError, CaptureError, KeyFileError) as exc:
        _error(str(exc))
        return USAGE_VERIFY
    finally:
        stages.close()
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
        _error(os_error_text(exc))
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
            _reader_gone()
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


def _error(message: str) -> None:
    _say(f"error: {message}")


def _say(line: str) -> None:
    """One line on standard error after ``oauth-analyzer: ``. What it quotes (a file name, a
    tool's complaint, a captured host) may hold anything: its control characters, line breaks
    and bidi controls are escaped (``printable``), so it stays one inert line."""
    from analyzer.report.safe_text import printable

    print(f"{PROG}: {printable(line)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
