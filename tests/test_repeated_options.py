"""A list option given more than once means all of its values, in every command: argparse's
default keeps the last alone, and ``verify X --server a --server b`` judged ``b`` only - an NTLM
fallback to ``a`` left out, a false PASS. The single-valued ``--since`` / ``--until`` and
``--policy`` given twice are a usage error (exit 3 from verify, argparse's 2 elsewhere), not the
last one alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.cli import USAGE_VERIFY, _verify_rules, build_parser, main, scope_values

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
FALLBACK = str(CAPTURES / "hybrid" / "fallback-ntlm.pcap")  # NTLM to mail.contoso.com /EWS/
HEALTHY = str(CAPTURES / "healthy-oauth.pcap")

#: Each command, the words before its options, and the list options it takes.
SCOPE_LISTS = ("--client", "--server", "--host", "--path", "--user")
COMMANDS = {
    "analyze": (["analyze", "x.pcap"], (*SCOPE_LISTS, "--scheme")),
    "report": (["report", "x.pcap"], (*SCOPE_LISTS, "--scheme")),
    "verify": (["verify", "x.pcap"], (*SCOPE_LISTS, "--issuer", "--realm", "--protocol")),
    "live": (["live"], (*SCOPE_LISTS, "--scheme", "--issuer", "--realm")),
}
CASES = [(name, flag) for name, (_, flags) in COMMANDS.items() for flag in flags]


@pytest.mark.parametrize(("command", "flag"), CASES)
def test_every_list_option_of_every_command_adds_its_values(command: str, flag: str) -> None:
    words, _ = COMMANDS[command]
    args = build_parser().parse_args([*words, flag, "a,b", flag, "c"])
    assert getattr(args, flag[2:]) == "a,b,c"  # as --flag a,b,c: the union
    once = build_parser().parse_args([*words, flag, "a,b"])
    assert getattr(once, flag[2:]) == "a,b"


@pytest.mark.parametrize("command", COMMANDS)
def test_the_scope_values_of_a_repeated_option_are_all_of_them(command: str) -> None:
    words, _ = COMMANDS[command]
    args = build_parser().parse_args([*words, "--server", "mail", "--server", "10.1.0.0/24"])
    assert scope_values(args) == {"server": "mail,10.1.0.0/24"}


def test_verify_judges_every_repeated_server(capsys: pytest.CaptureFixture[str]) -> None:
    """The NTLM fallback on mail.contoso.com fails the rule however the servers are given."""
    alone = main(["verify", FALLBACK, "--no-progress", "--server", "autodiscover-s.outlook.com"])
    assert alone == 0  # the OAuth server alone passes
    repeated = ["--server", "mail.contoso.com", "--server", "autodiscover-s.outlook.com"]
    assert main(["verify", FALLBACK, "--no-progress", *repeated]) == 1
    out = capsys.readouterr().out
    assert "FAIL         command line: to mail.contoso.com, autodiscover-s.outlook.com" in out
    listed = ["--server", "mail.contoso.com,autodiscover-s.outlook.com"]
    assert main(["verify", FALLBACK, "--no-progress", *listed]) == 1


@pytest.mark.parametrize(
    "options",
    [
        ["--path", "/EWS/", "--path", "/autodiscover/"],
        ["--client", "10.1.0.20", "--client", "10.1.0.10"],
    ],
)
def test_verify_judges_every_repeated_path_and_client(options: list[str], capsys) -> None:
    assert main(["verify", FALLBACK, "--no-progress", *options[2:]]) == 0  # the last alone
    assert main(["verify", FALLBACK, "--no-progress", *options]) == 1
    capsys.readouterr()


def test_a_rule_from_repeated_options_holds_every_value() -> None:
    """``verify`` and ``live --verify`` build their rule from the same options."""
    for words in (["verify", "x.pcap"], ["live", "--verify"]):
        args = build_parser().parse_args(
            [*words, "--issuer", "skype", "--issuer", "exchange", "--realm", "a", "--realm", "b"]
        )
        (rule,) = _verify_rules(args)
        assert [i.text for i in rule.issuers] == ["skype", "exchange"]
        assert rule.realms == ("a", "b")
    args = build_parser().parse_args(["verify", "x", "--protocol", "sip", "--protocol", "http"])
    assert _verify_rules(args)[0].protocols == ("sip", "http")


def test_analyze_lists_the_exchanges_of_every_repeated_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def hosts(*options: str) -> set[str]:
        assert main(["analyze", FALLBACK, "--format", "jsonl", "--no-progress", *options]) == 0
        return {json.loads(line)["host"] for line in capsys.readouterr().out.splitlines()}

    both = hosts("--host", "mail.contoso.com", "--host", "autodiscover-s.outlook.com")
    assert both == {"mail.contoso.com", "autodiscover-s.outlook.com"}
    assert both == hosts("--host", "mail.contoso.com,autodiscover-s.outlook.com")


@pytest.mark.parametrize("flag", ["--since", "--until"])
def test_a_time_bound_given_twice_is_bad_usage(flag: str, capsys) -> None:
    """One bound takes one time: the last one alone would silently move the window."""
    twice = [flag, "+1s", flag, "+2s"]
    assert main(["verify", HEALTHY, *twice]) == USAGE_VERIFY
    err = capsys.readouterr().err
    assert f"error: argument {flag}: given more than once (it takes one value)" in err
    for command in (["analyze", HEALTHY], ["report", HEALTHY], ["live"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, *twice])
        assert exit_.value.code == 2
        assert f"argument {flag}: given more than once" in capsys.readouterr().err
    args = build_parser().parse_args(["analyze", HEALTHY, flag, "+1s"])
    assert getattr(args, flag[2:]) == "+1s"


def test_a_policy_given_twice_is_bad_usage(tmp_path: Path, capsys) -> None:
    """Two --policy files: the last alone would drop the first file's rules."""
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nserver = "mail.contoso.com"\n')
    assert main(["verify", FALLBACK, "--policy", str(policy), "--policy", str(policy)]) == 3
    assert "argument --policy: given more than once" in capsys.readouterr().err
    assert main(["live", "--verify", "--policy", str(policy), "--policy", str(policy)]) == 3
    assert "argument --policy: given more than once" in capsys.readouterr().err
