"""Connection strings as people may see them. Pure: no database code.

A libpq connection string is either a URL or key=value pairs; both may carry a password, and
neither may reach a log, a status table or an error message with it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

_URL_SCHEMES = ("postgresql://", "postgres://")
_KEYWORD_PASSWORD = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_url(conninfo: str) -> bool:
    return conninfo.lstrip().lower().startswith(_URL_SCHEMES)


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
