"""Secrets people are given (agents' and supervisors' tokens, portal keys, the admin token, the
ARI password): how strong one must be in production, and how `centralino token` makes one.

Strength is judged on the secret itself: length, and the information its characters carry
(Shannon entropy of their distribution times the length). Sixteen spaces, one letter repeated
or "abcabcabc..." carry almost none; 32 random bytes in base64 carry about 220 bits.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter

MIN_LENGTH = 20
MIN_BITS = 80  # out of reach of guessing over the network, with room to spare


def generate() -> str:
    """A new secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def weakness(secret: str) -> str | None:
    """Why `secret` is too weak to guard a production service, or None if it is not."""
    if len(secret) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters"
    if any(c.isspace() for c in secret):
        return "it contains spaces"
    counts = Counter(secret)
    bits = -sum(n * math.log2(n / len(secret)) for n in counts.values())
    if bits < MIN_BITS:
        return "too predictable (few different characters, or a repeated pattern)"
    return None
