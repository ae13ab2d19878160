"""Token checks at their edges: the 5-minute clock skew on ``exp`` and ``nbf`` (300 s passes,
301 s fails), the 24-hour lifetime, S2S layer rules, required claims and principal spelling, as
``check_token`` (and the per-use ``plan_checks(...).failed``) report them to a user."""

from __future__ import annotations

import base64
import json

import pytest
from token_kit import EXO_AUD, SFB_ISS, T0, actor_claims, s2s, signed, unsigned

from analyzer.oauth.checks import CLOCK_SKEW, MAX_LIFETIME, Check, check_token, failed, plan_checks
from analyzer.oauth.tokens import DecodedToken, decode_token

HOST = "mail.contoso.com"


def _by_id(text: str, at: float | None = None, host: str | None = HOST, **kw) -> dict[str, Check]:
    return {c.id: c for c in check_token(decode_token(text), at=at, host=host, **kw)}


def b64url_json(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _one(at: float | None, **claims) -> dict[str, Check]:
    """Checks of a signed single-layer token with ``claims`` over a complete S2S set."""
    base = {"aud": EXO_AUD, "iss": SFB_ISS, "nameid": SFB_ISS, "nbf": T0, "exp": T0 + 3600}
    base.update(claims)
    return _by_id(signed({k: v for k, v in base.items() if v is not None}), at=at)


def test_constants_are_the_documented_ones() -> None:
    assert (CLOCK_SKEW, MAX_LIFETIME) == (300, 86400)


# -- exp: the clock skew ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("late", "ok", "message"),
    [
        (-3600, True, "valid until 2026-03-02T10:00:00Z (60 min left)"),
        (-1, True, "valid until 2026-03-02T10:00:00Z (1 s left)"),
        (0, True, "valid until 2026-03-02T10:00:00Z (used 0 s after)"),
        (1, True, "valid until 2026-03-02T10:00:00Z (used 1 s after)"),
        (300, True, "valid until 2026-03-02T10:00:00Z (used 5 min after)"),
        (301, False, "used 5 min after exp 2026-03-02T10:00:00Z"),
        (7200, False, "used 2.0 h after exp 2026-03-02T10:00:00Z"),
    ],
)
def test_expiry_tolerates_exactly_five_minutes(late: int, ok: bool, message: str) -> None:
    at = T0 + 3600 + late
    check = _one(at)["expired"]
    assert (check.ok, check.message) == (ok, message)
    plan = plan_checks(decode_token(signed(actor_claims())), host=HOST, role="actor")
    assert ("expired" in plan.failed(at)) is (not ok)
    assert plan.failed(at) == failed(plan.checks(at))


def test_a_use_that_spans_time_is_judged_at_both_ends() -> None:
    """A request whose head came again (or ended) later: nbf at its first copy, exp at its last
    (``until``), and the expiry check says which time it judged."""
    plan = plan_checks(decode_token(signed(actor_claims())), host=HOST, role="actor")
    first, last = T0 + 3000, T0 + 3600 + 301
    assert "expired" in plan.failed(first, last) and "expired" not in plan.failed(first)
    assert plan.failed(first, last) == failed(plan.checks(first, last))
    (check,) = [c for c in plan.checks(first, last) if c.id == "expired"]
    assert check.message == (
        "used 5 min after exp 2026-03-02T10:00:00Z (the request's last copy, 2026-03-02T10:05:01Z)"
    )
    (check,) = [c for c in plan.checks(first, T0 + 3500) if c.id == "expired"]
    assert check.message == (
        "valid until 2026-03-02T10:00:00Z (100 s left) (the request's last copy, "
        "2026-03-02T09:58:20Z)"
    )
    early = plan_checks(decode_token(signed(actor_claims(nbf=T0 + 1000))), host=HOST, role="actor")
    assert early.failed(T0, T0 + 2000) == ("not-yet-valid",)  # nbf: at the first copy
    assert plan.failed(last, first) == plan.failed(last)  # an earlier "last" copy: ignored


# -- nbf: the clock skew ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("early", "ok", "message"),
    [
        (-60, True, "valid from 2026-03-02T09:00:00Z"),
        (0, True, "valid from 2026-03-02T09:00:00Z"),
        (1, True, "valid from 2026-03-02T09:00:00Z (1 s after this use: clock skew)"),
        (119, True, "valid from 2026-03-02T09:00:00Z (119 s after this use: clock skew)"),
        (120, True, "valid from 2026-03-02T09:00:00Z (2 min after this use: clock skew)"),
        (300, True, "valid from 2026-03-02T09:00:00Z (5 min after this use: clock skew)"),
        (301, False, "used 5 min before nbf 2026-03-02T09:00:00Z"),
    ],
)
def test_not_before_tolerates_exactly_five_minutes(early: int, ok: bool, message: str) -> None:
    at = T0 - early
    check = _one(at)["not-yet-valid"]
    assert (check.ok, check.message) == (ok, message)
    plan = plan_checks(decode_token(signed(actor_claims())), host=HOST, role="actor")
    assert ("not-yet-valid" in plan.failed(at)) is (not ok)
    assert plan.failed(at) == failed(plan.checks(at))


def test_without_a_time_of_use_no_validity_checks() -> None:
    checks = _one(None)
    assert "expired" not in checks and "not-yet-valid" not in checks
    assert checks["lifetime"].ok is True
    plan = plan_checks(decode_token(signed(actor_claims(exp=T0 - 10_000))), role="actor")
    assert plan.failed(None) == ("exp-before-nbf",)  # exp before nbf; no use, no expiry


def test_missing_nbf_or_exp_skips_that_check_only() -> None:
    checks = _one(T0 + 10, nbf=None)
    assert "not-yet-valid" not in checks and checks["expired"].ok is True
    checks = _one(T0 + 10, exp=None)
    assert "expired" not in checks and checks["not-yet-valid"].ok is True
    assert checks["required-claims"].message == "missing claims: exp"
    no_nbf = {k: v for k, v in actor_claims().items() if k != "nbf"}
    plan = plan_checks(decode_token(signed(no_nbf)), role="actor")
    assert "not-yet-valid" not in plan.failed(T0 - 10_000)
    no_exp = {k: v for k, v in actor_claims().items() if k != "exp"}
    plan = plan_checks(decode_token(signed(no_exp)), role="actor")
    assert plan.failed(T0 + 10**6) == ("required-claims",)


# -- lifetime -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("life", "ok", "message"),
    [
        (1, True, "lifetime 1 s"),
        (119, True, "lifetime 119 s"),
        (120, True, "lifetime 2 min"),
        (7199, True, "lifetime 120 min"),
        (7200, True, "lifetime 2.0 h"),
        (86400, True, "lifetime 24.0 h"),
        (86401, False, "lifetime 24.0 h is outside (0, 24 h]"),
        (172799, False, "lifetime 48.0 h is outside (0, 24 h]"),
        (172800, False, "lifetime 2.0 days is outside (0, 24 h]"),
    ],
)
def test_lifetime_is_at_most_24_hours(life: int, ok: bool, message: str) -> None:
    check = _one(T0, exp=T0 + life)["lifetime"]
    assert (check.ok, check.message) == (ok, message)


@pytest.mark.parametrize(("life", "span"), [(0, "0 s"), (-600, "10 min")])
def test_exp_at_or_before_nbf_is_never_valid_not_long_lived(life: int, span: str) -> None:
    checks = _one(T0, exp=T0 + life)
    assert "lifetime" not in checks
    check = checks["exp-before-nbf"]
    assert check.ok is False
    assert check.message.endswith(f"({span} earlier): the token is never valid")


def test_lifetime_counts_from_iat_without_nbf_and_needs_both_ends() -> None:
    check = _one(None, nbf=None, iat=T0, exp=T0 + 86401)["lifetime"]
    assert (check.ok, check.message) == (False, "lifetime 24.0 h is outside (0, 24 h]")
    assert _one(None, nbf=T0, iat=T0 - 10**6, exp=T0 + 60)["lifetime"].ok is True
    assert "lifetime" not in _one(None, nbf=None, iat=None)
    assert "lifetime" not in _one(None, exp=None)


# -- the S2S layers -----------------------------------------------------------------------
def test_a_healthy_s2s_token_passes_every_check_in_order() -> None:
    checks = check_token(decode_token(s2s()), at=T0 + 10, host=HOST)
    assert [(c.id, c.ok) for c in checks] == [
        (name, True)
        for name in (
            "decodes", "outer-unsigned", "actor-signed", "issuer-matches-actor",
            "audience-matches-actor", "required-claims", "audience-form", "audience-host",
            "principals", "not-yet-valid", "expired", "lifetime", "actor-decodes",
            "actor-required-claims", "actor-audience-form", "actor-audience-host",
            "actor-principals", "actor-not-yet-valid", "actor-expired", "actor-lifetime",
        )
    ]  # fmt: skip
    messages = {c.id: c.message for c in checks}
    assert messages["decodes"] == "jwt-unsigned, alg none"
    assert messages["actor-decodes"] == "jwt, alg RS256"
    assert messages["outer-unsigned"] == "outer (user context) token is unsigned, as S2S requires"
    assert messages["actor-signed"] == "actor token is signed with RS256"
    assert messages["issuer-matches-actor"] == f"outer iss equals actor nameid ({SFB_ISS})"
    assert messages["audience-matches-actor"] == "outer and actor audiences agree"
    assert messages["required-claims"] == "iss, aud and exp present"
    assert messages["audience-form"] == "audience has principal, host and realm"
    assert messages["audience-host"] == "audience host mail.contoso.com matches Host"
    assert messages["principals"] == "principal strings well formed"
    assert checks[0].to_dict() == {"id": "decodes", "ok": True, "message": messages["decodes"]}


def test_the_actor_layer_is_judged_at_its_own_times() -> None:
    text = s2s(actor=actor_claims(nbf=T0, exp=T0 + 600), exp=T0 + 3600)
    by_id = _by_id(text, at=T0 + 1000)
    assert by_id["expired"].ok is True
    assert by_id["actor-expired"].ok is False
    assert by_id["actor-expired"].message == "used 7 min after exp 2026-03-02T09:10:00Z"
    plan = plan_checks(decode_token(text), host=HOST)
    assert plan.failed(T0 + 1000) == ("actor-expired",)
    assert plan.failed(T0 - 400) == ("not-yet-valid", "actor-not-yet-valid")
    assert plan.failed(T0 + 10) == ()


def test_signed_outer_and_unsigned_actor_are_exchange_errors() -> None:
    outer_signed = signed({**actor_claims(), "actortoken": signed(actor_claims())})
    by_id = _by_id(outer_signed, at=T0)
    assert by_id["outer-unsigned"].ok is False
    assert by_id["outer-unsigned"].message == (
        "outer token is signed: Exchange rejects it (2001 user context must be unsigned)"
    )
    claims = {**actor_claims(), "actortoken": unsigned(actor_claims())}
    by_id = _by_id(unsigned(claims), at=T0)
    assert by_id["actor-signed"].ok is False
    assert by_id["actor-signed"].message == (
        "actor token is not signed: Exchange rejects it (2002 actor must be signed)"
    )
    assert by_id["outer-unsigned"].ok is True


def test_single_layer_tokens_say_whether_they_are_signed() -> None:
    signed_alone = _by_id(signed(actor_claims()), at=T0)
    assert (signed_alone["signed"].ok, signed_alone["signed"].message) == (
        True,
        "signed with RS256",
    )
    bare = _by_id(unsigned(actor_claims()), at=T0)
    assert (bare["signed"].ok, bare["signed"].message) == (
        False,
        "unsigned token (alg none) without a signed actor",
    )
    junk = _by_id(unsigned({**actor_claims(), "actortoken": 123}), at=T0)
    assert (junk["actor-token"].ok, junk["actor-token"].message) == (
        False,
        "actortoken claim does not decode as a JWT",
    )
    assert "signed" not in junk and "issuer-matches-actor" not in junk


def test_issuer_must_equal_actor_nameid_case_sensitively() -> None:
    upper = SFB_ISS.replace("contoso", "Contoso")
    by_id = _by_id(s2s(iss=upper), at=T0)
    check = by_id["issuer-matches-actor"]
    assert check.ok is False
    assert check.message == (
        f"outer iss '{upper}' differs from actor nameid '{SFB_ISS}' (Exchange 2015)"
    )


def test_missing_outer_iss_or_actor_nameid_fails_the_layer_rule() -> None:
    by_id = _by_id(s2s(actor=actor_claims(nameid=None)), at=T0)
    check = by_id["issuer-matches-actor"]
    assert (check.ok, check.message) == (False, "outer iss or actor nameid is missing")
    assert by_id["actor-required-claims"].message == "missing claims: nameid"
    by_id = _by_id(s2s(iss=None), at=T0)
    check = by_id["issuer-matches-actor"]
    assert (check.ok, check.message) == (False, "outer iss or actor nameid is missing")
    assert by_id["required-claims"].message == "missing claims: iss"


def test_audiences_compare_host_case_insensitively_but_realm_and_id_exactly() -> None:
    host_case = EXO_AUD.replace("mail.contoso.com", "MAIL.Contoso.com")
    assert _by_id(s2s(aud=host_case), at=T0)["audience-matches-actor"].ok is True
    realm_case = EXO_AUD.replace("@contoso.com", "@Contoso.com")
    check = _by_id(s2s(aud=realm_case), at=T0)["audience-matches-actor"]
    assert (check.ok, check.message) == (
        False,
        f"outer aud '{realm_case}' differs from actor aud '{EXO_AUD}'",
    )
    id_case = EXO_AUD.replace("0ff1-ce00", "0FF1-CE00")
    assert _by_id(s2s(aud=id_case), at=T0)["audience-matches-actor"].ok is False
    no_aud = _by_id(s2s(aud=None), at=T0)["audience-matches-actor"]
    assert (no_aud.ok, no_aud.message) == (None, "outer or actor aud is missing")
    actor_no_aud = _by_id(s2s(actor=actor_claims(aud=None)), at=T0)
    assert actor_no_aud["audience-matches-actor"].ok is None


# -- required claims ------------------------------------------------------------------------
def test_required_claims_by_role() -> None:
    text = signed({k: v for k, v in actor_claims().items() if k != "nameid"})
    as_bearer = _by_id(text)["required-claims"]
    assert (as_bearer.ok, as_bearer.message) == (False, "missing claims: nameid")
    assert _by_id(text, role="assertion")["required-claims"].ok is True
    assert _by_id(text, role="actor")["required-claims"].ok is False
    entra = signed({"iss": "https://sts.windows.net/t/", "aud": "api://x", "exp": T0})
    assert _by_id(entra)["required-claims"].ok is True  # not S2S: no nameid needed
    nothing = _by_id(signed({"sub": "x"}))["required-claims"]
    assert (nothing.ok, nothing.message) == (False, "missing claims: iss, aud, exp")
    outer = s2s(nbf=None)
    assert _by_id(outer)["required-claims"].message == "missing claims: nbf"


# -- principals and the Host --------------------------------------------------------------
@pytest.mark.parametrize(
    ("aud", "ok", "message"),
    [
        (EXO_AUD, True, "audience has principal, host and realm"),
        (f"00000002-0000-0ff1-ce00-000000000000@{'contoso.com'}", False, None),
        ("00000002-0000-0ff1-ce00-000000000000/mail.contoso.com@", False, None),
        ("/mail.contoso.com@contoso.com", False, None),
    ],
)
def test_audience_form(aud: str, ok: bool, message: str | None) -> None:
    check = _one(T0, aud=aud)["audience-form"]
    lacks = {
        "00000002-0000-0ff1-ce00-000000000000@contoso.com": "host",
        "00000002-0000-0ff1-ce00-000000000000/mail.contoso.com@": "realm",
        "/mail.contoso.com@contoso.com": "principal id",
    }
    expected = message or f"audience '{aud}' lacks {lacks[aud]}"
    assert (check.ok, check.message) == (ok, expected)


def test_audience_without_host_or_realm_names_both() -> None:
    check = _one(T0, aud="00000002-0000-0ff1-ce00-000000000000@")["audience-form"]
    assert check.message == "audience '00000002-0000-0ff1-ce00-000000000000@' lacks host and realm"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("mail.contoso.com", True),
        ("MAIL.CONTOSO.COM", True),
        ("mail.contoso.com:443", True),
        ("mail.contoso.com:8443", True),
        ("autodiscover.contoso.com", False),
        ("mail.contoso.com.evil", False),
    ],
)
def test_audience_host_matches_the_request_host_case_insensitively(host: str, ok: bool) -> None:
    check = _by_id(signed(actor_claims()), host=host)["audience-host"]
    assert check.ok is ok
    if not ok:
        bare = host.rsplit(":", 1)[0]
        assert check.message == (
            f"audience host 'mail.contoso.com' is not the request's Host '{bare}'"
        )


def test_ipv6_host_and_missing_host() -> None:
    aud = "00000002-0000-0ff1-ce00-000000000000/[2001:db8::1]@contoso.com"
    text = signed({**actor_claims(), "aud": aud})
    assert _by_id(text, host="[2001:db8::1]:443")["audience-host"].ok is True
    assert _by_id(text, host="[2001:db8::2]")["audience-host"].ok is False
    plain = signed(actor_claims())
    assert "audience-host" not in _by_id(plain, host=None)  # not presented: issued, asserted
    nameless = _by_id(plain, host="")  # presented by a request that named no host
    assert (nameless["audience-host"].ok, nameless["audience-host"].message) == (
        False,
        "audience host 'mail.contoso.com' cannot be matched: the request named no host",
    )
    v6 = _by_id(signed({**actor_claims(), "aud": EXO_AUD}), host="2001:db8::1")
    assert v6["audience-host"].ok is False  # several colons: no port to strip


def test_non_s2s_audiences_are_not_judged_as_principals() -> None:
    """An Entra token's URL or GUID audience is its own form; an S2S token's is not: its host
    and realm could not be judged, so it fails its form (a review passed one naming a foreign
    host this way). Several audiences in an S2S token fail too: only the first was judged."""
    entra = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
    for aud in ("api://contoso-app", "https://graph.microsoft.com", "plain-guid-audience"):
        checks = _one(T0, aud=aud, iss=entra, nameid=None)
        assert "audience-form" not in checks and "audience-host" not in checks
        s2s = _one(T0, aud=aud)["audience-form"]
        assert (s2s.ok, s2s.message) == (
            False,
            f"audience '{aud}' is not an S2S principal (<app id>/<host>@<realm>): its host and "
            "realm cannot be judged",
        )
    several = _one(T0, aud=[EXO_AUD, "00000002-0000-0ff1-ce00-000000000000/x.test@evil.test"])
    assert (several["audience-form"].ok, several["audience-form"].message) == (
        False,
        "2 audiences: an S2S token names one",
    )
    assert _one(T0, aud=[EXO_AUD])["audience-form"].ok is True  # a list of one is one


def test_a_required_claim_that_is_null_or_empty_is_missing() -> None:
    """``"exp": null`` is a token that never expires, ``"aud": []`` one for nobody: a claim's
    key alone is not the claim. An S2S layer needs nbf too: without it a signed actor's life
    has no start (a review signed one valid for 70 years, dated by a late iat)."""
    for claims, missing in (
        ({"exp": None}, "exp"),
        ({"aud": []}, "aud"),
        ({"iss": ""}, "iss"),
        ({"nbf": None}, "nbf"),
        ({"nbf": None, "iat": T0}, "nbf"),
    ):
        check = _one(T0, **claims)["required-claims"]
        assert (check.ok, check.message) == (False, f"missing claims: {missing}"), claims
    assert _one(T0)["required-claims"].ok is True
    entra = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
    assert _one(T0, iss=entra, nbf=None)["required-claims"].ok is True  # not S2S: nbf optional


def test_principal_spelling_problems_are_named_by_role() -> None:
    typo = "00000002-000-0ff1-ce00-000000000000"
    checks = _one(T0, iss=f"{typo}@contoso.com", nameid=f"{typo}@contoso.com")
    message = checks["principals"].message
    assert checks["principals"].ok is False
    assert message.startswith("issuer: app id is not a GUID; issuer: did you mean ")
    assert "; nameid: app id is not a GUID; nameid: did you mean " in message
    aud = _one(T0, aud="00000002-0000-0ff1-ce00-000000000000/mail.contoso.com@Contoso.com")
    assert aud["principals"].message == (
        "audience: uppercase realm: realms compare case-sensitively and S2S values are lowercase"
    )
    no_at = _one(T0, iss="just-a-name", nameid="other-name")
    assert no_at["principals"].ok is True  # not principal strings: nothing to spell-check


def test_actor_checks_carry_the_actor_prefix() -> None:
    bad_actor = actor_claims(aud="00000002-0000-0ff1-ce00-000000000000@contoso.com")
    by_id = _by_id(s2s(actor=bad_actor), at=T0)
    assert by_id["actor-audience-form"].ok is False
    assert by_id["actor-principals"].message == (
        "audience: audience has no /host part (MS-XOAUTH wants <id>/<host>@<realm>)"
    )
    assert "actor-audience-host" not in by_id
    assert failed(check_token(decode_token(s2s(actor=bad_actor)), at=T0, host=HOST)) == (
        "audience-matches-actor",
        "actor-audience-form",
        "actor-principals",
    )


# -- tokens without claims, and time units ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fmt"),
    [("", "empty"), ("opaque-token-value", "opaque"), ("cwt=AAEAAA", "cwt")],
)
def test_tokens_without_claims_get_one_undecided_check(text: str, fmt: str) -> None:
    checks = check_token(decode_token(text), at=T0, host=HOST)
    assert checks == [Check("structure", None, f"{fmt} token: no claims to check")]
    assert plan_checks(decode_token(text)).failed(T0) == ()


def test_malformed_token_fails_decoding_with_its_problems() -> None:
    checks = check_token(decode_token("eyJhbGciOiJub25lIn0.eyJhIjox.x"), at=T0)
    assert checks[0].id == "decodes" and checks[0].ok is False
    assert checks[0].message.startswith("decoding problems: ")
    assert len(checks) == 1


def test_time_unit_notes_fail_the_time_units_check() -> None:
    ms = _one(None, exp=(T0 + 3600) * 1000)
    assert ms["time-units"].ok is False
    assert ms["time-units"].message
    assert "time-units" not in _one(None)
    actor = _by_id(s2s(actor=actor_claims(exp=(T0 + 3600) * 1000)), at=T0)
    assert actor["actor-time-units"].ok is False


# -- defaults, plans and hand-built tokens ----------------------------------------------------
def test_plan_defaults_to_a_presented_bearer_token() -> None:
    text = signed({k: v for k, v in actor_claims().items() if k != "nameid"})
    token = decode_token(text)
    plan = plan_checks(token)
    assert plan.token is token
    assert plan.failed(T0) == ("required-claims",)  # a bearer S2S token needs nameid
    assert plan_checks(token, role="assertion").failed(T0) == ()


def test_plans_of_tokens_without_time_checks_expose_their_layers() -> None:
    empty = decode_token("")
    plan = plan_checks(empty)
    assert plan.token is empty
    assert plan.layers == (((Check("structure", None, "empty token: no claims to check"),), None,
                            "", ()),)  # fmt: skip
    broken = decode_token("eyJhbGciOiJub25lIn0.eyJhIjox.")
    plan = plan_checks(broken)
    assert plan.token is broken
    assert len(plan.layers) == 1 and plan.layers[0][1:] == (None, "", ())
    assert plan.layers[0][0][0].id == "decodes"


def test_jwe_tokens_are_not_judged() -> None:
    header = b64url_json({"alg": "RSA-OAEP", "enc": "A256GCM"})
    checks = check_token(decode_token(f"{header}.a.b.c.d"), at=T0, host=HOST)
    assert checks == [Check("structure", None, "jwe token: no claims to check")]


def test_decoding_problems_are_listed_in_full() -> None:
    head = b64url_json({"typ": "JWT"})
    body = b64url_json({"iss": "a"})
    (check,) = [c for c in check_token(decode_token(f"{head}.{body}.!!")) if c.id == "decodes"]
    assert (check.ok, check.message) == (
        False,
        "decoding problems: signature: bad base64url; header has no alg",
    )


def test_hand_built_tokens() -> None:
    bare = check_token(DecodedToken("0" * 12, "malformed"))
    assert bare == [Check("decodes", False, "decoding problems: does not decode")]
    no_alg = check_token(DecodedToken("0" * 12, "jwt", claims={"sub": "x"}))[0]
    assert (no_alg.ok, no_alg.message) == (True, "jwt, alg -")


def test_two_time_notes_are_joined() -> None:
    checks = _one(None, nbf=T0 * 1000, exp=(T0 + 3600) * 1000)
    notes = checks["time-units"].message.split("; ")
    assert len(notes) == 2 and all(notes)


def test_url_issuers_and_audiences_with_an_at_sign_are_not_s2s() -> None:
    entra = {"iss": "https://sts.windows.net/a@b/", "aud": "api://app@contoso", "exp": T0 + 60}
    checks = _by_id(signed(entra), at=T0)
    assert checks["required-claims"].ok is True  # no nameid needed outside S2S
    assert "audience-form" not in checks


def test_host_edge_cases() -> None:
    v6 = signed(actor_claims(aud="00000002-0000-0ff1-ce00-000000000000/2001:db8::1@contoso.com"))
    assert _by_id(v6, host="2001:db8::1")["audience-host"].ok is True
    bracketed = signed(actor_claims(aud="00000002-0000-0ff1-ce00-000000000000/[a]@contoso.com"))
    assert _by_id(bracketed, host="[a]b]:443")["audience-host"].ok is True


@pytest.mark.parametrize(
    ("life", "message"),
    [
        (144181, "lifetime 40.1 h is outside (0, 24 h]"),
        (263521, "lifetime 3.1 days is outside (0, 24 h]"),
    ],
)
def test_long_spans_round_to_a_tenth(life: int, message: str) -> None:
    assert _one(T0, exp=T0 + life)["lifetime"].message == message
