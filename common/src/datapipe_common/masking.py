"""Hiding credentials in text: URL userinfo, secret query values, and known secrets (an API key).

One definition for every place a URL or an error message is printed, logged or stored: the
extractor's logs and `ops.extract_runs.base_url`, the request URLs of the raw tables, alert mails.

Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose values are credentials (compared case-insensitively).
SECRET_PARAMS = ("apikey", "api_key", "key", "token", "access_token", "password", "passwd", "pwd", "secret")
# Secrets shorter than this are masked only where they appear as a parameter value or userinfo:
# replacing a very short string everywhere would mangle ordinary text without protecting anything.
MIN_SUBSTRING_LEN = 4

# The same names whose value is a secret in prose too, after a colon or spaces (`Token: x`,
# `password = x` in error messages and DSNs); not `key`, an everyday word there ("refused the key: ...").
SECRET_LABELS = tuple(name for name in SECRET_PARAMS if name != "key")
# A secret value: up to the next white space, `&`, quote, comma or semicolon.
_VALUE = r"([^\s&'\",;]+)"
# `name=value` of a secret parameter anywhere in a text (a URL, a log line, an exception message).
_PARAM = re.compile(r"(?i)(?<![A-Za-z0-9_])(" + "|".join(SECRET_PARAMS) + r")(=)" + _VALUE)
# `name: value`, `name = value` of a secret label in a text.
_LABEL = re.compile(r"(?i)(?<![A-Za-z0-9_])(" + "|".join(SECRET_LABELS) + r")(\s*[=:]\s*)" + _VALUE)
# `scheme://userinfo@`: everything between `//` and `@` (user, or user:password) is a credential;
# a password may hold `?` or `#` (a DSN written by hand), a user-only userinfo may not.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s@?#]+|[^/\s:@]+:[^/\s@]+)@")


def mask_url(url: str) -> str:
    """`url` with its userinfo and the values of secret query parameters replaced by ***;
    anything that does not parse as a URL is masked as text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    if not parts.scheme or not parts.netloc:
        return mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMS for name, _ in pairs):
            query = _PARAM.sub(rf"\g<1>\g<2>{MASK}", query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, mask_text(parts.fragment)))


def mask_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret (at least MIN_SUBSTRING_LEN long), every URL userinfo and every
    secret parameter value (`apikey=`, `token=`, `password=`, ...) replaced by ***."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= MIN_SUBSTRING_LEN and secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
    text = _PARAM.sub(rf"\g<1>\g<2>{MASK}", text)
    return _LABEL.sub(rf"\g<1>\g<2>{MASK}", text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials inside a URL (userinfo user and password, secret parameter values), to mask
    wherever they might appear on their own."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = [v for v in (parts.username, parts.password) if v]
    found += [unquote(v) for v in (parts.username, parts.password) if v and unquote(v) != v]
    found += [value for name, value in parse_qsl(parts.query, keep_blank_values=False) if name.lower() in SECRET_PARAMS]
    return tuple(dict.fromkeys(found))
