"""HTTP to one registry endpoint: authentication, retries, resumable blob downloads, errors.

Everything the distribution API needs below the level of "get this manifest, that blob":

- each request carries the Authorization its scope needs (auth.py); a 401 is answered
  once (token or basic auth) and the request repeated;
- connection failures, 5xx and 429 are retried with backoff; a name that does not
  resolve and a TLS failure are not (retrying cannot help) and fail at once;
- a blob download cut mid-way continues with `Range: bytes=N-` from the byte it stopped
  at, so a flaky link costs the bytes lost, not the layer;
- an error answer becomes one line naming the registry and what it said (the
  distribution API's `{"errors": [{"code", "message"}]}` body when there is one).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx

from hypr_engine.errors import HyprError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from hypr_engine.oci.credentials import Credentials
from hypr_engine.oci.registry.auth import Authenticator
from hypr_engine.oci.registry.config import Endpoint

ATTEMPTS = 5                          # tries per request (and per stalled download)
BACKOFF = (0.05, 0.2, 0.5, 1.0, 2.0)  # seconds before each retry
TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
RETRY_STATUS = {429, 500, 502, 503, 504}
USER_AGENT = "hypr/0.1 (+httpx)"


def _cause_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 10:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def connection_error(endpoint: Endpoint, exc: BaseException) -> tuple[HyprError, bool]:
    """(the error to report, whether retrying could help) for a failed connection."""
    chain = _cause_chain(exc)
    text = " ".join(str(e) for e in chain)
    host = endpoint.base_url.split("://", 1)[1]
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in text \
            or "No address associated" in text or "Temporary failure in name resolution" in text:
        name = host if host.endswith("]") else host.rsplit(":", 1)[0]
        return Unavailable(f"cannot resolve the registry host {name}: no such host"), False
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSL" in text or "certificate" in text.lower():
        reason = next((getattr(e, "reason", None) or str(e) for e in chain if isinstance(e, ssl.SSLError)), text)
        return Unavailable(f"TLS error talking to {host}: {reason} (a registry without TLS must be listed "
                           "in registries.json's 'insecure')"), False
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return Unavailable(f"cannot connect to the registry at {endpoint.base_url}: connection refused"), True
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"the registry at {endpoint.base_url} did not answer in time"), True
    detail = str(exc) or type(exc).__name__
    return Unavailable(f"connection to the registry at {endpoint.base_url} failed: {detail}"), True


def _error_text(response: httpx.Response) -> str:
    """The registry's own words, from the distribution API's error body when it sent one."""
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = str(first.get("code", "")).lower().replace("_", " ")
            message = str(first.get("message", ""))
            return f"{code}: {message}" if code and message and code not in message.lower() else (message or code)
    except (ValueError, UnicodeDecodeError):
        pass
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return text or response.reason_phrase or f"HTTP {response.status_code}"


def status_error(host: str, response: httpx.Response, what: str) -> HyprError:
    """The error for an answer that is not the one expected."""
    said = _error_text(response)
    code = response.status_code
    if code == 401:
        return Unauthenticated(f"{what}: {host} requires authentication ({said}): log in with `hypr login {host}`")
    if code == 403:
        return Unauthenticated(f"{what}: {host} denied access ({said})")
    if code == 404:
        return NotFound(f"{what}: not found on {host} ({said})")
    if code in (400, 405, 413, 415) or 400 <= code < 500:
        return InvalidArgument(f"{what}: {host} answered HTTP {code} ({said})")
    return Unavailable(f"{what}: {host} answered HTTP {code} ({said})")


class Transport:
    """Requests to one endpoint (a registry or one of its mirrors), authenticated and retried."""

    def __init__(self, endpoint: Endpoint, creds: Credentials | None) -> None:
        self.endpoint = endpoint
        self.host = endpoint.host
        self.auth = Authenticator(endpoint.host, creds)
        verify: ssl.SSLContext | bool = True
        if endpoint.ca_file:
            verify = ssl.create_default_context(cafile=endpoint.ca_file)
        self.http = httpx.AsyncClient(timeout=TIMEOUT, verify=verify, follow_redirects=True,
                                      headers={"User-Agent": USER_AGENT},
                                      limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))

    async def aclose(self) -> None:
        await self.http.aclose()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.endpoint.base_url}{path}"

    # --- one request ----------------------------------------------------------------------

    async def _send_once(self, method: str, url: str, scope: str, headers: dict[str, str],
                         content: Callable[[], object] | None) -> httpx.Response:
        """Send (streaming the answer), answering one auth challenge. The caller closes the response."""
        for first_round in (True, False):
            hdrs = dict(headers)
            if self.auth.needs_refresh(scope):
                await self.auth.fetch_token(self.http, scope)
            auth = self.auth.header(scope)
            if auth:
                hdrs["Authorization"] = auth
            request = self.http.build_request(method, url, headers=hdrs,
                                              content=content() if content else None)  # type: ignore[arg-type]
            response = await self.http.send(request, stream=True)
            if response.status_code != 401:
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            await response.aclose()
            if auth is not None or not first_round:
                # What we sent was refused: the same credentials again cannot help.
                if "insufficient_scope" in challenge:
                    raise Unauthenticated(f"{self.host} denied access ({scope.replace('repository:', '')}): "
                                          "requested access to the resource is denied")
                if self.auth.creds is None:
                    raise Unauthenticated(f"{self.host} requires authentication: log in with `hypr login {self.host}`")
                raise Unauthenticated(f"login to {self.host} failed: unauthorized: incorrect username or password")
            if not challenge:
                raise Unauthenticated(f"{self.host} answered 401 without saying how to authenticate")
            await self.auth.answer(self.http, challenge, scope)
        raise AssertionError("unreachable")

    async def send(self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None,
                   content: Callable[[], object] | None = None, retry: bool = True) -> httpx.Response:
        """A request whose answer is streamed (close it), retried on connection errors, 5xx and 429.

        `content` is a factory of the body, called again for each try.
        """
        url = self.url(path)
        attempts = ATTEMPTS if retry else 1
        for attempt in range(attempts):
            try:
                response = await self._send_once(method, url, scope, headers or {}, content)
            except httpx.TransportError as exc:
                error, retryable = connection_error(self.endpoint, exc)
                if not retryable or attempt == attempts - 1:
                    raise error from None
            else:
                if response.status_code not in RETRY_STATUS or attempt == attempts - 1:
                    return response
                await response.aclose()
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        raise AssertionError("unreachable")

    async def request(self, method: str, path: str, *, scope: str, what: str, expect: tuple[int, ...] = (200,),
                      headers: dict[str, str] | None = None, content: Callable[[], object] | None = None,
                      max_size: int = 8 << 20) -> httpx.Response:
        """A whole (small) answer; an unexpected status raises the matching HyprError."""
        response = await self.send(method, path, scope=scope, headers=headers, content=content)
        try:
            if response.status_code not in expect:
                await response.aread()
                raise status_error(self.host, response, what)
            size = 0
            chunks = []
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_size:
                    raise InvalidArgument(f"{what}: {self.host} sent more than {max_size} bytes")
                chunks.append(chunk)
            response._content = b"".join(chunks)
        except httpx.TransportError as exc:
            raise connection_error(self.endpoint, exc)[0] from None
        finally:
            await response.aclose()
        return response

    # --- resumable downloads ------------------------------------------------------------------

    async def download(self, path: str, *, scope: str, what: str, size: int,
                       sink: Callable[[bytes], Awaitable[None]],
                       on_retry: Callable[[int, str], None] | None = None) -> None:
        """GET a blob into `sink`, continuing with a Range request after a cut.

        Gives up after ATTEMPTS failures in a row without progress. The sink sees every byte
        exactly once, in order; checking size and digest is the sink's job.
        """
        received = 0
        failures = 0
        while True:
            # identity: a CDN must not gzip the bytes on the wire (the digest is of the blob as stored).
            headers = {"Accept-Encoding": "identity"}
            if received:
                headers["Range"] = f"bytes={received}-"
            before = received
            try:
                async with self._stream(path, scope, headers, what) as response:
                    skip = 0
                    if received and response.status_code == 200:
                        skip = received        # the server ignored Range: drop what we already have
                    elif received and not _range_starts_at(response, received):
                        raise Unavailable(f"{what}: {self.host} answered a range request with "
                                          f"{response.headers.get('Content-Range')!r}")
                    async for chunk in response.aiter_raw():
                        if skip:
                            drop = min(skip, len(chunk))
                            chunk, skip = chunk[drop:], skip - drop
                            if not chunk:
                                continue
                        received += len(chunk)
                        await sink(chunk)
                if received >= size:
                    return
                reason = f"the connection closed after {received} of {size} bytes"
            except httpx.TransportError as exc:
                error, retryable = connection_error(self.endpoint, exc)
                if not retryable:
                    raise error from None
                reason = error.message
            failures = 0 if received > before else failures + 1
            if failures >= ATTEMPTS:
                raise Unavailable(f"{what}: giving up after {ATTEMPTS} failed tries: {reason}")
            if on_retry is not None:
                on_retry(received, reason)
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)] if failures else 0)

    @asynccontextmanager
    async def _stream(self, path: str, scope: str, headers: dict[str, str], what: str
                      ) -> AsyncIterator[httpx.Response]:
        response = await self.send("GET", path, scope=scope, headers=headers)
        try:
            if response.status_code not in (200, 206):
                await response.aread()
                raise status_error(self.host, response, what)
            yield response
        finally:
            await response.aclose()


def _range_starts_at(response: httpx.Response, offset: int) -> bool:
    """True for a 206 whose Content-Range begins at `offset`."""
    if response.status_code != 206:
        return False
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    start = rest.split("-", 1)[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset
