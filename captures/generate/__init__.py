"""Deterministic generator of the bundled sample captures (described in captures/README.md).

Run ``python captures/generate`` from the repository root (``--out DIR``, ``--new-keys``: see
``__main__.py``). Every output is byte-identical from run to run: timestamps, ISNs, ports and
identifiers are fixed, "random" bytes come from SHA-256 of a label, RS256 (RSASSA-PKCS1-v1_5)
signatures are deterministic for a fixed key, and gzip bodies use the package's own deflate
encoder so the result does not depend on the zlib build. Only ``--new-keys`` is random, and its
output is committed. Scapy only builds the IP/TCP/link headers; the files are written with
``struct``.

Layout, building blocks first, then one module per capture:

- ``constants``: captures/ and keys/ paths, the clock (``T0``), the lab's app ids and realm;
- ``encoding``, ``deflate``, ``der``: base64, fingerprints, label-derived bytes; gzip; DER;
- ``ntlm``, ``kerberos``, ``tokens``, ``keys``: NTLM, Kerberos/SPNEGO, JWTs and the TEST keys;
- ``messages``, ``wire``, ``tls``: HTTP messages, links and TCP connections, TLS records;
- ``ews``, ``lab``: the Exchange / Skype for Business world the stories share;
- ``capture``, ``truth``, ``writers``, ``bundle``: a capture's events and ground truth, its JSON
  and pcap/pcapng files, and the list of all captures (``generate``);
- ``frompcap``, ``archives``: the same traffic read back from a written pcap and written as a
  Fiddler SAZ and a HAR (``python captures/generate --archives``);
- ``scenarios/``: ``exchange_sfb``, ``messy``, ``small_basic``, ``findings``, ``healthy_oauth``,
  ``classes``, ``certificates``, each building one capture.

The names below are those ``hybrid.py``, ``record_tls.py`` and the tests use: ``import generate``
with captures/ on ``sys.path`` gives them all.
"""

from __future__ import annotations

from .bundle import generate
from .capture import Capture
from .constants import ACS_ID, EXCHANGE_ID, KEYS_REL, MS, REALM, SEC, SFB_ID, T0, TENANT, US
from .deflate import gzip_bytes
from .encoding import b64, det_guid, fp12, http_date, iso_z, json_bytes, prng
from .ews import (
    create_item,
    create_item_response,
    find_item_inbox,
    find_item_response,
    get_folder,
    get_folder_response,
    oof_request,
    oof_response,
)
from .kerberos import (
    OID_MS_KRB5,
    OID_NTLM,
    kerberos_ap_req,
    kerberos_error,
    spnego_init_krb5,
    spnego_init_ntlm,
    spnego_resp,
    spnego_resp_krb5,
)
from .keys import TestKey, load_keys
from .lab import (
    ALICE,
    BOB,
    CAROL,
    ExchangeWorld,
    Lab,
    exchange_bearer,
    exchange_metadata,
    sfb_metadata,
)
from .messages import (
    AuthHeader,
    HeaderItem,
    Request,
    Response,
    authorization,
    basic,
    challenge,
    is_event,
)
from .ntlm import (
    NtlmAuth,
    md4,
    ntlm_authenticate,
    ntlm_challenge,
    ntlm_negotiate,
    ntlm_target_info,
    ntlmv1_response,
)
from .tls import tls_client_hello
from .tokens import jwt_parts, mint_rs256, mint_unsigned, rs256_valid, tamper, user_context
from .truth import finish
from .wire import C, Conn, Frame, Host, S
from .writers import write_pcap

__all__ = [
    "ACS_ID",
    "ALICE",
    "BOB",
    "CAROL",
    "EXCHANGE_ID",
    "KEYS_REL",
    "MS",
    "OID_MS_KRB5",
    "OID_NTLM",
    "REALM",
    "SEC",
    "SFB_ID",
    "T0",
    "TENANT",
    "US",
    "AuthHeader",
    "C",
    "Capture",
    "Conn",
    "ExchangeWorld",
    "Frame",
    "HeaderItem",
    "Host",
    "Lab",
    "NtlmAuth",
    "Request",
    "Response",
    "S",
    "TestKey",
    "authorization",
    "b64",
    "basic",
    "challenge",
    "create_item",
    "create_item_response",
    "det_guid",
    "exchange_bearer",
    "exchange_metadata",
    "find_item_inbox",
    "find_item_response",
    "finish",
    "fp12",
    "generate",
    "get_folder",
    "get_folder_response",
    "gzip_bytes",
    "http_date",
    "is_event",
    "iso_z",
    "json_bytes",
    "jwt_parts",
    "kerberos_ap_req",
    "kerberos_error",
    "load_keys",
    "md4",
    "mint_rs256",
    "mint_unsigned",
    "ntlm_authenticate",
    "ntlm_challenge",
    "ntlm_negotiate",
    "ntlm_target_info",
    "ntlmv1_response",
    "oof_request",
    "oof_response",
    "prng",
    "rs256_valid",
    "sfb_metadata",
    "spnego_init_krb5",
    "spnego_init_ntlm",
    "spnego_resp",
    "spnego_resp_krb5",
    "tamper",
    "tls_client_hello",
    "user_context",
    "write_pcap",
]
