"""What this server supports, the user roles and their scopes, and the redirect-URI rules:
the one home of each.

Client registration (``clients.py``: create and update, CLI and service), the client model's
check at authorization time (``models.Client.check_redirect_uri``), the accounts
(``accounts.py``) and the Authlib wiring (``oauth2.py``) all read these; nothing else lists
grant types, scopes, roles, client authentication methods or loopback hosts.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from shared.errors import InvalidRequest

# --- what a client may be registered for -----------------------------------------------

# RFC 8628: a device without a browser (desk phone, kiosk, command-line tool) shows a code
# that its user types on the /device page; it needs no redirect URI.
DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = (
    "authorization_code",
    "implicit",
    "refresh_token",
    "client_credentials",
    DEVICE_CODE_GRANT_TYPE,
)
DEFAULT_GRANT_TYPES = ("authorization_code",)
# The grants through which a person signs in and the client acts on their behalf.
BROWSER_GRANT_TYPES = ("authorization_code", "implicit", DEVICE_CODE_GRANT_TYPE)
# OpenID Connect: ``id_token`` and ``id_token token`` are the implicit grant's (Core §3.2).
ID_TOKEN_RESPONSE_TYPES = ("id_token", "id_token token")
RESPONSE_TYPES = ("code", "token", *ID_TOKEN_RESPONSE_TYPES)
# The response types of the implicit grant (the tokens come in the redirect's fragment).
IMPLICIT_RESPONSE_TYPES = ("token", *ID_TOKEN_RESPONSE_TYPES)
# ``call``: a person's own calls; ``admin``: every user's calls (the call API's admin
# interface); ``introspect``: the client may introspect any token (RFC 7662), not only its
# own. ``introspect`` is a right of the client, checked against its registration, so no
# person is ever granted it. ``dialer``: a phone system claims queued calls and reports
# their progress (the call API's dialer interface).
# ``openid`` (an ID token and the userinfo endpoint), ``profile`` (name, username) and
# ``email``: OpenID Connect's, about the person who signed in (auth_server/oidc.py).
OIDC_SCOPES = ("openid", "profile", "email")
SCOPES = ("call", "admin", "introspect", "dialer", *OIDC_SCOPES)
# Scopes that act for a person (their calls, who they are): never in a token issued
# without a user.
PERSON_SCOPES = ("call", *OIDC_SCOPES)
# Scopes of a machine acting for itself: only a client_credentials-only client has them.
MACHINE_SCOPES = ("dialer",)
DEFAULT_SCOPE = "call"
# A client that mixes this scope with a browser grant must be registered with an explicit
# flag (``--allow-admin-for-users``); only users with the ``admin`` role get it through one.
ADMIN_SCOPE = "admin"
INTROSPECT_SCOPE = "introspect"

# --- what a person may be granted ------------------------------------------------------

ROLES = ("user", "admin")
DEFAULT_ROLE = "user"
# Through the browser flows (and their refreshes) a user gets at most these scopes.
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "user": ("call", *OIDC_SCOPES),
    "admin": ("call", "admin", *OIDC_SCOPES),
}


def role_scopes(role: str | None) -> tuple[str, ...]:
    """The scopes a user with ``role`` may be granted (none for an unknown role)."""
    return ROLE_SCOPES.get(role or "", ())


def scope_for_role(scope: str | None, role: str | None) -> str:
    """``scope`` without the scopes ``role`` may not be granted, order kept ("" if none)."""
    allowed = role_scopes(role)
    return " ".join(s for s in dict.fromkeys((scope or "").split()) if s in allowed)


def mixes_admin_with_browser(grant_types: Iterable[str], scopes: Iterable[str]) -> bool:
    """A client that may ask for ``admin`` through a flow where a person signs in."""
    return ADMIN_SCOPE in set(scopes) and bool(set(grant_types) & set(BROWSER_GRANT_TYPES))


# --- client authentication at the token, revocation and introspection endpoints --------

SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
PUBLIC_AUTH_METHOD = "none"
# RFC 7523 §2.2 / OpenID Connect Core §9: a signed JWT (``client_assertion``) instead of the
# secret: signed with the client's private key (its registered ``jwks``/``jwks_uri``), or
# HMAC'd with its client secret (auth_server/client_auth.py).
PRIVATE_KEY_JWT = "private_key_jwt"
CLIENT_SECRET_JWT = "client_secret_jwt"
JWT_AUTH_METHODS = (PRIVATE_KEY_JWT, CLIENT_SECRET_JWT)
# A client registered for one of these uses that one alone (models.Client).
CONFIDENTIAL_AUTH_METHODS = (*SECRET_AUTH_METHODS, *JWT_AUTH_METHODS)
CLIENT_AUTH_METHODS = (*SECRET_AUTH_METHODS, PUBLIC_AUTH_METHOD, *JWT_AUTH_METHODS)
DEFAULT_SECRET_AUTH_METHOD = "client_secret_basic"
# The signature algorithms a client assertion may use, per method (never "none").
ASSERTION_SIGNING_ALGS: dict[str, tuple[str, ...]] = {
    PRIVATE_KEY_JWT: (
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    ),
    CLIENT_SECRET_JWT: ("HS256", "HS384", "HS512"),
}

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
