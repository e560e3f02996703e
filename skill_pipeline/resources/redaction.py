"""One place that keeps secrets out of error messages, logs and metadata.

Every adapter builds its error text from what an SDK raised, and SDK errors can echo request
headers or URLs that carry a key. Each adapter passes its own secrets here before the text leaves it.
"""

from __future__ import annotations

REDACTED = "***"
# A secret shorter than this is not replaced: it would blank ordinary words out of the message.
MIN_SECRET_LENGTH = 4


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every occurrence of each secret (of at least 4 characters) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    return text
