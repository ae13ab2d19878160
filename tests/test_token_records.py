"""What the token stage adds to events and the token table: the per-use expiry flags, the
signature of an outer token standing on its actor's, where the verifying key came from, who a
token speaks for, and when an issued token counts as seen. Through ``analyze_paths`` on the
bundled captures, and ``TokenAnalysis`` over events carrying tokens signed with the TEST keys."""

from __future__ import annotations

from pathlib import Path

from token_kit import EXO_AUD, KEYS_DIR, SFB_ISS, T0, actor_claims, s2s, signed, unsigned

from analyzer.analysis.tokens import TokenAnalysis, load_keys
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import Event, evolve
from analyzer.oauth.keys import KeyStore

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
HEALTHY = str(CAPTURES / "healthy-oauth.pcap")
EXCHANGE_CERT = str(KEYS_DIR / "exchange.cert.pem")


def tp(x5t: str) -> str:
    """`` (thumbprint HEX)``: the hex SHA-1 Windows shows, decoded here from the base64url x5t."""
    import base64

    raw = base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4))
    return f" (thumbprint {raw.hex().upper()})" if len(raw) == 20 else ""


def _healthy() -> AnalysisResult:
    """Analysed afresh on every call: a cached result would hide mutants from the tests."""
    return analyze_paths([HEALTHY])


def _bearer_event() -> Event:
    return next(e for e in _healthy().events if e.token_format == "jwt-unsigned")


def _use(text: str | None, ts: float, **changes: object) -> Event:
    """The healthy capture's first S2S request, carrying ``text`` at ``ts`` (its own token
    fields cleared, and its head's last segment's time: the use is at ``ts`` alone)."""
    cleared = {name: None for name in Event.__dataclass_fields__ if name.startswith("token_")}
    cleared["token_flags"] = ()
    cleared["request_last_ts"] = None
    fields = {**cleared, "credential": text, "ts": ts, "response_ts": ts + 0.02, **changes}
    return evolve(_bearer_event(), **fields)


def _analysis(*key_files: str) -> TokenAnalysis:
    return TokenAnalysis(load_keys([], key_files))


def test_healthy_capture_token_table() -> None:
    rows = {t.fingerprint: t for t in _healthy().tokens}
    actor = rows["930337355ba4"]
    assert (actor.role, actor.format, actor.signature, actor.uses) == (
        "actor",
        "jwt",
        "verified",
        6,
    )
    assert actor.signature_detail == (
        "RS256 verified with RSA-8192 x5t=US-Sa0BJHwUJ8WkaF0G6FIERR5Y"
        f"{tp('US-Sa0BJHwUJ8WkaF0G6FIERR5Y')} "
        "(s2s-metadata http://sfbpool01.contoso.com/metadata/json/1)"
    )
    assert actor.key_source == (
        "http://sfbpool01.contoso.com/metadata/json/1 (captured 2026-03-02T13:00:00Z)"
    )
    assert actor.outer_fps == ("1011e74bb3d2", "22cfebba7867", "8e5b4e8cd90e")
    assert (actor.first_seen, actor.last_seen) == (1772456402.50466, 1772456440.93864)
    assert (actor.clients, actor.servers) == (("10.1.0.20",), ("10.1.0.10:80",))
    assert (actor.lifetime, actor.subject, actor.realm) == (86400.0, None, "contoso.com")
    outer = rows["1011e74bb3d2"]
    assert (outer.role, outer.signature, outer.uses, outer.actor_fp) == (
        "bearer", "unsigned", 2, "930337355ba4",
    )  # fmt: skip
    assert (outer.iss_app, outer.aud_app, outer.aud_host) == (
        "Skype for Business / Lync", "Exchange", "mail.contoso.com",
    )  # fmt: skip
    assert (outer.subject, outer.lifetime, outer.flags) == (
        "alice.johnson@contoso.com",
        28800.0,
        (),
    )
    assert outer.text is None
    empty = rows["e3b0c44298fc"]
    assert (empty.format, empty.signature, empty.signature_detail) == (
        "empty", "not-checked", "empty token: nothing to verify",
    )  # fmt: skip
    assert [t.fingerprint for t in _healthy().tokens][:2] == ["e3b0c44298fc", "1011e74bb3d2"]


def test_outer_token_event_shows_its_actors_signature_and_key() -> None:
    event = next(e for e in _healthy().events if e.token_fp == "1011e74bb3d2")
    assert (event.token_format, event.token_signature) == ("jwt-unsigned", "verified")
    assert event.token_key_source == (
        "http://sfbpool01.contoso.com/metadata/json/1 (captured 2026-03-02T13:00:00Z)"
    )
    assert (event.token_actor_iss, event.token_actor_fp) == (
        "00000004-0000-0ff1-ce00-000000000000@contoso.com", "930337355ba4",
    )  # fmt: skip
    assert (event.token_iss_app, event.token_aud_app, event.token_aud_host) == (
        "Skype for Business / Lync", "Exchange", "mail.contoso.com",
    )  # fmt: skip
    assert (event.token_realm, event.token_subject) == ("contoso.com", "alice.johnson@contoso.com")
    assert event.token_flags == ()
    assert event.token_alg == "none"
    assert event.token_nameid is not None and event.token_nbf is not None
    assert event.token_exp == event.token_nbf + 28800


def test_expiry_is_flagged_per_use_with_the_five_minute_skew() -> None:
    text = s2s(nbf=T0, exp=T0 + 3600, actor=actor_claims(exp=T0 + 86400))
    analysis = _analysis(EXCHANGE_CERT)
    uses = [_use(text, T0 + 3600 + 300), _use(text, T0 + 3600 + 301), _use(text, T0 - 301)]
    events = analysis.enrich(uses)
    assert [e.token_flags for e in events] == [
        (),
        ("expired",),
        ("not-yet-valid", "actor-not-yet-valid"),  # both layers start at T0
    ]
    assert _analysis(EXCHANGE_CERT).event_fields(uses)[1]["token_flags"] == ("expired",)
    (outer, actor) = analysis.records()
    assert (outer.uses, outer.first_seen, outer.last_seen) == (3, T0 - 301, T0 + 3901)
    # the table judges a token at its first use
    assert outer.flags == ("not-yet-valid", "actor-not-yet-valid")
    assert {c["id"]: c["ok"] for c in outer.checks}["not-yet-valid"] is False
    assert actor.role == "actor" and actor.uses == 3


def test_signature_comes_from_the_keys_given_or_is_flagged() -> None:
    text = s2s()
    event = _use(text, T0 + 10)
    (without,) = _analysis().enrich([event])
    assert without.token_signature == "unknown-key"
    assert without.token_flags == ("actor-unknown-key",)
    assert without.token_key_source is None
    (with_key,) = _analysis(EXCHANGE_CERT).enrich([event])
    assert (with_key.token_signature, with_key.token_flags) == ("verified", ())
    assert with_key.token_key_source == EXCHANGE_CERT  # a file: no capture time


def test_bad_signatures_are_flagged_on_either_layer() -> None:
    forged_actor = signed(actor_claims(), key="acs")
    head, body, _ = forged_actor.split(".")
    _, _, exchange_sig = signed(actor_claims(exp=T0 + 7200)).split(".")
    bad = f"{head}.{body}.{exchange_sig}"  # names the ACS key, carries another signature
    analysis = _analysis(str(KEYS_DIR / "acs.cert.pem"))
    text = unsigned({
        "aud": EXO_AUD, "iss": SFB_ISS, "nbf": str(T0), "exp": str(T0 + 3600),
        "nameid": "S-1-5-21-1", "actortoken": bad,
    })  # fmt: skip
    (event,) = analysis.enrich([_use(text, T0 + 10)])
    assert event.token_signature == "bad-signature"
    assert event.token_flags == ("actor-bad-signature",)
    (single,) = analysis.enrich([_use(bad, T0 + 10)])
    assert single.token_signature == "bad-signature"
    assert single.token_flags[-1] == "bad-signature"
    assert analysis.signature(_decoded(bad)).status == "bad-signature"


def _decoded(text: str):
    from analyzer.oauth.tokens import decode_token

    return decode_token(text)


def test_signed_single_token_stands_on_its_own_signature() -> None:
    text = signed(actor_claims())
    (event,) = _analysis(EXCHANGE_CERT).enrich([_use(text, T0 + 10)])
    assert (event.token_format, event.token_signature, event.token_flags) == ("jwt", "verified", ())
    assert event.token_key_source == EXCHANGE_CERT
    assert event.token_actor_iss is None and event.token_actor_fp is None


def test_who_a_token_speaks_for_and_its_realm() -> None:
    cases = [
        ({"upn": "u@c", "smtp": "s@c", "sip": "p@c", "sub": "x"}, "u@c"),
        ({"smtp": "s@c", "sip": "p@c", "sub": "x"}, "s@c"),
        ({"sip": "p@c", "sub": "x"}, "p@c"),
        ({"sub": "x"}, "x"),
        ({}, None),
    ]
    analysis = _analysis(EXCHANGE_CERT)
    for extra, subject in cases:
        (event,) = analysis.enrich([_use(signed(actor_claims(**extra)), T0)])
        assert event.token_subject == subject, extra
    realms = [
        (actor_claims(), "contoso.com"),
        (actor_claims(aud="api://contoso"), "contoso.com"),
        (actor_claims(aud="00000002-0000-0ff1-ce00-000000000000/h@tenant", iss="i@other"),
         "tenant"),
        (actor_claims(aud="api://x", iss="https://sts.windows.net/t/"), None),
        (actor_claims(aud="x/h@", iss="i@fallback"), "fallback"),
    ]  # fmt: skip
    for claims, realm in realms:
        (event,) = analysis.enrich([_use(signed(claims), T0)])
        assert event.token_realm == realm, claims
    (event,) = analysis.enrich([_use(signed(actor_claims(aud="api://x")), T0)])
    assert (event.token_aud_app, event.token_aud_host, event.token_iss_app) == (
        None, None, "Skype for Business / Lync",
    )  # fmt: skip


def test_lifetime_in_the_table_counts_from_nbf_else_iat() -> None:
    analysis = _analysis(EXCHANGE_CERT)
    no_nbf = {k: v for k, v in actor_claims(iat=T0 - 60).items() if k != "nbf"}
    analysis.enrich([
        _use(signed(actor_claims(iat=T0 - 60)), T0),
        _use(signed(no_nbf), T0 + 1),
        _use(signed({k: v for k, v in no_nbf.items() if k != "iat"}), T0 + 2),
    ])  # fmt: skip
    assert [r.lifetime for r in analysis.records()] == [3600.0, 3660.0, None]


def test_issued_tokens_count_from_the_response_and_are_not_uses() -> None:
    issued = signed(actor_claims())
    event = _use(None, T0, access_token=issued, scheme="none")
    analysis = _analysis(EXCHANGE_CERT)
    (enriched,) = analysis.enrich([event])
    assert enriched.token_fp is not None and enriched.token_signature == "verified"
    assert "audience-host" not in str(enriched.token_flags)
    (record,) = analysis.records()
    assert (record.role, record.uses, record.clients, record.servers) == (
        "access-token", 0, (), (),
    )  # fmt: skip
    assert record.first_seen == T0 + 0.02  # the response carried it
    no_answer = evolve(event, response_ts=None)
    again = _analysis(EXCHANGE_CERT)
    again.enrich([no_answer])
    assert again.records()[0].first_seen == T0
    checks = {c["id"] for c in record.checks}
    assert "audience-host" not in checks  # issued, not presented to a Host


def test_presented_token_is_checked_against_the_host() -> None:
    analysis = _analysis(EXCHANGE_CERT)
    (event,) = analysis.enrich([_use(signed(actor_claims()), T0, host="other.contoso.com")])
    assert event.token_flags == ("audience-host",)
    (record,) = analysis.records()
    assert {c["id"]: c["ok"] for c in record.checks}["audience-host"] is False
    assert record.flags == ("audience-host",)


def test_non_bearer_credentials_are_not_tokens_and_text_needs_reveal() -> None:
    analysis = _analysis()
    (event,) = analysis.enrich([_use(signed(actor_claims()), T0, scheme="basic")])
    assert event.token_fp is None and analysis.records() == []
    assert analysis.event_fields([_use("x", T0, scheme="basic")]) == [{}]
    text = signed(actor_claims())
    analysis.enrich([_use(text, T0)])
    assert analysis.records()[0].text is None
    assert analysis.records(reveal_secrets=True)[0].text == text
    assert "actortoken" not in (analysis.records(reveal_secrets=True)[0].claims or {})


def test_each_token_is_verified_once() -> None:
    store = load_keys([], [EXCHANGE_CERT])
    assert isinstance(store, KeyStore) and len(store) == 1
    analysis = TokenAnalysis(store)
    token = _decoded(signed(actor_claims()))
    first = analysis.signature(token)
    assert analysis.signature(token) is first


def test_captured_metadata_documents_fill_the_key_store() -> None:
    store = load_keys(_healthy().events)
    assert len(store) == 1
    (key,) = store
    assert key.source.location == "http://sfbpool01.contoso.com/metadata/json/1"
    assert key.source.ts == 1772456400.10056


# -- the token table row ------------------------------------------------------------------
def test_a_token_row_carries_the_decoded_fields_and_masks_secrets() -> None:
    claims = actor_claims(appid="app-1", iat=T0 - 5, client_secret="s3cr3t")
    text = signed(claims, kid=True)
    analysis = _analysis(EXCHANGE_CERT)
    analysis.enrich([
        _use(text, T0, client_ip="10.9.9.9", server_port=443),
        _use(text, T0 + 1),
    ])  # fmt: skip
    (row,) = analysis.records()
    x5t = row.x5t
    assert (row.typ, row.kid, row.alg, row.format) == ("JWT", x5t, "RS256", "jwt")
    assert (row.nameid, row.appid, row.iat, row.nbf, row.exp) == (
        SFB_ISS, "app-1", T0 - 5, T0, T0 + 3600,
    )  # fmt: skip
    assert (row.iss, row.aud) == (SFB_ISS, EXO_AUD)
    assert row.signature_detail == (
        f"RS256 verified with RSA-2048 x5t={x5t}{tp(x5t)} (pem {EXCHANGE_CERT})"
    )
    assert row.key_source == EXCHANGE_CERT
    assert row.problems == ()
    assert row.header == {"typ": "JWT", "alg": "RS256", "x5t": x5t, "kid": x5t}
    assert row.claims is not None and row.claims["client_secret"].startswith("<redacted fp=")
    assert row.claims["appid"] == "app-1"
    assert row.clients == ("10.1.0.20", "10.9.9.9")
    assert row.servers == ("10.1.0.10:443", "10.1.0.10:80")
    assert row.uses == 2 and row.flags == ()
    assert [c["id"] for c in row.checks][:2] == ["decodes", "signed"]


def test_outer_and_actor_rows_reveal_their_own_text() -> None:
    text = s2s()
    analysis = _analysis(EXCHANGE_CERT)
    analysis.enrich([_use(text, T0 + 10)])
    outer, actor = analysis.records(reveal_secrets=True)
    assert outer.text == text
    assert actor.text == _decoded(text).actor_token.text  # type: ignore[union-attr]
    assert actor.outer_fps == (outer.fingerprint,)
    assert (actor.uses, actor.clients) == (1, ("10.1.0.20",))


def test_bearer_role_requires_nameid_in_events_and_rows() -> None:
    no_nameid = {k: v for k, v in actor_claims().items() if k != "nameid"}
    analysis = _analysis(EXCHANGE_CERT)
    (event,) = analysis.enrich([_use(signed(no_nameid), T0)])
    assert event.token_flags == ("required-claims",)
    (row,) = analysis.records()
    assert row.flags == ("required-claims",)
    assertion = _analysis(EXCHANGE_CERT)
    (event,) = assertion.enrich([_use(None, T0, assertion=signed(no_nameid))])
    assert event.token_flags == ()  # a client assertion carries no nameid


def test_actor_rows_are_checked_against_the_host_it_was_presented_to() -> None:
    analysis = _analysis(EXCHANGE_CERT)
    analysis.enrich([_use(s2s(), T0 + 10, host="other.contoso.com")])
    outer, actor = analysis.records()
    assert "audience-host" in outer.flags
    assert "actor-audience-host" not in actor.flags and "audience-host" in actor.flags


def test_issued_tokens_are_not_checked_against_the_host() -> None:
    analysis = _analysis(EXCHANGE_CERT)
    event = _use(None, T0, access_token=signed(actor_claims()), host="other.contoso.com")
    (enriched,) = analysis.enrich([event])
    assert enriched.token_flags == ()


def test_a_signed_outer_token_shows_its_own_signature() -> None:
    outer = signed({**actor_claims(), "actortoken": signed(actor_claims())}, key="acs")
    (event,) = _analysis(EXCHANGE_CERT).enrich([_use(outer, T0 + 10)])
    assert event.token_signature == "unknown-key"
    assert event.token_key_source is None
    assert event.token_flags == ("decodes", "outer-unsigned", "unknown-key")  # Exchange 2001


def test_only_principal_strings_name_a_product() -> None:
    analysis = _analysis(EXCHANGE_CERT)
    bare_id = actor_claims(iss="00000002-0000-0ff1-ce00-000000000000")
    url_with_at = actor_claims(iss="https://sts.windows.net/a@b/")
    (bare,) = analysis.enrich([_use(signed(bare_id), T0)])
    (url,) = analysis.enrich([_use(signed(url_with_at), T0)])
    assert (bare.token_iss_app, url.token_iss_app) == (None, None)


def test_one_token_presented_to_two_hosts_is_judged_per_host() -> None:
    text = signed(actor_claims())
    analysis = _analysis(EXCHANGE_CERT)
    events = analysis.enrich([
        _use(text, T0, host="mail.contoso.com"),
        _use(text, T0 + 1, host="other.contoso.com"),
        _use(text, T0 + 2, host="mail.contoso.com"),
    ])  # fmt: skip
    assert [e.token_flags for e in events] == [(), ("audience-host",), ()]


def test_a_token_sharing_a_fingerprint_does_not_share_a_signature() -> None:
    """Signatures are remembered per token text: the 12-hex fingerprint is 48 bits, and a
    crafted second preimage (hours of GPU time) must not inherit a verified token's status."""
    from dataclasses import replace

    from analyzer.oauth.tokens import decode_token

    good = decode_token(signed(actor_claims()))
    head, body, sig = good.text.split(".")
    forged_text = f"{head}.{body}.{sig[:-4]}AAAA"
    forged = replace(decode_token(forged_text), fingerprint=good.fingerprint)
    analysis = _analysis(str(KEYS_DIR / "exchange.cert.pem"))
    assert analysis.signature(good).status == "verified"
    assert analysis.signature(forged).status == "bad-signature"
    assert analysis.verifying_keys() == {good.fingerprint: analysis.signature(good).key}
