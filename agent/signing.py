"""Standard Webhooks signing, kept pure so receivers' expectations are tested without I/O.

A webhook receiver verifies that a payload came from this agent and was not replayed by
checking ``webhook-signature`` against ``{webhook-id}.{webhook-timestamp}.{body}`` with a
secret both sides share (https://www.standardwebhooks.com). Secrets are written in the
spec's ``whsec_<base64>`` form; the HMAC key is the decoded bytes, not the text.

Error messages name the problem and never echo the secret, because they end up in logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
_KEY_BYTES = 32


def generate_secret() -> str:
    """A fresh random secret in ``whsec_<base64>`` form (32 bytes of key)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")


MIN_KEY_BYTES = 16  # Standard Webhooks recommends 24 to 64


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret; ``ValueError`` says what is wrong."""
    if not isinstance(secret, str):
        raise ValueError(f"webhook secret must be a string, not {type(secret).__name__}")
    if not secret.startswith(PREFIX):
        raise ValueError(f"webhook secret must start with '{PREFIX}' (generate one with a Standard Webhooks tool)")
    encoded = secret[len(PREFIX) :].strip()
    if not encoded:
        raise ValueError(f"webhook secret has nothing after '{PREFIX}'")
    # Many tools print the key without its trailing '=' padding; accept it as other libraries do.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"webhook secret is not valid base64 after '{PREFIX}'") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"webhook secret is too short: {len(key)} bytes, at least {MIN_KEY_BYTES} (lifeguard gen-secret makes one)"
        )
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value (``v1,<base64 HMAC-SHA256>``) for one attempt."""
    key = decode_secret(secret)
    return sign_with_key(key, msg_id, timestamp, body)


def sign_with_key(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Like ``sign`` with an already decoded key, so a notifier decodes its secret once."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")
