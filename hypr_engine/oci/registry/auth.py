"""Registry authentication: the `WWW-Authenticate` challenge, bearer tokens, basic auth.

A registry answers an unauthenticated request with 401 and a challenge:

    Bearer realm="https://auth.example/token",service="registry.example",scope="repository:x:pull"
    Basic realm="Registry Realm"

For Bearer, the client asks the realm for a token (`GET realm?service=...&scope=...`,
with the user's credentials as basic auth when it has some, anonymously otherwise) and
sends `Authorization: Bearer TOKEN`; tokens are cached per scope until they expire. For
Basic, the credentials go on every request. Once a host has challenged, later requests
carry the right header from the start (no 401 round trip per blob).
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field

import httpx

from hypr_engine.errors import Unauthenticated, Unavailable
from hypr_engine.oci.credentials import Credentials

TOKEN_MIN_LIFETIME = 60.0      # the token spec's default when the issuer names none
_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str                                   # "bearer" or "basic" (lowercase)
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges of a `WWW-Authenticate` header, e.g. `Bearer realm="...",service="..."`."""
    challenges: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = re.match(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)\s*", header[pos:])
        if not m:
            break
        scheme = m.group(1).lower()
        pos += m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            pm = _PARAM_RE.match(header, pos)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
            sep = re.match(r"\s*,\s*", header[pos:])
            if not sep:
                break
            pos += sep.end()
            # The next token starts a new challenge if it is not followed by "=".
            if not _PARAM_RE.match(header, pos):
                break
        challenges.append(Challenge(scheme, params))
    return challenges


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


class Authenticator:
    """The Authorization header for one registry host, per scope."""

    def __init__(self, host: str, creds: Credentials | None) -> None:
        self.host = host
        self.creds = creds
        self._challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    def header(self, scope: str) -> str | None:
        """The header to send now, if the host has challenged before (None: try without)."""
        if self._challenge is None:
            return None
        if self._challenge.scheme == "basic":
            return basic_header(self.creds) if self.creds else None
        token = self._tokens.get(scope)
        if token and token[1] > time.monotonic():
            return token[0]
        return None

    def needs_refresh(self, scope: str) -> bool:
        """True when the host uses tokens and none is cached for `scope`."""
        return self._challenge is not None and self._challenge.scheme == "bearer" and self.header(scope) is None

    async def answer(self, http: httpx.AsyncClient, challenge_header: str, scope: str) -> str:
        """Turn a 401's challenge into an Authorization header (fetching a token if needed)."""
        challenges = parse_challenges(challenge_header)
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or \
            next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None:
            raise Unauthenticated(f"{self.host} asks for an authentication scheme HYPR does not support: "
                                  f"{challenge_header[:100]!r}")
        self._challenge = chosen
        if chosen.scheme == "basic":
            if self.creds is None:
                raise Unauthenticated(f"{self.host} requires authentication: log in with `hypr login {self.host}`")
            return basic_header(self.creds)
        return await self.fetch_token(http, scope)

    async def fetch_token(self, http: httpx.AsyncClient, scope: str) -> str:
        assert self._challenge is not None
        realm = self._challenge.params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")):
            raise Unauthenticated(f"{self.host} sent a bearer challenge without a usable realm ({realm!r})")
        params: list[tuple[str, str]] = []
        if service := self._challenge.params.get("service"):
            params.append(("service", service))
        if scope:
            params.extend(("scope", s) for s in scope.split(" ") if s)
        if self.creds is not None:
            params.append(("account", self.creds.username))
        headers = {"Authorization": basic_header(self.creds)} if self.creds else {}
        try:
            response = await http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot get a token for {self.host} from {realm}: {exc or type(exc).__name__}") from None
        if response.status_code in (401, 403):
            if self.creds is None:
                raise Unauthenticated(f"{self.host} refused anonymous access: log in with `hypr login {self.host}`")
            raise Unauthenticated(f"login to {self.host} failed: unauthorized: incorrect username or password")
        if response.status_code != 200:
            raise Unavailable(f"the token server {realm} of {self.host} answered HTTP {response.status_code}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or TOKEN_MIN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unavailable(f"the token server {realm} of {self.host} sent no token")
        header = f"Bearer {token}"
        # Renew a little early: a token that expires mid-download would fail the next range request.
        self._tokens[scope] = (header, time.monotonic() + max(lifetime - 10, 5))
        return header
