"""One redaction for every text that leaves a process: errors, log lines, webhook payloads
and command-line messages. `redact` masks what looks like a credential, then bounds the length.

What is masked, in this order (each mask is `***`):

1. Registered secrets: every value given to `register_secret`, and the values of environment
   variables whose names end in `_API_KEY`, `_TOKEN`, `_SECRET` or `_PASSWORD` (read at the
   first `redact`; `refresh_environment_secrets` reads them again). A value is masked where it
   stands as a whole, not inside a longer word or number (a password `postgres` is masked in
   `user:postgres@db`, not in `postgresql://`). Values shorter than `MIN_SECRET_LENGTH`
   characters are ignored: masking them would mask ordinary words.
2. URL userinfo: `https://user:pass@host` becomes `https://***@host`.
3. Credential fields: the value after `Authorization:`, `Proxy-Authorization:`, `x-api-key:`,
   `api_key=`, `access_token`, `client_secret`, `password`… (header, `key=value`, JSON or
   dict form; the scheme word `Bearer`/`Basic` stays), a token after `Bearer `, and the values
   of URL query parameters such as `?key=`, `&token=`, `&sig=`.
4. Key-shaped tokens: known prefixes (`sk-…`, `sk-ant-…`, `whsec_…`, `ghp_…`, `xoxb-…`,
   `AKIA…`, `hf_…`, `glpat-…`, `AIza…`, JSON Web Tokens), runs of 32 or more hex digits
   mixing digits and letters, and runs of 32 or more base64/base64url characters that mix
   lower case, upper case and at least two digits. Words, paths (checked segment by segment),
   identifiers in lower or snake case and dashed UUIDs do not have that shape.

Then the text is cut to `limit` characters, ending with `… [truncated, N more characters]`.
A very long text is cut before it is scanned, so each call costs time in proportion to
`limit`, not to the text.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

__all__ = [
    "DEFAULT_LIMIT",
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRET_ENV_SUFFIXES",
    "redact",
    "refresh_environment_secrets",
    "register_secret",
]

MASK = "***"
DEFAULT_LIMIT = 4096
MIN_SECRET_LENGTH = 6
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")

_TAIL_GUARD = 512
"""When a long text is cut before scanning, up to this many characters of the word that
straddles the cut are dropped too, so no half of a secret is left to escape its pattern."""

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#<>\"'`]+@")
_FIELD = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<key>(?:proxy-)?authorization|x-api-key|api[_-]?key|x-auth-token"
    r"|access[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?secret|password|passwd)"
    r"(?P<sep>[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?:(?P<scheme>basic|bearer|token|digest)[ \t]+)?"
    r"(?P<value>[^\s\"',;&(){}<>\[\]]+)"
)
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer)[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_QUERY = re.compile(
    r"(?i)(?P<key>[?&](?:key|api[_-]?key|token|access[_-]?token|secret|password|sig|signature)=)"
    r"(?P<value>[^&\s#\"'<>]+)"
)
_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{8,}"
    r"|whsec_[A-Za-z0-9+/=_-]{8,}"
    r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abeprs]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|hf_[A-Za-z0-9]{20,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r")"
)
_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"[0-9a-f]{32,}|[0-9A-F]{32,}")
_DIGIT = re.compile(r"[0-9]")


class _Secrets:
    """Registered values and those read from the environment, with one pattern for all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered: set[str] = set()
        self._from_env: set[str] | None = None
        self._pattern: re.Pattern[str] | None = None
        self._values: tuple[str, ...] = ()

    def register(self, value: str) -> None:
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value not in self._registered:
                self._registered.add(value)
                self._pattern = None

    def refresh_environment(self) -> None:
        found = {
            value.strip()
            for name, value in os.environ.items()
            if _names_a_secret(name) and len(value.strip()) >= MIN_SECRET_LENGTH
        }
        with self._lock:
            self._from_env = found
            self._pattern = None

    def pattern(self) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
        if self._from_env is None:
            self.refresh_environment()
        with self._lock:
            if self._pattern is None:
                values = sorted(self._registered | (self._from_env or set()), key=len)[::-1]
                self._values = tuple(values)
                self._pattern = _secret_pattern(values)
            return (self._pattern if self._values else None), self._values


_SECRETS = _Secrets()


def register_secret(value: str) -> None:
    """Mask `value` (surrounding whitespace ignored) in every later `redact`."""
    _SECRETS.register(value)


def refresh_environment_secrets() -> None:
    """Read the secret-named environment variables again (they are read once, at first use)."""
    _SECRETS.refresh_environment()


def redact(text: str, *, limit: int = DEFAULT_LIMIT) -> str:
    """`text` with credentials masked, cut to at most `limit` characters (see the module doc).

    A cut text ends with `… [truncated, N more characters]`, N counting what was left out; if
    `limit` is smaller than that marker, the marker alone is returned.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    pattern, secrets = _SECRETS.pattern()
    scan_end = 2 * limit + 1024
    left_out = 0
    if len(text) > scan_end:
        head = _drop_cut_word(text[:scan_end], secrets, cut_in_word=not text[scan_end].isspace())
        left_out = len(text) - len(head)
        text = head
    masked = _mask(text, pattern)
    if left_out == 0 and len(masked) <= limit:
        return masked
    # Room for the marker with the largest count it can show, so the result fits in `limit`.
    kept = min(max(limit - len(_marker(left_out + len(masked))), 0), len(masked))
    return masked[:kept] + _marker(left_out + len(masked) - kept)


def _marker(left_out: int) -> str:
    return f"… [truncated, {left_out} more characters]"


def _names_a_secret(name: str) -> bool:
    upper = name.upper()
    return any(upper.endswith(suffix) or upper == suffix[1:] for suffix in SECRET_ENV_SUFFIXES)


def _secret_pattern(values: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(value) for value in values)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


def _mask(text: str, secrets: re.Pattern[str] | None) -> str:
    if secrets is not None:
        text = secrets.sub(MASK, text)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _FIELD.sub(_masked_field, text)
    text = _BEARER.sub(_masked_bearer, text)
    text = _QUERY.sub(lambda m: f"{m['key']}{MASK}", text)
    text = _PREFIXED.sub(MASK, text)
    return _RUN.sub(_masked_run, text)


def _masked_field(match: re.Match[str]) -> str:
    value = match["value"]
    if value == MASK or (not match["scheme"] and value.lower() in ("bearer", "basic")):
        return match[0]
    scheme = f"{match['scheme']} " if match["scheme"] else ""
    return f"{match['key']}{match['sep']}{scheme}{MASK}"


def _masked_bearer(match: re.Match[str]) -> str:
    value = match["value"]
    if value == MASK or not _token_like(value):
        return match[0]
    return f"{match['scheme']} {MASK}"


def _token_like(value: str) -> bool:
    """A bearer token has a digit or punctuation in it, or is too long to be a word."""
    return len(value) >= 20 or not value.isalpha()


def _masked_run(match: re.Match[str]) -> str:
    run = match[0]
    if "/" in run and not ("+" in run or run.endswith("=")):
        # Not standard base64 by its look: most likely a path, so judge each segment.
        return "/".join(MASK if _key_shaped(part) else part for part in run.split("/"))
    return MASK if _key_shaped(run.rstrip("=")) else run


def _key_shaped(run: str) -> bool:
    if len(run) < 32:
        return False
    if _HEX.fullmatch(run):
        return _DIGIT.search(run) is not None and not run.isdigit()
    digits = sum(ch.isdigit() for ch in run)
    return digits >= 2 and any(ch.islower() for ch in run) and any(ch.isupper() for ch in run)


def _drop_cut_word(head: str, secrets: tuple[str, ...], *, cut_in_word: bool) -> str:
    """Drop the word the cut went through, and any start of a registered secret at the end."""
    end = len(head)
    while cut_in_word and end > 0 and not head[end - 1].isspace() and len(head) - end < _TAIL_GUARD:
        end -= 1
    head = head[:end]
    for secret in secrets:
        for size in range(min(len(secret), len(head)) - 1, 0, -1):
            if head.endswith(secret[:size]):
                head = head[: len(head) - size]
                break
    return head
