"""Microsoft S2S principal names (``<app id>[/<host>]@<realm>``) as pure functions.

Parses the principal strings found in S2S tokens (``iss``, ``aud``, ``nameid``, actor claims),
in ``trusted_issuers`` challenge parameters and in ACS ``resource`` fields; names the well-known
first-party application ids; labels realms; and flags the mistakes seen in the field (a digit
missing from a GUID, uppercase ids, a domain where a tenant GUID belongs). Facts and sources are in
``docs``' Microsoft S2S notes, sections 1 and 2. Nothing here raises on hostile input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

__all__ = [
    "APP_ALIASES",
    "WELL_KNOWN_APPS",
    "Principal",
    "edit_distance",
    "is_guid",
    "nearest_well_known",
    "parse_principal",
    "parse_trusted_issuers",
    "principals_equal",
    "resolve_app",
    "resolve_app_exact",
    "same_issuer",
]

_CONSUMER = "consumer-side partner known to Exchange"

#: Lowercase app id -> product name to display. Order matters: on an edit-distance tie the
#: earlier entry is suggested, so the S2S workloads come first.
WELL_KNOWN_APPS: dict[str, str] = {
    # Office server workloads that speak S2S ("0ff1ce" family).
    "00000002-0000-0ff1-ce00-000000000000": "Exchange",
    "00000003-0000-0ff1-ce00-000000000000": "SharePoint",
    "00000004-0000-0ff1-ce00-000000000000": "Skype for Business / Lync",
    "00000001-0000-0000-c000-000000000000": "Microsoft STS (Azure ACS / Entra ID)",
    "00000005-0000-0ff1-ce00-000000000000": "Yammer (Viva Engage)",
    "00000006-0000-0ff1-ce00-000000000000": "Office 365 Portal",
    "00000007-0000-0ff1-ce00-000000000000": "Exchange Online Protection",
    # Azure / AAD-era first-party services ("c000" family).
    "00000007-0000-0000-c000-000000000000": "Dynamics CRM (Dataverse)",
    "00000002-0000-0000-c000-000000000000": "Azure AD Graph",
    "00000003-0000-0000-c000-000000000000": "Microsoft Graph",
    "00000005-0000-0000-c000-000000000000": "Microsoft Azure Workflow (Workflow Manager)",
    "00000008-0000-0000-c000-000000000000": "Microsoft.Azure.DataMarket",
    "00000009-0000-0000-c000-000000000000": "Power BI Service",
    "0000000a-0000-0000-c000-000000000000": "Microsoft Intune",
    "0000000b-0000-0000-c000-000000000000": "Microsoft Seller Dashboard",
    "0000000c-0000-0000-c000-000000000000": "Microsoft App Access Panel",
    "00000011-0000-0000-c000-000000000000": "Office Service Manager",
    "00000012-0000-0000-c000-000000000000": "Microsoft Rights Management Services",
    "00000015-0000-0000-c000-000000000000": "Microsoft Dynamics ERP",
    # Consumer-side partners in Exchange's code.
    "00000002-0000-0ff1-ce00-100000000002": f"OneDrive ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000003": f"OMEX / Office Store ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000004": f"Microsoft account / MSA ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000005": f"ABCH address book ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000006": f"Information Protection ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000007": f"Messenger Server ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000008": f"MSN ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-100000000009": f"Accounts Grading Platform ({_CONSUMER})",
    "00000002-0000-0ff1-ce00-200000000000": (
        "not an app: Exchange self-issuing token realm constant"
    ),
    # Client applications (appear as appid/aud in Entra tokens rather than as S2S principals).
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264": "Microsoft Teams (client)",
    "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe": "Microsoft Teams Services",
    "5e3ce6c0-2b1f-4285-8d4b-75ee78787346": "Microsoft Teams Web Client",
    "e1829006-9cf1-4d05-8b48-2e665cb48e6a": "Microsoft Teams Web Client",
    "48ac35b8-9aa8-4d74-927d-1f4a14a0b239": "Skype and Teams Tenant Admin API",
    "5d661950-3475-41cd-a2c3-d671a3162bc1": "Microsoft Outlook",
    "bc59ab01-8403-45c6-8796-ac3ef710b3e3": "Outlook Online Add-in App",
    "47629505-c2b6-4a80-adb1-9b3a3d233b7b": "Microsoft Exchange Web Services",
    "a0c73c16-a7e3-4564-9a95-2bdf47383716": "Legacy Exchange Online (Remote PowerShell client)",
    "d3590ed6-52b3-4102-aeff-aad2292ab01c": "Microsoft Office (client)",
    "797f4846-ba00-4fd7-ba43-dac1f8f63013": "Azure Resource Manager / Service Management API",
    "39624784-6cbe-4a60-afbe-9f46d10fdb27": "Teams and Skype for Business Administration",
    "00f82732-f451-4a01-918c-0e9896e784f9": "Skype for Business Application Configuration Service",
    "7557eb47-c689-4224-abcf-aef9bd7573df": "Skype for Business (client app)",
    "00b41c95-dab0-4487-9791-b9d2c32c80f2": "Office 365 Management",
    "fb78d390-0c51-40cd-8e17-fdbfab77341b": "Microsoft Exchange REST API Based Powershell",
    "2d4d3d8e-2be3-4bef-9f87-7875a61c29de": "OneNote",
    # Uncertain ones: labelled with what is known.
    "00000001-0001-0000-c000-000000000000": (
        "unknown (probably an alternate ACS instance; trusted issuer in the MS-XOAUTH example)"
    ),
    "00000001-0002-0000-c000-000000000000": (
        "unknown (probably sovereign-cloud ACS; seen in a 21Vianet Exchange Online challenge)"
    ),
    "d3776938-3dba-481f-a652-4bedfcab7cd8": (
        "unknown (listed among SharePoint Online trusted issuers)"
    ),
    "90140122-8516-11e1-8eff-49304924019b": (
        "not an app: realm SharePoint Online uses for its own issuer (meaning unknown)"
    ),
}

_EXO = "00000002-0000-0ff1-ce00-000000000000"
_SPO = "00000003-0000-0ff1-ce00-000000000000"
_SFB = "00000004-0000-0ff1-ce00-000000000000"
_ACS = "00000001-0000-0000-c000-000000000000"
#: Microsoft's token services (ACS / Entra ID and their other instances): the only issuers whose
#: actor tokens name another app (``nameid``) than themselves.
STS_APP_IDS = frozenset(
    {_ACS, "00000001-0001-0000-c000-000000000000", "00000001-0002-0000-c000-000000000000"}
)
_TEAMS = (
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
    "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
    "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
    "e1829006-9cf1-4d05-8b48-2e665cb48e6a",
)

#: Short names accepted by :func:`resolve_app` -> the app ids they stand for. Product aliases
#: name the S2S principal (not every client app of the product); ``teams`` names the Teams apps.
APP_ALIASES: dict[str, frozenset[str]] = {
    alias: frozenset(ids)
    for aliases, ids in (
        (("exchange", "exo", "exchange-online", "exchange-server", "exch"), (_EXO,)),
        (("sharepoint", "spo", "sharepoint-online", "sharepoint-server", "sp"), (_SPO,)),
        (
            ("skype", "lync", "sfb", "sfbo", "skype-for-business", "skype-for-business-online"),
            (_SFB,),
        ),
        (
            ("acs", "sts", "azure-acs", "microsoft-sts", "ests", "access-control"),
            (_ACS,),
        ),
        (("yammer", "viva-engage"), ("00000005-0000-0ff1-ce00-000000000000",)),
        (("office-portal", "o365-portal", "portal"), ("00000006-0000-0ff1-ce00-000000000000",)),
        (("eop", "exchange-online-protection"), ("00000007-0000-0ff1-ce00-000000000000",)),
        (
            ("crm", "dynamics", "dynamics-crm", "dataverse"),
            ("00000007-0000-0000-c000-000000000000",),
        ),
        (("aad-graph", "azure-ad-graph", "aad"), ("00000002-0000-0000-c000-000000000000",)),
        (("graph", "msgraph", "microsoft-graph"), ("00000003-0000-0000-c000-000000000000",)),
        (
            ("workflow", "workflow-manager", "azure-workflow"),
            ("00000005-0000-0000-c000-000000000000",),
        ),
        (("datamarket",), ("00000008-0000-0000-c000-000000000000",)),
        (("powerbi", "power-bi"), ("00000009-0000-0000-c000-000000000000",)),
        (("intune",), ("0000000a-0000-0000-c000-000000000000",)),
        (("rms", "rights-management", "azure-rms"), ("00000012-0000-0000-c000-000000000000",)),
        (("erp", "dynamics-erp"), ("00000015-0000-0000-c000-000000000000",)),
        (("onedrive",), ("00000002-0000-0ff1-ce00-100000000002",)),
        (("teams", "microsoft-teams"), _TEAMS),
        (("teams-admin",), ("48ac35b8-9aa8-4d74-927d-1f4a14a0b239",)),
        (("outlook",), ("5d661950-3475-41cd-a2c3-d671a3162bc1",)),
        (("ews", "exchange-web-services"), ("47629505-c2b6-4a80-adb1-9b3a3d233b7b",)),
        (("office", "office-client"), ("d3590ed6-52b3-4102-aeff-aad2292ab01c",)),
        (("arm", "azure-resource-manager"), ("797f4846-ba00-4fd7-ba43-dac1f8f63013",)),
        (("onenote",), ("2d4d3d8e-2be3-4bef-9f87-7875a61c29de",)),
    )
    for alias in aliases
}

_ROLES = frozenset({"issuer", "audience", "nameid", "trusted_issuer", "resource"})
_HOST_ROLES = frozenset({"audience", "resource"})
_MAX_CHARS = 2048  # a principal is ~100 characters; anything longer is cut
_MAX_LIST_CHARS = 64 * 1024
_MAX_LIST_ENTRIES = 256
_MAX_CACHED_LIST_CHARS = 8 * 1024  # longer trusted_issuers values are parsed, not cached
_MAX_SUGGEST_DISTANCE = 2
_GUID_LEN = 36

_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\Z")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?\Z", re.ASCII
)
_HOST = re.compile(r"[A-Za-z0-9_.\-:\[\]]+\Z", re.ASCII)
_SPACE = re.compile(r"\s")  # the characters str.isspace() accepts, no more, no fewer
_OFFICE_FAMILY = re.compile(r"[0-9a-f]{8}-0000-0ff1-ce00-000000000000\Z")
_AZURE_FAMILY = re.compile(r"[0-9a-f]{8}-0000-0000-c000-000000000000\Z")
_ENTRA_ISSUER_HOSTS = ("sts.windows.net", "login.microsoftonline.com", "login.windows.net")


def is_guid(text: Any) -> bool:
    """True for a bare 8-4-4-4-12 hex GUID (either case, no braces)."""
    return isinstance(text, str) and _GUID.match(text) is not None


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance (insert, delete, substitute) between ``a`` and ``b``.

    With ``limit``, stops early and returns ``limit + 1`` once the distance must exceed it.
    """
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if limit is not None and min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


@lru_cache(maxsize=1024)
def _nearest(lowered: str) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    for known in WELL_KNOWN_APPS:
        limit = _MAX_SUGGEST_DISTANCE if best is None else best[1] - 1
        if limit < 1:
            break
        d = edit_distance(lowered, known, limit)
        if d <= limit:
            best = (known, d)
    return best


def nearest_well_known(app_id: str) -> tuple[str, int] | None:
    """The well-known id ``app_id`` most likely meant, with its edit distance (1 or 2).

    Compared case-insensitively; ``None`` when ``app_id`` is itself well known or nothing is
    within distance 2. Ties go to the earlier entry of :data:`WELL_KNOWN_APPS`.
    """
    if not isinstance(app_id, str):
        return None
    lowered = app_id.strip().lower()
    if lowered in WELL_KNOWN_APPS or abs(len(lowered) - _GUID_LEN) > _MAX_SUGGEST_DISTANCE:
        return None
    return _nearest(lowered)


@dataclass(frozen=True, slots=True)
class Principal:
    """One parsed principal string and what it says (or gets wrong)."""

    raw: str  # input as given (cut at 2048 characters)
    app_id: str  # as written (whitespace trimmed)
    host: str | None  # the part after the last '/' before the realm, None without '/'
    realm: str | None  # after the last '@'; None when there is no '@'; "*" kept
    app_name: str | None  # product name when the id is well known (case-insensitive match)
    realm_kind: str  # any | tenant-guid | domain | url | empty | none | other
    app_id_kind: str  # guid | not-guid | url | empty
    suggestion: str | None = None  # the well-known id it most likely meant
    issues: tuple[str, ...] = ()
    family: str | None = None  # office-s2s (…-0ff1-ce00-…) | azure-first-party (…-c000-…)

    @property
    def well_known(self) -> bool:
        """True when the app id (any case) is in :data:`WELL_KNOWN_APPS`."""
        return self.app_id.lower() in WELL_KNOWN_APPS

    def display(self) -> str:
        """Readable form, e.g. ``Skype for Business / Lync (00000004-…)@contoso.com``."""
        if not self.raw.strip():
            return "(empty)"
        if self.app_id_kind == "url":
            return f"{self.app_name} <{self.app_id}>" if self.app_name else self.app_id
        if self.app_name:
            head = self.app_id.split("-", 1)[0] + "-…" if self.well_known else self.app_id
            text = f"{self.app_name} ({head})"
        else:
            text = self.app_id or "(no app id)"
        if self.host is not None:
            text += f"/{self.host}"
        if self.realm is not None:
            text += f"@{self.realm}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``issues`` as a list, ``display`` included)."""
        return {
            "raw": self.raw,
            "app_id": self.app_id,
            "host": self.host,
            "realm": self.realm,
            "app_name": self.app_name,
            "realm_kind": self.realm_kind,
            "app_id_kind": self.app_id_kind,
            "suggestion": self.suggestion,
            "issues": list(self.issues),
            "family": self.family,
            "display": self.display(),
        }


def _realm_kind(realm: str | None) -> str:
    if realm is None:
        return "none"
    if realm == "":
        return "empty"
    if realm == "*":
        return "any"
    if is_guid(realm):
        return "tenant-guid"
    if _URL.match(realm):
        return "url"
    if _DOMAIN.match(realm):
        return "domain"
    return "other"


def _family(lowered: str) -> str | None:
    if _OFFICE_FAMILY.match(lowered):
        return "office-s2s"
    if _AZURE_FAMILY.match(lowered):
        return "azure-first-party"
    return None


def _url_issuer_name(url: str) -> str | None:
    host = url.split("://", 1)[1].split("/", 1)[0].lower()
    if host in _ENTRA_ISSUER_HOSTS:
        return "Entra ID (Azure AD) v1 issuer URL"
    return None


def _split(text: str) -> tuple[str, str | None, str | None]:
    """``<id>[/<host>]@<realm>``: realm after the last '@', host after the last '/' left of it."""
    left, at, realm = text.rpartition("@")
    if not at:
        left, realm_opt = text, None
    else:
        realm_opt = realm
    app_id, slash, host = left.rpartition("/")
    if not slash:
        return left, None, realm_opt
    return app_id, host, realm_opt


def parse_principal(
    text: str, *, role: str | None = None, expect_tenant: bool = False
) -> Principal:
    """Parse ``<id>[/<host>]@<realm>`` (Exchange's rule: last '@', then last '/').

    ``role`` (issuer | audience | nameid | trusted_issuer | resource) enables the checks that
    only make sense in that place, e.g. an audience must carry a host. ``expect_tenant`` says the
    realm should be a tenant GUID (ACS / Entra context); a domain realm is then flagged. A realm
    of the Microsoft STS principal is always checked that way. Never raises.

    Results are cached (``Principal`` is immutable): the same few principals come back in every
    token, check and challenge of a capture.
    """
    if (
        type(text) is str
        and len(text) <= _MAX_CHARS
        and (role is None or type(role) is str)
        and type(expect_tenant) is bool
    ):
        return _parse_principal_cached(text, role, expect_tenant)
    return _parse_principal(text, role, expect_tenant)


def _parse_principal(text: Any, role: Any, expect_tenant: Any) -> Principal:
    """``parse_principal`` without the cache."""
    issues: list[str] = []
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not isinstance(text, str):
        text = ""
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS]
        issues.append(f"input cut at {_MAX_CHARS} characters")
    raw = text
    role = role if role in _ROLES else None
    text = text.strip()
    if not text:
        return Principal(raw, "", None, None, None, "none", "empty", None, ("empty principal",))

    folded = text.lower()
    if ("%40" in folded and "@" not in text) or ("%2f" in folded and "/" not in text):
        text = unquote(text)
        issues.append("principal was URL-encoded")
    if _SPACE.search(text):
        issues.append("whitespace inside principal")

    if _URL.match(text):
        # An issuer URL such as https://sts.windows.net/*/ (Entra v1): not split at '@' or '/'.
        return Principal(
            raw, text, None, None, _url_issuer_name(text), "none", "url", None, tuple(issues)
        )

    app_id, host, realm = _split(text)
    if text.count("@") > 1:
        issues.append("more than one '@'")
    lowered = app_id.lower()
    app_name = WELL_KNOWN_APPS.get(lowered)
    family = _family(lowered)
    suggestion: str | None = None

    if not app_id:
        app_id_kind = "empty"
        issues.append("empty app id")
    elif is_guid(app_id):
        app_id_kind = "guid"
    else:
        app_id_kind = "not-guid"
        issues.append("app id is not a GUID")

    if app_id and app_name is None:
        near = nearest_well_known(app_id)
        if near is not None:
            suggestion = near[0]
            hint = f"did you mean {suggestion} ({WELL_KNOWN_APPS[suggestion]})?"
            if family is not None:
                hint = f"unlisted first-party id ({family} family); {hint}"
            issues.append(hint)
    if app_id != lowered and (app_id_kind == "guid" or app_name or suggestion):
        issues.append("uppercase app id: S2S principals are lowercase")

    if host is not None:
        if host == "":
            issues.append("empty host after '/'")
        elif not _HOST.match(host):
            issues.append("host is not a valid hostname")
    elif role in _HOST_ROLES:
        issues.append("audience has no /host part (MS-XOAUTH wants <id>/<host>@<realm>)")

    realm_kind = _realm_kind(realm)
    if realm_kind == "none" and role is not None:
        issues.append("no realm ('@<realm>' missing)")
    elif realm_kind == "empty":
        issues.append("empty realm after '@'")
    elif realm_kind == "domain" and (expect_tenant or lowered == _ACS):
        issues.append("realm is a domain where a tenant GUID is usual")
    if realm and realm != realm.lower():
        issues.append(
            "uppercase realm: realms compare case-sensitively and S2S values are lowercase"
        )

    return Principal(
        raw=raw,
        app_id=app_id,
        host=host,
        realm=realm,
        app_name=app_name,
        realm_kind=realm_kind,
        app_id_kind=app_id_kind,
        suggestion=suggestion,
        issues=tuple(issues),
        family=family,
    )


_parse_principal_cached = lru_cache(maxsize=4096)(_parse_principal)


def parse_trusted_issuers(value: str) -> list[Principal]:
    """Split a ``trusted_issuers`` value on commas (spaces tolerated) and parse each entry.

    Empty entries (a trailing comma) are skipped; surrounding double quotes are removed. At most
    256 entries from the first 64 KiB are read. Cached like ``parse_principal`` (a server sends
    the same list in every challenge); each call returns a new list.
    """
    if type(value) is str and len(value) <= _MAX_CACHED_LIST_CHARS:
        return list(_trusted_issuers_cached(value))
    return _parse_trusted_issuers(value)


def _parse_trusted_issuers(value: Any) -> list[Principal]:
    """``parse_trusted_issuers`` without the cache."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return []
    value = value[:_MAX_LIST_CHARS].strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    out: list[Principal] = []
    for entry in value.split(","):
        if len(out) >= _MAX_LIST_ENTRIES:
            break
        if entry.strip():
            out.append(parse_principal(entry, role="trusted_issuer"))
    return out


@lru_cache(maxsize=256)
def _trusted_issuers_cached(value: str) -> tuple[Principal, ...]:
    return tuple(_parse_trusted_issuers(value))


def principals_equal(a: str, b: str) -> bool:
    """Compare two principal strings by MS-XOAUTH 3.2.5.6 rules.

    App id and realm are compared case-sensitively, the host case-insensitively. Surrounding
    whitespace is ignored; a missing part only equals a missing part.
    """
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    a, b = a.strip()[:_MAX_CHARS], b.strip()[:_MAX_CHARS]
    if _URL.match(a) or _URL.match(b):
        return a == b
    pa, pb = _split(a), _split(b)
    host_a = pa[1].lower() if pa[1] is not None else None
    host_b = pb[1].lower() if pb[1] is not None else None
    return pa[0] == pb[0] and host_a == host_b and pa[2] == pb[2]


def same_issuer(published: str, token_iss: str) -> bool:
    """Does a metadata document's issuer name the issuer of a token: the same app id, in the
    same realm (case aside; a published realm ``*`` is any realm)?"""
    want, got = parse_principal(published), parse_principal(token_iss)
    same_realm = want.realm == "*" or (want.realm or "").lower() == (got.realm or "").lower()
    return bool(want.app_id) and want.app_id.lower() == got.app_id.lower() and same_realm


def _norm_name(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


_ALIAS_INDEX: dict[str, frozenset[str]] = {_norm_name(k): v for k, v in APP_ALIASES.items()}


def resolve_app(query: str) -> set[str]:
    """Lowercase app ids meant by ``query``: an id (any case), a principal, an alias or a name.

    Order: exact id; principal string (its app id); alias (:data:`APP_ALIASES`, punctuation and
    case ignored); exact product name; then product names containing the query (3+ characters).
    Unknown -> empty set. For a policy, where a near miss must not pass, use
    :func:`resolve_app_exact`.
    """
    exact = resolve_app_exact(query)
    if exact or not isinstance(query, str):
        return exact
    key = _norm_name(query.strip()[:_MAX_CHARS])
    if len(key) < 3 or "@" in query or "/" in query:
        return set()
    return {
        i
        for i, name in WELL_KNOWN_APPS.items()
        if key in _norm_name(name) and not name.startswith(("unknown", "not an app"))
    }


def resolve_app_exact(query: str) -> set[str]:
    """``resolve_app`` without the substring step: an id, a principal's id, an alias or a
    whole product name (case and punctuation ignored). ``skyp`` means nothing here."""
    if not isinstance(query, str):
        return set()
    q = query.strip()[:_MAX_CHARS]
    if not q:
        return set()
    lowered = q.lower()
    if lowered in WELL_KNOWN_APPS:
        return {lowered}
    key = _norm_name(q)
    named = {i for i, name in WELL_KNOWN_APPS.items() if key and _norm_name(name) == key}
    if named:  # a whole product name, which may hold a "/" ("Skype for Business / Lync")
        return named
    if ("@" in q or "/" in q) and not _URL.match(q):
        app_id = _split(q)[0].strip().lower()
        return {app_id} if app_id in WELL_KNOWN_APPS else set()
    return set(_ALIAS_INDEX.get(key, ()))
