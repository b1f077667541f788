"""The HTTP client under every feed: timeouts, retries, size limits, secrets.

One :class:`Fetcher` is an asyncio HTTP session (aiohttp) with a bounded
number of keep-alive connections per host. Every request:

- times out: ``connect_timeout`` to open a connection, ``read_timeout``
  between two reads of the answer;
- is retried (``retries`` times at most) after a timeout, a refused or reset
  connection, an answer cut short, ``429 Too Many Requests``, ``408`` or any
  ``5xx``, waiting an exponentially growing, jittered time, or what the
  server's ``Retry-After`` asks (capped at ``max_retry_after``);
- refuses an answer larger than ``max_bytes`` (after decompression);
- verifies TLS certificates (``verify=False`` is an explicit opt-out).

Credentials (:class:`Credentials`) are sent only to the feed's own origin
(scheme, host and port): a next-page link to another host does not get them.
The secret is kept in a :class:`Secret`, whose repr and str are ``***``;
:func:`redact` takes it, user information and credential-like query
parameters out of any URL or text before it reaches a message, a log, a
report or a file.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ArgumentError, LoadError

log = logging.getLogger("toolkit.http")

#: query parameters whose values are credentials (masked in every message)
SENSITIVE_PARAMS = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth",
                              "password", "secret", "signature", "sig", "x-api-key"})
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
PREVIEW_BYTES = 120


class Secret:
    """A credential: usable by the client, never shown.

    Examples
    --------
    >>> s = Secret("s3cr3t")
    >>> s, str(s), f"{s}"
    (Secret('***'), '***', '***')
    >>> s.reveal()
    's3cr3t'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str) or not value:
            raise ArgumentError("a credential must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the request that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = lambda self: "***"  # noqa: E731
    __format__ = lambda self, spec: "***"  # noqa: E731

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # workers need the value to make requests
        return (Secret, (self._value,))


@dataclass(frozen=True)
class Credentials:
    """How a secret goes with each request to the feed's origin.

    ``header`` (default ``Authorization``) gets ``scheme + " " + secret``
    (``scheme=""``: the secret alone, as for ``X-API-Key``); with ``param``,
    the secret goes in that query parameter instead (ThingSpeak's
    ``api_key``).
    """

    secret: Secret
    origin: str
    header: str = "Authorization"
    scheme: str = "Bearer"
    param: str | None = None

    def headers_for(self, url: str) -> dict:
        if self.param or origin_of(url) != self.origin:
            return {}
        value = self.secret.reveal()
        return {self.header: f"{self.scheme} {value}" if self.scheme else value}

    def url_for(self, url: str) -> str:
        if not self.param or origin_of(url) != self.origin:
            return url
        return with_params(url, {self.param: self.secret.reveal()})

    def __repr__(self) -> str:
        how = f"param={self.param!r}" if self.param else f"header={self.header!r}"
        return f"Credentials(origin={self.origin!r}, {how}, secret=***)"


def credentials(url: str, *, token=None, token_env: str | None = None,
                header: str | None = None, scheme: str | None = None,
                param: str | None = None) -> Credentials | None:
    """The credentials of a feed, from ``token`` or the environment variable ``token_env``.

    Examples
    --------
    >>> c = credentials("https://feed.example/api", token="abc")
    >>> c.headers_for("https://feed.example/api?page=2")
    {'Authorization': 'Bearer abc'}
    >>> c.headers_for("https://elsewhere.example/api")  # never to another host
    {}
    """
    if token is None and token_env:
        value = os.environ.get(token_env)
        if not value:
            raise ArgumentError(f"token_env={token_env!r} names an environment variable that "
                                "is not set (or empty)")
        token = value
    if token is None:
        return None
    secret = token if isinstance(token, Secret) else Secret(token)
    if header is not None and scheme is None:
        scheme = "Bearer" if header.lower() == "authorization" else ""
    return Credentials(secret, origin_of(url), header or "Authorization",
                       "Bearer" if scheme is None else scheme, param)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def with_params(url: str, params: dict) -> str:
    """``url`` with ``params`` set in its query (replacing the same names)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    query += [(k, str(v)) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query, safe="$:,()'/ ")))


def redact(text: str, credentials: Credentials | None = None) -> str:
    """``text`` (a URL or a message) without user info, credential parameters or the secret.

    Examples
    --------
    >>> redact("https://user:pw@feed.example/x?api_key=abc&page=2")
    'https://feed.example/x?api_key=***&page=2'
    """
    text = str(text)
    if credentials is not None:
        text = text.replace(credentials.secret.reveal(), "***")
    text = re.sub(r"(://)[^/@\s]+@", r"\1", text)

    def mask(match):
        return f"{match.group(1)}={'***'}"

    names = "|".join(re.escape(p) for p in sorted(SENSITIVE_PARAMS | (
        {credentials.param} if credentials is not None and credentials.param else set())))
    return re.sub(rf"(?i)(?<=[?&])({names})=[^&#\s'\"]*", mask, text)


@dataclass(frozen=True)
class HttpOptions:
    """Timeouts, retries and limits of every request (the defaults are safe)."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 8
    backoff: float = 0.2
    max_backoff: float = 20.0
    max_retry_after: float = 120.0
    max_bytes: int = 256 * 2**20
    connections: int = 8
    verify: bool = True
    user_agent: str = "iot-telemetry-toolkit"

    def __post_init__(self):
        for name in ("connect_timeout", "read_timeout", "backoff", "max_backoff",
                     "max_retry_after"):
            if not getattr(self, name) > 0:
                raise ArgumentError(f"{name} must be a positive number of seconds, got "
                                    f"{name}={getattr(self, name)!r}")
        for name in ("retries", "max_bytes", "connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "retries" else 1):
                raise ArgumentError(f"{name} must be a positive integer, got {name}={value!r}")


class Response(NamedTuple):
    url: str
    status: int
    headers: dict
    body: bytes


@dataclass
class Tally:
    """What the requests of one fetcher cost: requests, retries, bytes."""

    requests: int = 0
    retries: int = 0
    bytes: int = 0
    reasons: dict = field(default_factory=dict)
    waits: list = field(default_factory=list)  # (why, status, Retry-After, seconds waited)

    def note_retry(self, why: str, status: int | None = None,
                   retry_after: float | None = None, wait: float = 0.0) -> None:
        self.retries += 1
        self.reasons[why] = self.reasons.get(why, 0) + 1
        if len(self.waits) < 10_000:
            self.waits.append((why, status, retry_after, wait))


class TransientError(Exception):
    """A failure worth retrying (connection, timeout, 429, 5xx)."""

    def __init__(self, why: str, retry_after: float | None = None, status: int | None = None,
                 preview: bytes = b""):
        super().__init__(why)
        self.why, self.retry_after, self.status, self.preview = why, retry_after, status, preview


class Fetcher:
    """An aiohttp session with the toolkit's retry and safety rules.

    Use as ``async with Fetcher(options, credentials) as f: await f.get(url)``.
    """

    def __init__(self, options: HttpOptions | None = None,
                 credentials: Credentials | None = None, *, seed: int | None = None):
        self.options = options or HttpOptions()
        self.credentials = credentials
        self.tally = Tally()
        self._random = random.Random(seed)
        self._session = None
        self._proxies: dict = {}

    async def __aenter__(self) -> Fetcher:
        import aiohttp

        opts = self.options
        context = ssl.create_default_context() if opts.verify else False
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=opts.connections,
                                         ssl=context, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=None, connect=opts.connect_timeout,
                                        sock_connect=opts.connect_timeout,
                                        sock_read=opts.read_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": opts.user_agent},
            raise_for_status=False, trust_env=False)
        return self

    def _proxy(self, url: str) -> str | None:
        """The proxy for ``url`` from the environment (``HTTPS_PROXY``, ``NO_PROXY``...),
        looked up once per origin (aiohttp's own lookup costs two thread hops a request)."""
        origin = origin_of(url)
        if origin not in self._proxies:
            import urllib.request

            parts = urlsplit(url)
            proxies = urllib.request.getproxies()
            proxy = proxies.get(parts.scheme)
            if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
                proxy = None
            self._proxies[origin] = proxy
        return self._proxies[origin]

    async def __aexit__(self, *exc) -> None:
        await self._session.close()

    def redact(self, text) -> str:
        return redact(text, self.credentials)

    async def get(self, url: str, *, page: int | None = None, what: str = "page") -> Response:
        """GET ``url`` with retries; a :class:`LoadError` when it cannot be had."""
        return await self.request("GET", url, page=page, what=what)

    async def request(self, method: str, url: str, *, page: int | None = None,
                      what: str = "page", json_body: bytes | None = None,
                      headers: dict | None = None, retry_statuses=RETRY_STATUSES) -> Response:
        attempt = 0
        while True:
            try:
                response = await self._once(method, url, json_body, headers, retry_statuses)
                return response
            except TransientError as err:
                if attempt >= self.options.retries:
                    where = f" ({what} {page})" if page is not None else ""
                    status = f"HTTP {err.status}: " if err.status else ""
                    preview = f"; the answer begins {err.preview[:PREVIEW_BYTES]!r}" \
                        if err.preview else ""
                    raise LoadError(self.redact(
                        f"{method} {url}{where}: {status}{err.why}, still after "
                        f"{attempt} retries{preview}")) from None
                wait = self._wait(attempt, err.retry_after)
                self.tally.note_retry(err.why.split(":")[0], err.status, err.retry_after, wait)
                log.debug("retrying %s %s in %.2f s: %s", method, self.redact(url), wait,
                          err.why)
                attempt += 1
                await asyncio.sleep(wait)

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        opts = self.options
        jittered = self._random.uniform(0, min(opts.max_backoff, opts.backoff * 2 ** attempt))
        if retry_after is not None:
            return min(max(retry_after, 0.0), opts.max_retry_after) + jittered * 0.1
        return jittered

    async def _once(self, method, url, json_body, headers, retry_statuses) -> Response:
        import aiohttp

        creds = self.credentials
        target = creds.url_for(url) if creds else url
        send = dict(headers or {})
        if creds:
            send.update(creds.headers_for(url))
        if json_body is not None:
            send.setdefault("Content-Type", "application/json")
        self.tally.requests += 1
        try:
            async with self._session.request(method, target, data=json_body, headers=send,
                                             allow_redirects=True, max_redirects=5,
                                             proxy=self._proxy(url)) as resp:
                if resp.status in retry_statuses:
                    preview = await _preview(resp)
                    raise TransientError(f"{resp.reason or 'error'}",
                                         _retry_after(resp.headers.get("Retry-After")),
                                         resp.status, preview)
                length = resp.content_length
                limit = self.options.max_bytes
                if length is not None and length > limit:
                    raise LoadError(self.redact(
                        f"{method} {url}: the answer is {length:,} bytes, over max_bytes="
                        f"{limit:,}; raise max_bytes or ask for smaller pages"))
                parts, size = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise LoadError(self.redact(
                            f"{method} {url}: the answer is over max_bytes={limit:,} bytes; "
                            "raise max_bytes or ask for smaller pages"))
                    parts.append(chunk)
                body = b"".join(parts)
                self.tally.bytes += size
                return Response(str(resp.url), resp.status, dict(resp.headers), body)
        except (TimeoutError, aiohttp.ServerTimeoutError) as err:
            raise TransientError(f"timed out ({type(err).__name__})") from None
        except aiohttp.ClientPayloadError as err:
            raise TransientError(f"answer cut short: {type(err).__name__}") from None
        except aiohttp.ClientConnectorCertificateError as err:
            raise LoadError(self.redact(
                f"{method} {url}: the server's TLS certificate is not valid ({err}); "
                "pass verify=False only if you trust this network")) from None
        except (aiohttp.ClientConnectionError, ConnectionError) as err:
            raise TransientError(f"connection failed: {type(err).__name__}") from None
        except aiohttp.InvalidURL as err:
            raise LoadError(self.redact(f"not a valid URL: {err}")) from None
        except aiohttp.TooManyRedirects:
            raise LoadError(self.redact(f"{method} {url}: too many redirects")) from None


async def _preview(resp) -> bytes:
    try:
        return await asyncio.wait_for(resp.content.read(PREVIEW_BYTES), 5)
    except Exception:  # the preview is a courtesy; the status says what matters
        return b""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_status(response: Response, *, url: str, page, fetcher: Fetcher,
                 what: str = "page") -> None:
    """A :class:`LoadError` for an answer that is not a success (2xx)."""
    if 200 <= response.status < 300:
        return
    hint = ""
    if response.status in (401, 403):
        hint = "; check the credentials (token, token_env or header)"
    elif response.status == 404:
        hint = "; check the URL, the device ids and the format"
    raise LoadError(fetcher.redact(
        f"GET {url} ({what} {page}): HTTP {response.status}{hint}; the answer begins "
        f"{response.body[:PREVIEW_BYTES]!r}"))


__all__ = ["Credentials", "Fetcher", "HttpOptions", "Response", "Secret", "Tally",
           "check_status", "credentials", "redact", "with_params"]
