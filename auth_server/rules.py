"""What this server supports, and the redirect-URI rules: the one home of each.

Client registration (``clients.py``: create and update, CLI and service), the client model's
check at authorization time (``models.Client.check_redirect_uri``) and the Authlib wiring
(``oauth2.py``) all read these; nothing else lists grant types, scopes, client
authentication methods or loopback hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from shared.errors import InvalidRequest

# --- what a client may be registered for -----------------------------------------------

GRANT_TYPES = ("authorization_code", "implicit", "refresh_token", "client_credentials")
DEFAULT_GRANT_TYPES = ("authorization_code",)
RESPONSE_TYPES = ("code", "token")
SCOPES = ("call", "admin")
DEFAULT_SCOPE = "call"

# --- client authentication at the token, revocation and introspection endpoints --------

SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
PUBLIC_AUTH_METHOD = "none"
CLIENT_AUTH_METHODS = (*SECRET_AUTH_METHODS, PUBLIC_AUTH_METHOD)
DEFAULT_SECRET_AUTH_METHOD = "client_secret_basic"

# --- redirect URIs ------------------------------------------------------------------------

# RFC 8252 §7.3 / §8.3: the loopback interface, by IPv4 or IPv6 literal, or by name. Compared
# with ``urlsplit(uri).hostname`` (lower-cased, IPv6 brackets removed).
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
FORBIDDEN_SCHEMES = ("javascript", "data", "file", "vbscript")


def is_loopback(parts: SplitResult) -> bool:
    return parts.hostname in LOOPBACK_HOSTS


def validate_redirect_uri(uri: str, production: bool) -> str:
    """A redirect URI a client may register (create and update); ``InvalidRequest`` if not."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise InvalidRequest(f"Redirect URI {uri!r} is not a valid URI.") from exc
    if not parts.scheme or not (parts.netloc or parts.scheme not in ("http", "https")):
        raise InvalidRequest(f"Redirect URI {uri!r} must be an absolute URI.")
    if parts.fragment or "#" in uri:
        raise InvalidRequest(f"Redirect URI {uri!r} must not contain a fragment.")
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidRequest(f"Redirect URI {uri!r} must not contain userinfo.")
    if "*" in uri:
        raise InvalidRequest(f"Redirect URI {uri!r} must not contain wildcards.")
    if parts.scheme == "http" and production and not is_loopback(parts):
        raise InvalidRequest(
            f"Redirect URI {uri!r}: http:// is only allowed for loopback in production."
        )
    if parts.scheme in FORBIDDEN_SCHEMES:
        raise InvalidRequest(f"Redirect URI {uri!r} uses a forbidden scheme.")
    return uri


def _host(netloc: str) -> str:
    """The host part of a netloc as written (``[::1]`` keeps its brackets)."""
    if netloc.startswith("["):
        return netloc.split("]")[0] + "]"
    return netloc.rsplit(":", 1)[0]


def same_loopback_but_port(registered: str, candidate: str) -> bool:
    """``candidate`` is ``registered`` on another port of the same loopback host (RFC 8252
    §7.3); scheme (``http``), host as written, path and query must be identical."""
    try:
        reg, cand = urlsplit(registered), urlsplit(candidate)
        cand_port = cand.port
    except ValueError:
        return False
    if reg.scheme != "http" or cand.scheme != "http":
        return False
    host, cand_host = _host(reg.netloc), _host(cand.netloc)
    if not is_loopback(reg) or cand_host != host or "@" in cand.netloc:
        return False
    if cand_port is None and cand.netloc != cand_host:
        return False
    return (reg.path, reg.query, reg.fragment) == (cand.path, cand.query, cand.fragment)


def redirect_uri_allowed(registered: Iterable[str], candidate: str, port_may_vary: bool) -> bool:
    """Exact string match against a registered URI; with ``port_may_vary`` (native public
    clients) a loopback URI may also differ in its port alone."""
    uris = list(registered)
    if candidate in uris:
        return True
    return port_may_vary and any(same_loopback_but_port(uri, candidate) for uri in uris)
