"""What each platform allows, and how it counts characters.

Hard limits are the platforms' own (as published in their help centres in 2025–2026); a brand
may set stricter ones in brand.yaml but never looser. X counts every URL as 23 characters
whatever its length (t.co wrapping) and CJK characters as two.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)


@dataclass(frozen=True)
class PlatformLimits:
    max_chars: int
    max_hashtags: int
    max_line_breaks: int | None = None
    url_length: int | None = None  # X: every URL counts as this many characters


PLATFORM_LIMITS: dict[str, PlatformLimits] = {
    "instagram": PlatformLimits(max_chars=2200, max_hashtags=30),
    "facebook": PlatformLimits(max_chars=63206, max_hashtags=30),
    "linkedin": PlatformLimits(max_chars=3000, max_hashtags=30),
    "x": PlatformLimits(max_chars=280, max_hashtags=10, url_length=23),
    "tiktok": PlatformLimits(max_chars=4000, max_hashtags=30),
}


def counted_length(text: str, platform: str) -> int:
    """The length the platform shows: X's weighted count, plain characters elsewhere."""
    limits = PLATFORM_LIMITS.get(platform)
    if limits is None or limits.url_length is None:
        return len(text)
    length = 0
    for part in URL.split(text):
        length += sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in part)
    return length + limits.url_length * len(URL.findall(text))
