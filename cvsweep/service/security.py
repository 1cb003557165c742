"""Who may talk to the service, in front of every route (the dashboard's too).

- Host: bound to a loopback address, only requests for a loopback name are served; a web page
  elsewhere cannot reach the service through a DNS name made to point at 127.0.0.1 (rebinding).
- Origin: a request that changes something (POST, PUT, PATCH, DELETE) from a browser must come
  from the service's own page; another site's form or script is refused.
- Token: with ``CVSWEEP_API_TOKEN`` set (required on any other address) every route but the
  page shell and ``/session`` needs ``Authorization: Bearer <token>``, or the cookie the page's
  login sets (HttpOnly, SameSite=Strict), each compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from typing import Optional
from urllib.parse import urlsplit

from cvsweep.service.settings import ServeSettings

COOKIE = "cvsweep_session"
PUBLIC_PATHS = ("/", "/session", "/favicon.ico")
PUBLIC_PREFIXES = ("/assets/",)
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def session_value(token: str) -> str:
    """What the login cookie holds: derived from the token, not the token itself.

    Args:
        token: The service's access token.

    Returns:
        The cookie's value.
    """
    return hashlib.sha256(b"cvsweep-session:" + token.encode()).hexdigest()


def token_matches(settings: ServeSettings, given: Optional[str]) -> bool:
    """Whether ``given`` is the service's token (compared in constant time).

    Args:
        settings: The service's settings.
        given: The token a client sent, or None.

    Returns:
        False when the service has no token or none was given.
    """
    return settings.token is not None and given is not None and \
        hmac.compare_digest(given.encode(), settings.token.encode())


def authenticated(settings: ServeSettings, headers: dict[str, str]) -> bool:
    """Whether a request may pass: no token is set, or it carries it (bearer header or login cookie).

    Args:
        settings: The service's settings.
        headers: The request's headers, names in lower case.

    Returns:
        True when the request is authenticated.
    """
    if settings.token is None:
        return True
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(settings, given.strip()):
        return True
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is no session
        return False
    held = cookie.get(COOKIE)
    return held is not None and hmac.compare_digest(held.value.encode(), session_value(settings.token).encode())


class Guard:
    """ASGI middleware applying the rules above."""

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, detail = refusal
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            body = json.dumps({"detail": detail}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope, headers) -> Optional[tuple[int, str]]:
        host = headers.get("host", "")
        if self.settings.loopback and _hostname(host) not in LOOPBACK_NAMES:
            return 400, f"Host {host!r}: this service answers only to 127.0.0.1 or localhost"
        origin = headers.get("origin")
        if scope["method"] in CHANGES and origin is not None and urlsplit(origin).netloc != host:
            return 403, f"Origin {origin!r}: changes are accepted only from this service's own page"
        path = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        if not authenticated(self.settings, headers):
            return 401, "a token is required: send 'Authorization: Bearer <token>' (CVSWEEP_API_TOKEN)"
        return None


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
