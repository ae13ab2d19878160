"""What is wrong with a presented token, as the findings of ``analyze_paths`` and the reasons of
``verify --json`` say it, exactly: a fault of the actor token alone, the status that counts as
accepted, which challenges name the trusted issuers and how issuer URLs match them, and the
words each problem is told with. Small captures of real packets, tokens signed with the
TEST-ONLY keys (``token_kit``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from token_kit import (
    EXO_AUD,
    KEYS_DIR,
    SFB_ISS,
    T0,
    actor_claims,
    generator,
    s2s,
    signed,
    unsigned,
)
from wire_kit import OK, write_capture

from analyzer.analysis.credentials import CREDENTIAL_RULES
from analyzer.auth.schemes import fingerprint
from analyzer.cli import main
from analyzer.engine import analyze_paths

HOST = b"mail.contoso.com"
URI = b"/EWS/Exchange.asmx"
EXCHANGE_CERT = str(KEYS_DIR / "exchange.cert.pem")
EXO_ISS = "00000002-0000-0ff1-ce00-000000000000@contoso.com"
OTHER_ISS = "00000003-0000-0ff1-ce00-000000000000@contoso.com"
ENTRA = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
WHERE = "10.9.9.1 -> mail.contoso.com (10.9.9.2:80)"

Finding = tuple[str, tuple[int, ...], tuple[str, ...]]  # rule id, event ids, one line each
Violation = tuple[int, str, str]  # event id, kind, reason


def request(token: str | None) -> bytes:
    auth = b"" if token is None else b"Authorization: Bearer " + token.encode() + b"\r\n"
    return b"GET " + URI + b" HTTP/1.1\r\nHost: " + HOST + b"\r\n" + auth + b"\r\n"


def answer(status: int, reason: str, *headers: str) -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{h}\r\n" for h in headers)
    return head.encode() + b"Content-Length: 0\r\n\r\n"


def challenged(*challenges: str) -> tuple[bytes, bytes]:
    """The anonymous probe and its 401, carrying ``challenges`` (WWW-Authenticate values)."""
    return request(None), answer(
        401, "Unauthorized", *(f"WWW-Authenticate: {c}" for c in challenges)
    )


def trusted_challenge(listed: str) -> tuple[bytes, bytes]:
    """The anonymous probe and its 401, whose Bearer challenge lists ``listed`` as
    ``trusted_issuers``."""
    return challenged(f'Bearer client_id="{EXO_ISS}", trusted_issuers="{listed}"')


def trusting(path: Path, listed: str, tokens: list[str]) -> str:
    """A capture of one connection: ``trusted_challenge(listed)``, then a call with each token,
    each answered 200."""
    return write_capture(path, [trusted_challenge(listed), *[(request(t), OK) for t in tokens]])


def plain(iss: str, **claims: object) -> str:
    """A signed (RS256, exchange key) token of ``iss`` for Exchange, valid around T0."""
    return signed({"iss": iss, "aud": EXO_AUD, "nbf": T0 - 60, "exp": T0 + 3600, **claims})


def s2s_around(actor: str) -> str:
    """An S2S pair: an unsigned user context valid around T0, carrying ``actor`` as given."""
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    return unsigned(generator().user_context(EXO_AUD, SFB_ISS, user, actor, T0, T0 + 3600))


def tampered(token: str) -> str:
    """``token`` with its claims replaced by another token's: the signature no longer fits."""
    head, _claims, signature = token.split(".")
    other = signed({"iss": "someone-else@contoso.com", "aud": EXO_AUD, "exp": T0 + 3600})
    return f"{head}.{other.split('.')[1]}.{signature}"


def credential_findings(path: str, keys: tuple[str, ...] = ()) -> list[Finding]:
    result = analyze_paths([path], key_files=list(keys))
    return [
        (f.rule_id, f.event_ids, f.examples)
        for f in result.findings
        if f.rule_id in CREDENTIAL_RULES
    ]


def verify(
    capsys: pytest.CaptureFixture[str], path: str, *args: str
) -> tuple[str, list[Violation]]:
    """``verify --json``'s overall result and its violations (event, kind, reason)."""
    main(["verify", path, "--json", "--no-progress", *args])
    data = json.loads(capsys.readouterr().out)
    (rule,) = data["rules"]
    return data["result"], [(v["event_id"], v["kind"], v["reason"]) for v in rule["violations"]]


# -- the actor token's own faults ----------------------------------------------------------------
def test_a_fault_of_the_actor_token_alone_is_the_presented_tokens_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An S2S pair whose user context is sound but whose actor token is unsigned, expired, not
    yet valid or never valid is reported for it, by the findings and by verify alike."""
    tokens = [
        s2s_around(unsigned(actor_claims())),
        s2s(actor=actor_claims(nbf=T0 - 9000, exp=T0 - 7200)),
        s2s(actor=actor_claims(nbf=T0 + 7200, exp=T0 + 9000)),
        s2s(actor=actor_claims(nbf=T0 + 7200, exp=T0 + 3600)),
    ]
    path = write_capture(tmp_path / "actors.pcap", *[[(request(t), OK)] for t in tokens])
    fp = [fingerprint(t) for t in tokens]
    assert credential_findings(path) == [
        ("unsigned-token", (1,), (f"token {fp[0]} (jwt-unsigned); server answered 200",)),
        (
            "token-expired-use",
            (2,),
            (f"token {fp[1]} used 1 time after exp, ACCEPTED by the server",),
        ),
        (
            "token-not-yet-valid",
            (3, 4),
            (
                f"token {fp[2]} used before nbf; server answered 200",
                f"token {fp[3]} used before nbf; server answered 200",
            ),
        ),
        (
            "token-exp-before-nbf",
            (4,),
            (f"token {fp[3]}: exp precedes nbf; server answered 200",),
        ),
    ]
    assert verify(capsys, path) == (
        "FAIL",
        [
            (1, "unsigned", "unsigned token (jwt-unsigned), not S2S"),
            (2, "expired", "token expired, yet accepted (200)"),
            (3, "not-yet-valid", "token used before its nbf (not yet valid)"),
            (
                4,
                "not-yet-valid",
                "token used before its nbf (not yet valid); "
                "token's exp precedes its nbf: never valid",
            ),
        ],
    )


# -- accepted means answered below 400 -------------------------------------------------------
def test_an_answer_of_400_refuses_a_token_and_302_accepts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired token counts against the server only when it was accepted: answered below
    400. A 400 is a refusal; so is it for a token of an issuer the server does not trust."""
    expired = s2s(nbf=T0 - 9000, exp=T0 - 7200)
    stranger = plain(OTHER_ISS)
    path = write_capture(
        tmp_path / "statuses.pcap",
        [(request(expired), answer(400, "Bad Request"))],
        [(request(expired), answer(302, "Found"))],
        [
            trusted_challenge(SFB_ISS),
            (request(stranger), answer(400, "Bad Request")),
        ],
    )
    assert verify(capsys, path) == (
        "FAIL",
        [
            (2, "expired", "token expired, yet accepted (302)"),
            (4, "untrusted-issuer", f"issuer {OTHER_ISS} is not in trusted_issuers"),
        ],
    )
    (untrusted,) = [f for f in credential_findings(path) if f[0] == "untrusted-issuer"]
    assert untrusted == (
        "untrusted-issuer",
        (4,),
        (
            f"issuer {OTHER_ISS} not in trusted_issuers of {WHERE}; "
            "refused as expected (server answered 400)",
        ),
    )


# -- trusted_issuers ---------------------------------------------------------------------------
def test_only_a_bearer_challenge_names_the_trusted_issuers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``trusted_issuers`` parameter on a Basic challenge says nothing about tokens; the same
    list on the Bearer challenge of the same server does."""
    listed = f'trusted_issuers="{OTHER_ISS}"'
    token = plain(EXO_ISS)
    basic = write_capture(
        tmp_path / "basic.pcap",
        [challenged(f'Basic realm="mail", {listed}', f'Bearer client_id="{EXO_ISS}"')],
        [(request(token), OK)],
    )
    assert credential_findings(basic) == []
    assert verify(capsys, basic) == ("PASS", [])
    bearer = write_capture(
        tmp_path / "bearer.pcap",
        [challenged('Basic realm="mail"', f'Bearer client_id="{EXO_ISS}", {listed}')],
        [(request(token), OK)],
    )
    assert credential_findings(bearer) == [
        (
            "untrusted-issuer",
            (2,),
            (
                f"issuer {EXO_ISS} not in trusted_issuers of {WHERE}; "
                "ACCEPTED anyway (server answered 200)",
            ),
        )
    ]
    assert verify(capsys, bearer) == (
        "FAIL",
        [(2, "untrusted-issuer", f"issuer {EXO_ISS} is not in trusted_issuers")],
    )


def test_a_wildcard_realm_trusts_the_app_in_every_realm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``<app id>@*`` trusts that application whatever its realm, its id in any case; another
    application in the same realm stays untrusted."""
    sfb_id = SFB_ISS.split("@")[0]
    issuers = [SFB_ISS, f"{sfb_id}@fabrikam.com", SFB_ISS.upper(), OTHER_ISS]
    path = trusting(tmp_path / "wildcard.pcap", f"{sfb_id}@*", [plain(iss) for iss in issuers])
    assert verify(capsys, path) == (
        "FAIL",
        [(5, "untrusted-issuer", f"issuer {OTHER_ISS} is not in trusted_issuers")],
    )


def test_issuer_urls_are_trusted_by_their_listed_prefix_in_any_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``https://sts.windows.net/*/`` trusts every Entra tenant's issuer URL; a URL without a
    wildcard trusts that URL; the comparison ignores case."""
    issuers = [
        ENTRA,  # 2: a tenant under the wildcard
        ENTRA.upper(),  # 3: the same, shouted
        "https://sts.contoso.test/UNIX/",  # 4: listed as it is
        "https://sts.contoso.test/unix",  # 5: listed, without its closing slash
        "https://sts.contoso.test/UNI/",  # 6: another path under the same host
        "https://sts.fabrikam.test/72f988bf-86f1-41af-91ab-2d7cd011db47/",  # 7: another host
    ]
    listed = "https://sts.windows.net/*/,https://sts.contoso.test/UNIX/"
    path = trusting(tmp_path / "urls.pcap", listed, [plain(iss) for iss in issuers])
    assert verify(capsys, path) == (
        "FAIL",
        [
            (6, "untrusted-issuer", f"issuer {issuers[4]} is not in trusted_issuers"),
            (7, "untrusted-issuer", f"issuer {issuers[5]} is not in trusted_issuers"),
        ],
    )
    accepted = "ACCEPTED anyway (server answered 200)"
    assert credential_findings(path) == [
        (
            "untrusted-issuer",
            (6, 7),
            tuple(f"issuer {i} not in trusted_issuers of {WHERE}; {accepted}" for i in issuers[4:]),
        )
    ]


def test_a_listed_issuer_url_trusts_no_other_host_or_path_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The listed URL must end where a path segment of the issuer does: a host that only
    begins like the listed one (anyone can register sts.windows.net.evil.test), a listed host
    as user name in front of another, or a longer path segment is another issuer."""
    issuers = [
        "https://sts.windows.net.evil.test/72f988bf-86f1-41af-91ab-2d7cd011db47/",  # 2
        "https://sts.windows.net@evil.test/",  # 3
        "https://sts.contoso.test/UNIXX/",  # 4
        "https://sts.contoso.test/UNIX/tenant/",  # 5: a path under the listed one
    ]
    listed = "https://sts.windows.net/*/,https://sts.contoso.test/UNIX/"
    path = trusting(tmp_path / "lookalikes.pcap", listed, [plain(iss) for iss in issuers])
    assert verify(capsys, path) == (
        "FAIL",
        [
            (2 + i, "untrusted-issuer", f"issuer {iss} is not in trusted_issuers")
            for i, iss in enumerate(issuers[:3])
        ],
    )


def test_an_untrusted_s2s_pair_is_named_by_its_actors_issuer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The actor token speaks for the caller of an S2S pair: its issuer is the one judged and
    named, not the user context's."""
    token = s2s(actor=actor_claims(iss=OTHER_ISS))
    path = trusting(tmp_path / "s2s.pcap", SFB_ISS, [token])
    assert verify(capsys, path) == (
        "FAIL",
        [(2, "untrusted-issuer", f"issuer {OTHER_ISS} is not in trusted_issuers")],
    )


# -- bad signatures ------------------------------------------------------------------------------
def test_a_bad_signature_names_the_layer_that_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain token whose signature does not verify is "token"; in an S2S pair the signed
    layer is the actor token, and the reason says so."""
    single = tampered(plain(EXO_ISS))
    actor = tampered(signed({k: v for k, v in actor_claims().items() if v is not None}))
    pair = s2s_around(actor)
    path = write_capture(tmp_path / "bad.pcap", [(request(single), OK)], [(request(pair), OK)])
    assert verify(capsys, path, "--keys", EXCHANGE_CERT) == (
        "FAIL",
        [
            (1, "bad-signature", "token signature does not verify"),
            (2, "bad-signature", "actor token signature does not verify"),
        ],
    )
    assert credential_findings(path, (EXCHANGE_CERT,)) == [
        (
            "bad-signature",
            (1, 2),
            (
                f"token of {fingerprint(single)} fails verification; server answered 200",
                f"actor token of {fingerprint(pair)} fails verification; server answered 200",
            ),
        )
    ]
