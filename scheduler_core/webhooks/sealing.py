"""Endpoint secrets at rest: Fernet-encrypted when LLMSCHED_SECRET_KEY is set.

A copy of the database (a backup, a dump) then does not let its reader sign events.
Only the sender decrypts, just before signing; listings never carry the secret. Rows
stored in plain text (no key, or added before a key was set) keep working.

LLMSCHED_SECRET_KEY is one Fernet key, or several separated by commas while rotating:
the first encrypts, any of them decrypts.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from scheduler_core.webhooks.errors import WebhookSecretKeyError

KEY_ENV = "LLMSCHED_SECRET_KEY"
PREFIX = "fernet:"  # marks an encrypted stored secret
_MAKE_KEY = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def _keys() -> MultiFernet | None:
    raw = os.environ.get(KEY_ENV, "").strip()
    if not raw:
        return None
    try:
        return MultiFernet([Fernet(part.strip()) for part in raw.split(",") if part.strip()])
    except (ValueError, TypeError):
        # The value is a secret: the message never repeats it.
        raise WebhookSecretKeyError(
            f"{KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes, or several "
            f"separated by commas); {_MAKE_KEY}"
        ) from None


def seal(secret: str) -> str:
    """The secret as stored: encrypted when a key is configured, else as given."""
    keys = _keys()
    return secret if keys is None else PREFIX + keys.encrypt(secret.encode()).decode()


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def unseal(stored: str, *, endpoint_id: int) -> str:
    """The secret to sign with; WebhookSecretKeyError when it can not be decrypted."""
    if not is_sealed(stored):
        return stored
    keys = _keys()
    if keys is None:
        raise WebhookSecretKeyError(
            f"webhook endpoint {endpoint_id}'s secret is encrypted and {KEY_ENV} is not set: "
            "set it to the key the secret was encrypted with"
        )
    try:
        return keys.decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise WebhookSecretKeyError(
            f"webhook endpoint {endpoint_id}'s secret can not be decrypted with {KEY_ENV}: "
            "set it to the key the secret was encrypted with (keep the old key after the "
            "new one, comma-separated, while rotating)"
        ) from None
