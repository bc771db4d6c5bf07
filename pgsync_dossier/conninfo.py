"""Connection strings as people may see them. Pure: no database code.

A libpq connection string is either a URL or key=value pairs; both may carry a password, and
neither may reach a log, a status table or an error message with it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

_URL_SCHEMES = ("postgresql://", "postgres://")
_WEB_SCHEMES = ("http://", "https://")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_PATH = re.compile(r"^[A-Za-z0-9._~/%-]*$")
_KEYWORD_PASSWORD = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_url(conninfo: str) -> bool:
    return conninfo.lstrip().lower().startswith(_URL_SCHEMES)


def is_web_address(text: str) -> bool:
    """An http(s) address (the Leader's web API), as opposed to a PostgreSQL URL."""
    return text.lstrip().lower().startswith(_WEB_SCHEMES)


def web_address(text: str) -> str:
    """The Leader's web address, normalised (no trailing slash), or ValueError saying what is
    wrong with it. Nothing may ride along: no user or password (the sync token authenticates),
    no query or fragment, no white space (libpq options smuggled in after a space)."""
    text = text.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError("it holds white space or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("it is not a valid http(s) address (check the host and the port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("it must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError(
            "it holds a user or a password; give the address alone (the sync token authenticates)"
        )
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError("it holds a query or a fragment; give the address alone, e.g. http://leader:8800")
    host = parts.hostname or ""
    bracketed = parts.netloc.startswith("[")
    if not host or not (bracketed or _HOST_NAME.match(host)):
        raise ValueError(f"{host or 'its host'!r} is not a host name or address")
    if port == 0 or not _PATH.match(parts.path):
        raise ValueError("its port or path is not valid")
    shown_host = f"[{host}]" if bracketed else host.lower()
    netloc = shown_host + (f":{port}" if port is not None else "")
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def has_password(conninfo: str) -> bool:
    """Whether the connection string carries a password (in any place libpq reads one from)."""
    conninfo = conninfo.strip()
    if not is_url(conninfo):
        return _KEYWORD_PASSWORD.search(conninfo) is not None
    try:
        parts = urlsplit(conninfo)
    except ValueError:
        return ":" in conninfo.split("://", 1)[1].rpartition("@")[0]
    userinfo = parts.netloc.rpartition("@")[0]
    return ":" in userinfo or any(key in ("password", "sslpassword") for key, _ in parse_qsl(parts.query))


def mask_conninfo(conninfo: str) -> str:
    """The connection string with any password replaced by ****."""
    conninfo = conninfo.strip()
    if not is_url(conninfo):
        return _KEYWORD_PASSWORD.sub(r"\1****", conninfo)
    try:
        parts = urlsplit(conninfo)
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing that might be secret
        return conninfo.split("://", 1)[0] + "://(unparsable URL)"
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon:
            netloc = f"{user}:****@{hosts}"
    query = urlencode(
        [(k, "****" if k in ("password", "sslpassword") else v) for k, v in parse_qsl(parts.query)], safe="*/"
    )
    # Built by hand: urlunsplit drops the empty host of postgresql:///dbname.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
