"""OAuth: tokens (decoding, actor layers), keys (metadata, JWKS, certificates), principals
(Microsoft app ids, iss/aud/realm grammar), the checks a token is judged by, Microsoft's
``x-ms-diagnostics``, and the token-endpoint / metadata exchanges."""
