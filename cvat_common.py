"""Shared code of the cvat-scripts: configuration, HTTP session, pages, request polling, errors.

Copy this file next to the script you run. Settings come from the environment:

    CVAT_URL            CVAT base address, scheme included (default http://localhost:8080)
    CVAT_ACCESS_TOKEN   personal access token, sent as "Authorization: Bearer ..."
    CVAT_TOKEN          legacy API key, sent as "Authorization: Token ..." when no access token is set
    CVAT_ORG            organization slug; optional, checked against the project's organization
    REQUESTS_CA_BUNDLE  CA bundle file for a server whose certificate a private CA signed
    CVAT_DEBUG=1        print one line per HTTP request (method, path, status, never headers)

Exit codes of every script: 0 done, 1 failed, 2 bad usage or configuration (nothing was sent),
130 interrupted.
"""

import argparse
import difflib
import http.client
import math
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

# CVAT base address used when CVAT_URL is not set.
DEFAULT_CVAT_URL = "http://localhost:8080"
# Seconds to wait for a TCP connection to CVAT (env CVAT_CONNECT_TIMEOUT overrides).
CONNECT_TIMEOUT = 10.0
# Seconds to wait for each response; a data call with many keys can take a while (env CVAT_READ_TIMEOUT).
READ_TIMEOUT = 120.0
# Retries of one call after a lost connection, a 502/503/504, or a 429 throttle.
RETRY_TOTAL = 5
# Retries of a connection that could not be opened: a server that is down stays down.
RETRY_CONNECT = 2
# Backoff base in seconds between retries: 0, 2x, 4x, ... this value (env CVAT_RETRY_BACKOFF).
RETRY_BACKOFF = 0.5
# Largest CVAT_RETRY_BACKOFF accepted, in seconds, so that a typo cannot stall a script for hours.
RETRY_BACKOFF_MAX = 10.0
# Upper bound in seconds on a server's Retry-After; CvatRetry.get_retry_after cuts longer waits to it.
RETRY_AFTER_MAX = 30.0
# Tasks asked for per page. CVAT has no cap on page_size, so large pages save round trips.
TASK_PAGE_SIZE = 1000
# Entries asked for per content-v2 page; CVAT cuts any larger value to 500.
CONTENT_PAGE_SIZE = 500
# Seconds between polls of a request: short at first so a quick job is noticed within a second.
POLL_INTERVALS = (0.25, 0.5, 0.75)
# Shortest sleep between polls, used when the progress seen so far predicts an early finish.
POLL_MIN_INTERVAL = 0.1
# Seconds added to a predicted finish, so the poll after it usually finds the request done.
POLL_FINISH_MARGIN = 0.05
# Failed polls in a row (each after its own retries) before the script stops waiting.
POLL_FAILURES_MAX = 5
# Poll interval in seconds once a request has run for POLL_SLOW_AFTER seconds.
POLL_SLOW_INTERVAL = 2.0
POLL_SLOW_AFTER = 60.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Methods that give the same result when repeated, so a lost response may be retried blindly.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
# Statuses of a proxy or of CVAT that mean "try again later".
RETRY_STATUSES = (429, 502, 503, 504)
# Maximum length of a server message in an error line, in characters.
MAX_MESSAGE_LENGTH = 300
# Environment and exit codes, shown at the end of every script's --help.
HELP_EPILOG = """environment:
  CVAT_URL            server address with scheme (default %s)
  CVAT_ACCESS_TOKEN   personal access token (CVAT 2.48 and later), sent as Bearer
  CVAT_TOKEN          legacy API key, sent as Token when CVAT_ACCESS_TOKEN is unset
  CVAT_ORG            optional organization slug, checked against the project's or task's
  REQUESTS_CA_BUNDLE  CA bundle for a certificate from a private CA
  CVAT_CONNECT_TIMEOUT, CVAT_READ_TIMEOUT  seconds per connection and per response (10, 120)
  CVAT_RETRY_BACKOFF  base of the wait between retries in seconds (0.5)
  CVAT_DEBUG=1        one stderr line per HTTP call, never headers or tokens

exit codes: 0 done, 1 failed, 2 bad usage or configuration (nothing sent), 130 interrupted""" % (
    DEFAULT_CVAT_URL
)
# Subset names the scripts set. CVAT accepts any text, which invites typos and case variants.
SUBSETS = ("train", "validation", "test")
# Messages of a failed host name lookup on Linux, macOS and Windows.
NAME_LOOKUP_ERRORS = re.compile(
    r"Name or service not known|nodename nor servname|Temporary failure in name resolution"
    r"|getaddrinfo failed|No address associated with hostname"
)

_secrets = []


class CvatError(Exception):
    """An expected failure: one line for stderr and the exit code to end with."""

    def __init__(self, message, exit_code=EXIT_FAILED):
        # Redacted here, so that str(), repr() and tracebacks of the error never show a token.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CvatError):
    """A bad argument or setting, found before any request was sent."""

    def __init__(self, message):
        super().__init__(message, EXIT_USAGE)


class HttpError(CvatError):
    """A CVAT response with an unexpected HTTP status."""

    def __init__(self, message, status, server_message, response=None):
        super().__init__(message, EXIT_FAILED)
        self.status = status
        self.server_message = server_message
        self.response = response


def redact(text):
    """Replace every configured token in text with '***'."""
    text = str(text)
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def log(message):
    """Print a progress line on stderr.

    One write call per line, because print() writes the text and the newline separately and
    lines from the update script's worker threads would run into each other.
    """
    sys.stderr.write(redact(message) + "\n")
    sys.stderr.flush()


class Config:
    """Connection settings read from the environment."""

    def __init__(self, url, token, token_scheme, token_variable, org, timeouts, backoff):
        self.url = url
        self.token = token
        self.token_scheme = token_scheme
        self.token_variable = token_variable
        self.org = org
        self.timeouts = timeouts
        self.backoff = backoff

    def __repr__(self):
        return "Config(url=%r, token=***, token_scheme=%r, org=%r)" % (
            self.url,
            self.token_scheme,
            self.org,
        )


def check_cvat_url(raw):
    """Return the CVAT base address without a trailing slash, or raise UsageError."""
    url = raw.strip().rstrip("/")
    if not url:
        raise UsageError("CVAT_URL is empty: set it to the server address, e.g. %s" % DEFAULT_CVAT_URL)

    if "://" not in url:
        raise UsageError(
            "invalid CVAT_URL %r: the scheme is missing; add http:// or https:// (e.g. http://%s)"
            % (url, url)
        )

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError("invalid CVAT_URL %r: the scheme must be http or https" % url)
    if parts.username or parts.password:
        raise UsageError(
            "invalid CVAT_URL: remove the user name and password from it; "
            "put the token in CVAT_ACCESS_TOKEN or CVAT_TOKEN"
        )
    try:
        parts.port
    except ValueError:
        raise UsageError("invalid CVAT_URL %r: the port is not a number from 1 to 65535" % url)
    if not parts.hostname:
        raise UsageError("invalid CVAT_URL %r: the host name is missing" % url)
    if parts.path or parts.query or parts.fragment:
        base = "%s://%s" % (parts.scheme, parts.netloc)
        raise UsageError(
            "invalid CVAT_URL %r: it must be the server's base address without a path, e.g. %s"
            % (url, base)
        )
    return url


def check_token(name, value):
    """Return a token from the environment variable name, or raise UsageError."""
    token = value.strip()
    if re.match(r"(?i)(bearer|token|basic)\s", token):
        raise UsageError(
            "%s contains a whole Authorization header: set it to the token alone, "
            "without the word before it" % name
        )
    if re.search(r"\s", token) or not token.isprintable() or not token.isascii():
        raise UsageError("%s is not a valid token: it contains spaces or non-ASCII characters" % name)
    return token


def read_seconds(env, name, default):
    """Return a positive number of seconds from the environment, or raise UsageError."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise UsageError("invalid %s %r: give a positive number of seconds" % (name, raw))
    return value


def read_backoff(env):
    """Return the retry backoff base in seconds; 0 turns waiting off."""
    raw = env.get("CVAT_RETRY_BACKOFF", "").strip()
    if not raw:
        return RETRY_BACKOFF
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 <= value <= RETRY_BACKOFF_MAX):
        raise UsageError(
            "invalid CVAT_RETRY_BACKOFF %r: give a number of seconds from 0 to %g" % (raw, RETRY_BACKOFF_MAX)
        )
    return value


def load_config(env=None):
    """Read and check the connection settings; raise UsageError before anything is sent."""
    env = os.environ if env is None else env
    url = check_cvat_url(env.get("CVAT_URL") or DEFAULT_CVAT_URL)

    access_token = env.get("CVAT_ACCESS_TOKEN", "").strip()
    api_key = env.get("CVAT_TOKEN", "").strip()
    if access_token:
        token = check_token("CVAT_ACCESS_TOKEN", access_token)
        scheme, variable = "Bearer", "CVAT_ACCESS_TOKEN"
    elif api_key:
        token = check_token("CVAT_TOKEN", api_key)
        scheme, variable = "Token", "CVAT_TOKEN"
    else:
        raise UsageError(
            "no token set: export CVAT_ACCESS_TOKEN=<personal access token> (CVAT 2.48 and later) "
            "or CVAT_TOKEN=<API key>"
        )
    if token not in _secrets:
        _secrets.append(token)

    if url.startswith("https://"):
        check_ca_bundle(env)
    org = env.get("CVAT_ORG", "").strip()
    timeouts = (
        read_seconds(env, "CVAT_CONNECT_TIMEOUT", CONNECT_TIMEOUT),
        read_seconds(env, "CVAT_READ_TIMEOUT", READ_TIMEOUT),
    )
    return Config(url, token, scheme, variable, org, timeouts, read_backoff(env))


def check_ca_bundle(env):
    """Raise UsageError if the CA bundle file that requests takes from the environment is missing.

    requests reads REQUESTS_CA_BUNDLE, or CURL_CA_BUNDLE when that is unset, and raises a bare
    OSError on a path that does not exist.
    """
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        path = env.get(name, "")
        if not path:
            continue
        if not os.path.exists(path):
            raise UsageError(
                "%s is %r, which does not exist: point it at the PEM file of the CA that signed "
                "the CVAT server's certificate, or unset it" % (name, path)
            )
        return


def origin_of(url):
    """Return (scheme, host, port) of a URL, with the default port filled in."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


class TokenAuth(requests.auth.AuthBase):
    """Authorization header for CVAT, added only to requests that go to CVAT_URL's origin.

    An auth object, unlike a header in session.headers, is not replaced by a ~/.netrc entry.
    """

    def __init__(self, scheme, token, base_url):
        self._header = "%s %s" % (scheme, token)
        self._origin = origin_of(base_url)

    def __call__(self, request):
        if origin_of(request.url) == self._origin:
            request.headers["Authorization"] = self._header
        else:
            request.headers.pop("Authorization", None)
        return request

    def __repr__(self):
        return "TokenAuth(***)"


class CvatRetry(Retry):
    """urllib3 Retry that also repeats a throttled (429) write and reports each retry on stderr.

    CVAT returns 429 before it processes a call, so repeating it cannot create anything twice.
    Other statuses and read errors are retried only for idempotent methods.
    """

    def is_retry(self, method, status_code, has_retry_after=False):
        if status_code == 429 and self.total:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def get_retry_after(self, response):
        seconds = super().get_retry_after(response)
        if seconds is None:
            return None
        return min(seconds, RETRY_AFTER_MAX)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, ReadTimeoutError):
            # A server that sent nothing within the read timeout is unlikely to do better on
            # a repeat, and five repeats of a long timeout would stall the script for minutes.
            raise error
        new_retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None and response.status:
            reason = "HTTP %d" % response.status
        else:
            reason = short_reason(error) if error else "unknown error"
        path = (url or "").split("?", 1)[0]
        attempt = RETRY_TOTAL - (new_retry.total or 0)
        log("retrying %s %s (retry %d): %s" % (method, path, attempt, reason))
        return new_retry


def make_retry(backoff):
    """Build the retry policy shared by every call of a session."""
    options = dict(
        total=RETRY_TOTAL,
        connect=RETRY_CONNECT,
        read=RETRY_TOTAL,
        status=RETRY_TOTAL,
        # urllib3 counts TLS errors (a certificate that fails the check, plain HTTP on an
        # https:// address) as "other" errors, and they repeat on every attempt.
        other=0,
        redirect=0,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=True,
    )
    try:
        return CvatRetry(allowed_methods=IDEMPOTENT_METHODS, **options)
    except TypeError:
        # urllib3 older than 1.26 names the same option method_whitelist.
        return CvatRetry(method_whitelist=IDEMPOTENT_METHODS, **options)


def describe_server_message(response):
    """Return the server's own error text from a response, on one short line."""
    try:
        body = response.json()
    except ValueError:
        body = response.text

    if isinstance(body, dict):
        if "detail" in body:
            text = str(body["detail"])
        else:
            parts = []
            for field, problems in body.items():
                if isinstance(problems, list):
                    problems = " ".join(str(problem) for problem in problems)
                parts.append("%s: %s" % (field, problems))
            text = "; ".join(parts)
    elif isinstance(body, list):
        text = " ".join(str(item) for item in body)
    else:
        text = str(body or "")
        if re.search(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^>]*)?>", text):
            # An HTML error page of a proxy or of Django: keep its text only.
            text = re.sub(r"<[^>]+>", " ", text)

    text = " ".join(redact(text).split())
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 3] + "..."
    return text


class CvatClient:
    """One HTTP session to CVAT with timeouts, retries, auth and organization context."""

    def __init__(self, config):
        self.config = config
        self.base_url = config.url
        self.debug = os.environ.get("CVAT_DEBUG", "") not in ("", "0")
        self.request_count = 0
        # Server version as a tuple, for scripts that read /api/server/about.
        self.version = (0, 0, 0)
        # Organization query parameters sent with every call once the project's organization is known.
        self.org_params = {}
        self.session = requests.Session()
        self.session.auth = TokenAuth(config.token_scheme, config.token, config.url)
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "cvat-scripts"
        adapter = HTTPAdapter(max_retries=make_retry(config.backoff), pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self):
        self.session.close()

    def use_organization(self, organization_id):
        """Send the organization context org_id=<id> (org= for the personal sandbox) from now on."""
        if organization_id is None:
            self.org_params = {"org": ""}
        else:
            self.org_params = {"org_id": str(organization_id)}

    def send(self, method, path, params=None, json_body=None):
        """Send one call and return the response; raise CvatError when no response arrives."""
        url = self.base_url + path
        query = dict(self.org_params)
        query.update(params or {})
        headers = {}
        if self.config.org and not self.org_params:
            headers["X-Organization"] = self.config.org

        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=query,
                json=json_body,
                headers=headers,
                timeout=self.config.timeouts,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise CvatError(
                "could not connect to CVAT at %s within %g s: check CVAT_URL and that the server "
                "is reachable from this host" % (self.base_url, self.config.timeouts[0])
            )
        except requests.exceptions.ReadTimeout:
            raise CvatError(
                "%s %s timed out: no response within %g s (set CVAT_READ_TIMEOUT to wait longer)"
                % (method, path, self.config.timeouts[1])
            )
        except requests.exceptions.RequestException as error:
            raise self.connection_error(method, path, error)
        except OSError as error:
            # requests raises a bare OSError for a CA bundle path that does not exist.
            raise CvatError(
                "%s %s was not sent: %s; check REQUESTS_CA_BUNDLE" % (method, path, short_reason(error))
            )
        finally:
            self.request_count += 1

        if self.debug:
            log("%s %s -> %d (%.2f s)" % (method, path, response.status_code, time.monotonic() - started))
        if 300 <= response.status_code < 400:
            location = response.headers.get("Location", "")
            raise CvatError(
                "%s %s was redirected (HTTP %d) to %s: set CVAT_URL to the address CVAT is served "
                "from, usually the https:// one" % (method, path, response.status_code, location.split("?")[0])
            )
        return response

    def connection_error(self, method, path, error):
        """Build the one-line CvatError for a call that got no HTTP response, naming the cause."""
        kind = failure_kind(error)
        reason = short_reason(error)
        if kind == "dns":
            return CvatError(
                "cannot reach CVAT at %s: %s; check the host name in CVAT_URL and that this "
                "machine's DNS or VPN can resolve it" % (self.base_url, reason)
            )
        if kind == "refused":
            return CvatError(
                "cannot connect to CVAT at %s: connection refused; check the host and port in "
                "CVAT_URL and that the server is running" % self.base_url
            )
        if kind == "certificate":
            return CvatError(
                "TLS certificate check failed for %s (%s): if the server uses a private CA, "
                "set REQUESTS_CA_BUNDLE=/path/to/ca-bundle.pem" % (self.base_url, reason)
            )
        if kind == "tls":
            return CvatError(
                "TLS connection to %s failed (%s): check the scheme (http:// or https://) and "
                "the port in CVAT_URL" % (self.base_url, reason)
            )
        if kind == "timeout":
            return CvatError(
                "%s %s timed out: no response within %g s (set CVAT_READ_TIMEOUT to wait longer)"
                % (method, path, self.config.timeouts[1])
            )
        return CvatError(
            "%s %s failed: %s (CVAT at %s); check that CVAT and any proxy in front of it are "
            "running" % (method, path, reason, self.base_url)
        )

    def call(self, method, path, what, params=None, json_body=None, expected=(200,)):
        """Send one call and return the parsed JSON body; raise HttpError on another status."""
        response = self.send(method, path, params=params, json_body=json_body)
        if response.status_code not in expected:
            raise self.http_error(response, method, what)
        if response.status_code == 204 or not response.content:
            return None
        return self.parse_json(response, method, what)

    def parse_json(self, response, method, what):
        """Return the JSON body of a response; a body that is not JSON raises CvatError."""
        try:
            return response.json()
        except ValueError:
            raise CvatError(
                "%s failed: %s %s returned HTTP %d with a body that is not JSON; check that "
                "CVAT_URL points at CVAT, not at a proxy or login page"
                % (what, method, urlsplit(response.url).path, response.status_code)
            )

    def get(self, path, what, params=None):
        return self.call("GET", path, what, params=params)

    def http_error(self, response, method, what):
        """Build the one-line HttpError for an unexpected response, with a hint for the usual causes."""
        status = response.status_code
        server_message = describe_server_message(response)
        message = "%s failed: HTTP %d" % (what, status)
        retries = getattr(getattr(response, "raw", None), "retries", None)
        retried = len(getattr(retries, "history", None) or ())
        if retried:
            message += " from %s %s after %d %s" % (
                method,
                urlsplit(response.url).path,
                retried,
                "retry" if retried == 1 else "retries",
            )
        if server_message:
            message += ": %s" % server_message
        hint = self.hint_for(status, method, server_message)
        if hint:
            message += " (%s)" % hint
        return HttpError(message, status, server_message, response)

    def hint_for(self, status, method, server_message=""):
        """Return what the user can do about an HTTP status, or an empty string."""
        if status == 401 and self.config.token_scheme == "Bearer" and "not provided" in server_message:
            # CVAT before 2.48 does not know the Bearer scheme and treats the call as anonymous.
            return (
                "this server did not accept a Bearer token: CVAT before 2.48 takes only API keys, "
                "so unset CVAT_ACCESS_TOKEN and set CVAT_TOKEN to your API key"
            )
        if status == 401 and self.config.token_scheme == "Bearer":
            return (
                "CVAT rejected the token in CVAT_ACCESS_TOKEN: check that it is current and belongs "
                "to this server; a legacy API key goes in CVAT_TOKEN instead"
            )
        if status == 401:
            return "CVAT rejected the token in %s: check that it is current and belongs to this server" % (
                self.config.token_variable
            )
        if status == 404 and self.config.org and not self.org_params:
            return "CVAT_ORG is %r: check that this organization exists, or unset CVAT_ORG" % self.config.org
        if status == 403 and method != "GET":
            return (
                "the token may be read-only: create a personal access token with write access, "
                "or ask for a role that may change this"
            )
        if status == 403:
            return "no access: check your role and the organization (CVAT_ORG)"
        if status == 429:
            return "CVAT is throttling requests: wait a minute and run again"
        if status >= 500:
            return "a CVAT server error: try again later or check the server logs"
        return ""

    def list_all(self, path, what, params=None):
        """Return every result of a paginated list, stepping page numbers on CVAT_URL.

        The server's own next links are not followed: behind a proxy they can name another host.
        """
        results = []
        page = 1
        while True:
            query = dict(params or {})
            query.update({"page": page, "page_size": TASK_PAGE_SIZE})
            response = self.send("GET", path, params=query)
            if response.status_code == 404 and page > 1:
                # The list shrank while it was read: the last page no longer exists.
                break
            if response.status_code != 200:
                raise self.http_error(response, "GET", what)

            data = self.parse_json(response, "GET", what)
            if not isinstance(data, dict):
                raise CvatError("%s failed: GET %s returned JSON that is not a page of results" % (what, path))
            page_results = data.get("results") or []
            results.extend(page_results)
            count = data.get("count")
            if not data.get("next") or not page_results or (count is not None and len(results) >= count):
                break
            page += 1
        return results

    def request_url(self, rq_id):
        return "/api/requests/%s" % quote(rq_id, safe="")

    def task_url(self, task_id):
        """Return the address of a task in the CVAT web UI."""
        return "%s/tasks/%d" % (self.base_url, task_id)


def exception_chain(error):
    """Return error and every exception it wraps, through urllib3 reasons, arguments and causes."""
    chain = []
    pending = [error]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending.append(getattr(current, "reason", None))
        pending.extend(current.args)
        pending.append(current.__cause__)
    return chain


def failure_kind(error):
    """Return why a call got no response: dns, refused, certificate, tls, timeout, closed or other."""
    chain = exception_chain(error)
    text = " ".join(str(item) for item in chain)

    def found(*types):
        return any(isinstance(item, types) for item in chain)

    if found(socket.gaierror) or NAME_LOOKUP_ERRORS.search(text):
        return "dns"
    if found(ConnectionRefusedError) or "Connection refused" in text:
        return "refused"
    if found(ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate"
    if found(ssl.SSLError, urllib3.exceptions.SSLError):
        return "tls"
    if found(socket.timeout, urllib3.exceptions.ReadTimeoutError):
        return "timeout"
    if found(ConnectionError, http.client.HTTPException, urllib3.exceptions.ProtocolError):
        return "closed"
    return "other"


def short_reason(error):
    """Return the cause of a failed call in a few words, without the long urllib3 wrapping."""
    kind = failure_kind(error)
    chain = exception_chain(error)
    if kind == "dns":
        return "DNS lookup of the host name failed"
    if kind == "refused":
        return "connection refused"
    if kind == "certificate":
        details = [item.verify_message for item in chain if getattr(item, "verify_message", None)]
        return "certificate verify failed" + (": " + details[0] if details else "")
    if kind == "tls":
        # "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)" becomes the middle part.
        texts = [str(item) for item in chain if isinstance(item, ssl.SSLError)]
        text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", texts[-1] if texts else str(error))
        return "TLS handshake failed: " + text
    if kind == "timeout":
        return "timed out"
    if kind == "closed":
        if any(isinstance(item, ConnectionResetError) for item in chain):
            return "the connection was reset"
        return "the server closed the connection without a response"

    text = str(error)
    match = re.search(r"\(Caused by \w+\((?:'[^']*'|<[^>]*>)?,? ?(.*)\)\)?$", text)
    if match and match.group(1).strip("'\" "):
        text = match.group(1)
    text = " ".join(redact(text).split())
    return text[:MAX_MESSAGE_LENGTH]


def poll_interval(elapsed, polls, predicted=None):
    """Return the seconds to sleep before the next poll.

    predicted is the estimated time left until the request finishes: the sleep ends then,
    though never sooner than POLL_MIN_INTERVAL, so a quick finish is noticed at once.
    """
    if elapsed >= POLL_SLOW_AFTER:
        interval = POLL_SLOW_INTERVAL
    else:
        interval = POLL_INTERVALS[min(polls, len(POLL_INTERVALS) - 1)]
    if predicted is not None:
        interval = max(POLL_MIN_INTERVAL, min(interval, predicted + POLL_FINISH_MARGIN))
    return interval


def predict_finish(previous, current):
    """Return the seconds until progress reaches 1 at the rate seen between two polls, or None.

    previous and current are (time, progress) pairs; progress is 0..1 or None.
    """
    (previous_time, previous_progress), (current_time, current_progress) = previous, current
    if previous_progress is None or current_progress is None:
        return None
    if current_progress <= previous_progress or current_time <= previous_time:
        return None
    rate = (current_progress - previous_progress) / (current_time - previous_time)
    return (1.0 - current_progress) / rate


class PollTimeout(CvatError):
    """The deadline passed while CVAT was still processing."""


class RequestGone(Exception):
    """The request id is unknown to the server (404)."""

    def __init__(self, seen):
        super().__init__("request not found")
        self.seen = seen


def poll(fetch_state, timeout, describe):
    """Call fetch_state() until it returns a final state; print changes; return the final state.

    fetch_state returns a dict with "status" (queued, started, finished, failed), "message" and
    "progress" (0..1 or None). Raise PollTimeout after timeout seconds.
    """
    started = time.monotonic()
    deadline = started + timeout
    polls = 0
    last_report = None
    last_progress = (started, None)
    failures = 0
    while True:
        try:
            state = fetch_state()
            failures = 0
        except CvatError as error:
            failures = check_poll_failure(error, failures, describe)
            now = time.monotonic()
            if now >= deadline:
                raise PollTimeout("timed out after %g s" % timeout)
            time.sleep(min(POLL_SLOW_INTERVAL, max(deadline - now, 0.01)))
            continue
        polls += 1
        status = state.get("status")
        if status in ("finished", "failed"):
            return state

        progress = state.get("progress")
        if progress is not None:
            progress = float(progress)
        percent = None if progress is None else int(progress * 100) // 10 * 10
        report = (status, state.get("message") or "", percent)
        if report != last_report:
            line = "%s: %s" % (describe, status)
            if report[1]:
                line += ", %s" % report[1]
            if percent is not None:
                line += " (%d%%)" % percent
            log(line)
            last_report = report

        now = time.monotonic()
        if now >= deadline:
            raise PollTimeout("timed out after %g s" % timeout)
        predicted = predict_finish(last_progress, (now, progress))
        last_progress = (now, progress)
        time.sleep(min(poll_interval(now - started, polls, predicted), max(deadline - now, 0.01)))


def check_poll_failure(error, failures, describe):
    """Return the new count of failed polls in a row, or re-raise error when it is not transient.

    A throttled poll, a server error or a lost connection does not stop processing on the
    server, so polling goes on up to POLL_FAILURES_MAX failures in a row.
    """
    if isinstance(error, HttpError) and error.status != 429 and error.status < 500:
        raise error
    failures += 1
    if failures > POLL_FAILURES_MAX:
        raise error
    log("%s: checking failed (%s); trying again" % (describe, error.message))
    return failures


def fetch_request_state(client, rq_id, seen):
    """Return the state of a CVAT request; raise RequestGone on 404."""
    what = "checking request %s" % rq_id
    response = client.send("GET", client.request_url(rq_id))
    if response.status_code == 404:
        raise RequestGone(seen)
    if response.status_code != 200:
        raise client.http_error(response, "GET", what)
    data = client.parse_json(response, "GET", what)
    if not isinstance(data, dict):
        raise CvatError("%s failed: GET %s returned JSON that is not a request" % (what, client.request_url(rq_id)))
    return {
        "status": data.get("status"),
        "message": data.get("message") or "",
        "progress": data.get("progress"),
    }


def fetch_legacy_task_state(client, task_id):
    """Return the creation state of a task from GET /api/tasks/{id}/status (CVAT before 2.16)."""
    data = client.get("/api/tasks/%d/status" % task_id, "checking task %d status" % task_id)
    progress = data.get("progress")
    return {
        "status": str(data.get("state", "")).lower(),
        "message": data.get("message") or "",
        "progress": None if progress is None else float(progress) / 100,
    }


def parse_version(text):
    """Return a version string such as '2.73.0' as a tuple of ints; unknown parts count as 0."""
    numbers = re.findall(r"\d+", str(text or ""))[:3]
    while len(numbers) < 3:
        numbers.append("0")
    return tuple(int(number) for number in numbers)


def supports_emoji(stream):
    """Return True if stream can encode the report's emoji; otherwise make it replace errors."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "📊📁•".encode(encoding)
        return True
    except (UnicodeEncodeError, LookupError):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
        return False


def run(main, argv=None):
    """Run a script's main(argv) and turn expected failures into one stderr line and an exit code."""
    code = run_main(main, argv)
    if code == EXIT_INTERRUPTED and threading.active_count() > 1:
        # Worker threads may still be waiting on a retry; the user asked to stop now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def run_main(main, argv):
    """Call main(argv) and return its exit code, printing the one-line error of a failure."""
    script = os.path.basename(sys.argv[0]) or "cvat-script"
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a closing session) takes the same path as Ctrl-C, so the line that
        # names a half-finished task is printed either way.
        signal.signal(signal.SIGTERM, raise_interrupt)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            # A task name with characters the terminal's encoding lacks must not crash the
            # output after the work is done.
            stream.reconfigure(errors="backslashreplace")
    if sys.stdout is None:
        # Python sets sys.stdout to None when file descriptor 1 is closed, and print() then
        # drops the results without an error.
        print("%s: error: standard output is closed; run it with stdout open" % script, file=sys.stderr)
        return EXIT_USAGE
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except CvatError as error:
        print("%s: error: %s" % (script, redact(error.message)), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("%s: interrupted" % script, file=sys.stderr)
        return EXIT_INTERRUPTED
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        # A 200 response whose JSON has another shape than CVAT's: a proxy, another API, or a
        # CVAT version these scripts do not know.
        print(
            "%s: error: unexpected response from the server at CVAT_URL (%s: %s): check that it "
            "points at a CVAT 2.x server" % (script, type(error).__name__, redact(error)),
            file=sys.stderr,
        )
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. "| head"); silence the final flush.
        sys.stdout = open(os.devnull, "w")
        return EXIT_FAILED
    except OSError as error:
        # Writing the output failed (a full disk, a closed stdout). Requests' own errors are
        # OSErrors too, but CvatClient.send turns them into CvatError before they get here.
        sys.stdout = open(os.devnull, "w")
        print("%s: error: writing the output failed: %s" % (script, error), file=sys.stderr)
        return EXIT_FAILED


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class ArgumentParser(argparse.ArgumentParser):
    """argparse parser whose errors become one UsageError line (exit 2) instead of usage text."""

    def __init__(self, **options):
        options.setdefault("epilog", HELP_EPILOG)
        options.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**options)

    def error(self, message):
        raise UsageError("%s (see --help)" % message)


def check_subset(value, allow_clear=False):
    """Return the canonical lower-case subset for value, or raise UsageError with a suggestion.

    With allow_clear, "none" or "" returns "" (no subset).
    """
    folded = value.strip().lower()
    if folded in SUBSETS:
        if value != folded:
            log("note: subset %r is sent as %r" % (value, folded))
        return folded
    if allow_clear and folded in ("none", ""):
        return ""

    choices = SUBSETS + (("none",) if allow_clear else ())
    close = [c for c in choices if folded and (c.startswith(folded) or folded.startswith(c))]
    close += difflib.get_close_matches(folded, choices, n=1, cutoff=0.6)
    hint = " (did you mean %s?)" % close[0] if close else ""
    raise UsageError("invalid subset %r%s: use one of %s" % (value, hint, ", ".join(choices)))


def positive_int(text, name, upper=None):
    """Return text as an int from 1 to upper, or raise UsageError naming the setting."""
    stripped = str(text).strip()
    if not (stripped.isdigit() and stripped.isascii()) or int(stripped) < 1 or (upper and int(stripped) > upper):
        allowed = "an integer from 1 to %d" % upper if upper else "a positive integer"
        raise UsageError("invalid %s %r: give %s" % (name, text, allowed))
    return int(stripped)


def read_project(client, project_id):
    """Return the project; a missing or hidden project is a one-line CvatError."""
    what = "reading project %d" % project_id
    try:
        return client.get("/api/projects/%d" % project_id, what)
    except HttpError as error:
        if error.status == 404:
            raise CvatError(
                "project %d not found (HTTP 404: %s): check the project id%s"
                % (project_id, error.server_message, " and CVAT_ORG" if client.config.org else "")
            )
        raise


def organization_id_of(resource):
    """Return the organization id of a project or task, or None for the personal sandbox.

    Older CVAT servers send only organization, newer ones both fields.
    """
    if "organization_id" in resource:
        return resource["organization_id"]
    return resource.get("organization")


def enter_project_organization(client, project):
    """Work in the project's own organization from now on, after checking CVAT_ORG against it.

    A task list without the project's organization misses tasks made by colleagues, and a task
    created without it lands in the wrong workspace, so every later call carries it.
    """
    organization_id = organization_id_of(project)
    expected = client.config.org
    if expected:
        if organization_id is None:
            raise CvatError(
                "CVAT_ORG is %r, but project %d (%s) is in the personal workspace: unset CVAT_ORG"
                % (expected, project["id"], project.get("name", ""))
            )
        organization = client.get(
            "/api/organizations/%d" % organization_id, "reading organization %d" % organization_id
        )
        slug = organization.get("slug", "")
        if slug != expected:
            raise CvatError(
                "CVAT_ORG is %r, but project %d (%s) belongs to organization %r: set CVAT_ORG=%s "
                "or unset it" % (expected, project["id"], project.get("name", ""), slug, slug)
            )
    client.use_organization(organization_id)
    return organization_id
