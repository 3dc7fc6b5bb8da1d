"""Dynamic client registration (RFC 7591) and its management (RFC 7592).

- ``POST /oauth/register`` registers a client from JSON metadata. It needs an initial access
  token (``Authorization: Bearer …``) minted by an operator (``auth-server
  registration-tokens create``) unless ``AUTH_REGISTRATION=open``; ``AUTH_REGISTRATION=off``
  removes the endpoint. An initial access token may expire, be limited to N registrations
  (counted atomically: :func:`consume_token`) and be revoked; only its SHA-256 is kept.
- The answer carries a registration access token (kept as its SHA-256 on the client row, not
  rotated on update) and ``registration_client_uri``: ``GET`` reads the registration, ``PUT``
  replaces its metadata, ``DELETE`` deletes the client and revokes its tokens.
- Metadata is checked as strictly as ``auth-server clients create`` (``clients.py`` and
  ``rules.py`` do the checking) and more: a registered client may ask for ``call`` and the
  OpenID Connect scopes only (never ``admin``, ``introspect`` or ``dialer``), and never for
  ``client_credentials`` (its scopes are all an operator's to grant). Software statements are
  refused (``invalid_software_statement``).

Authlib's :class:`ClientRegistrationEndpoint` / :class:`ClientConfigurationEndpoint` run the
protocol; their metadata validation (RFC 7591 ``ClientMetadataClaims``) is replaced by
:func:`registration_metadata`: it accepts any URL Python can parse as a redirect URI (and
refuses native apps' private-use schemes that ours allow), and its errors carry no sentence.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7591 import (
    ClientRegistrationEndpoint,
    InvalidClientMetadataError,
    InvalidRedirectURIError,
    InvalidSoftwareStatementError,
)
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint
from flask import current_app
from flask import request as http
from sqlalchemy import or_, select, update

from shared.errors import InvalidRequest, ObjectDoesNotExist

from . import clients
from .client_auth import encrypt_secret
from .extensions import db
from .models import Client, RegistrationToken, hash_client_secret, sha256_hex
from .rules import (
    ADMIN_SCOPE,
    ASSERTION_SIGNING_ALGS,
    CLIENT_AUTH_METHODS,
    CLIENT_SECRET_JWT,
    DEFAULT_SECRET_AUTH_METHOD,
    INTROSPECT_SCOPE,
    JWT_AUTH_METHODS,
    MACHINE_SCOPES,
    PRIVATE_KEY_JWT,
    PUBLIC_AUTH_METHOD,
    SCOPES,
    validate_redirect_uri,
)

# The scopes only an operator may give a client (`auth-server clients create`).
OPERATOR_SCOPES = (ADMIN_SCOPE, INTROSPECT_SCOPE, *MACHINE_SCOPES)
REGISTRABLE_SCOPES = tuple(s for s in SCOPES if s not in OPERATOR_SCOPES)
# Grants a registered client may not have: client_credentials acts for no person, so its
# scopes would be admin, introspect or dialer.
OPERATOR_GRANTS = ("client_credentials",)
# Kept in client_metadata for the console and the CLI; never shown back to the client.
INTERNAL_KEYS = ("dynamically_registered", "initial_access_token_id")
URI_FIELDS = ("client_uri", "logo_uri", "policy_uri", "tos_uri")
STRING_FIELDS = {"client_name": 200, "software_id": 200, "software_version": 100}
BOOLEAN_FIELDS = (
    "dpop_bound_access_tokens",
    "require_pushed_authorization_requests",
    "require_auth_time",
)
MAX_URIS = 20
MAX_CONTACTS = 10
DEFAULT_CLIENT_NAME = "Unnamed application"
ENCRYPTION_FIELD = re.compile(r"_encrypt(ed|ion)_")
BEARER = re.compile(r"^\s*bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$", re.IGNORECASE)
REALM = "clickcall"
DURATION = re.compile(r"^(\d{1,6})([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def safe(text: str) -> str:
    """``text`` with the characters an error description may not hold (RFC 6749 §5.2)
    replaced by ``?``."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text)


# --- initial access tokens -------------------------------------------------------------------


def parse_expiry(value: str) -> int | None:
    """``30m``, ``1h``, ``7d``, ``90s`` → seconds; ``never`` → ``None``."""
    value = value.strip().lower()
    if value == "never":
        return None
    found = DURATION.match(value)
    if not found or int(found[1]) == 0:
        raise InvalidRequest(
            f"Cannot read the duration {value!r}: use a number and a unit (30m, 1h, 7d) or never."
        )
    return int(found[1]) * UNITS[found[2]]


@dataclass
class MintedToken:
    row: RegistrationToken
    token: str


def create_token(
    expires_in: int | None, max_uses: int | None = None, note: str = ""
) -> MintedToken:
    """A new initial access token; the plain token is returned once, its hash kept."""
    if max_uses is not None and max_uses < 1:
        raise InvalidRequest("--max-uses must be at least 1 (leave it out for no limit).")
    if len(note) > 200:
        raise InvalidRequest("The note is limited to 200 characters.")
    now = int(time.time())
    token = secrets.token_urlsafe(32)
    row = RegistrationToken(
        token_hash=sha256_hex(token),
        note=note,
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        max_uses=max_uses,
        uses=0,
    )
    db.session.add(row)
    db.session.commit()
    return MintedToken(row, token)


def list_tokens() -> list[RegistrationToken]:
    return list(db.session.scalars(select(RegistrationToken).order_by(RegistrationToken.id)))


def revoke_token(token_id: int) -> RegistrationToken:
    row = db.session.get(RegistrationToken, token_id)
    if row is None:
        raise ObjectDoesNotExist(f"No registration token {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = int(time.time())
        db.session.commit()
    return row


def token_state(row: RegistrationToken, now: int | None = None) -> str:
    """``active``, ``revoked``, ``expired`` or ``used up``."""
    now = int(time.time()) if now is None else now
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    if row.max_uses is not None and row.uses >= row.max_uses:
        return "used up"
    return "active"


def describe_token(row: RegistrationToken) -> dict[str, object]:
    return {
        "id": row.id,
        "note": row.note,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "max_uses": row.max_uses,
        "uses": row.uses,
        "revoked_at": row.revoked_at,
        "state": token_state(row),
    }


def consume_token(token_id: int) -> bool:
    """Count one registration against the token, if it still allows one (not revoked, not
    expired, not used up), in one conditional ``UPDATE``: concurrent registrations never
    exceed ``max_uses``. Not committed: it commits with the client it registers."""
    now = int(time.time())
    result = db.session.execute(
        update(RegistrationToken)
        .where(
            RegistrationToken.id == token_id,
            RegistrationToken.revoked_at.is_(None),
            or_(RegistrationToken.expires_at.is_(None), RegistrationToken.expires_at > now),
            or_(
                RegistrationToken.max_uses.is_(None),
                RegistrationToken.uses < RegistrationToken.max_uses,
            ),
        )
        .values(uses=RegistrationToken.uses + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# --- errors -----------------------------------------------------------------------------------


class BearerTokenError(InvalidTokenError):  # type: ignore[misc]
    """401 ``invalid_token`` with ``WWW-Authenticate: Bearer`` (RFC 6750 §3); a request that
    sent no token gets the challenge without an error code (§3.1)."""

    def __init__(self, description: str, missing: bool = False) -> None:
        super().__init__(description=safe(description), realm=REALM)
        self.missing = missing

    def get_headers(self) -> list[tuple[str, str]]:
        if not self.missing:
            return super().get_headers()  # type: ignore[no-any-return]
        headers = [h for h in super().get_headers() if h[0] != "WWW-Authenticate"]
        return [*headers, ("WWW-Authenticate", f'Bearer realm="{REALM}"')]


def metadata_error(text: str) -> InvalidClientMetadataError:
    """``invalid_client_metadata``, the CLI's option names put back into metadata names."""
    for option, field in (
        ("--redirect-uri", "redirect_uris"),
        ("--response-type", "response_types"),
        ("--grant-type", "grant_types"),
        ("--scope", "scope"),
        ("--public", "token_endpoint_auth_method none"),
    ):
        text = text.replace(option, field)
    return InvalidClientMetadataError(description=safe(text))


def _bearer_token(missing_text: str) -> str | None:
    header = http.headers.get("Authorization")
    if header is None:
        return None
    found = BEARER.match(header)
    if not found or len(found[1]) > 512:
        raise BearerTokenError(
            f"The Authorization header must be 'Bearer' and the token; {missing_text}"
        )
    return found[1]


# --- metadata -----------------------------------------------------------------------------------


def _string_list(data: dict[str, Any], name: str, limit: int = MAX_URIS) -> list[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise metadata_error(f"{name} must be a JSON array of strings.")
    if len(value) > limit:
        raise metadata_error(f"{name} has {len(value)} entries; at most {limit} are accepted.")
    return list(dict.fromkeys(value))


def _web_uri(name: str, value: object, production: bool) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        raise metadata_error(f"{name} must be a URL (a string of at most 2048 characters).")
    scheme, sep, rest = value.partition("://")
    host = rest.split("/")[0]
    if not sep or scheme not in ("https", "http") or not host or "#" in value or "@" in host:
        raise metadata_error(
            f"{name} must be an absolute http(s) URL without fragment or userinfo."
        )
    if production and scheme != "https":
        raise metadata_error(f"{name} must use https:// in production.")
    return value


def _server_metadata() -> dict[str, Any]:
    from .views.meta import metadata

    return metadata()


def registration_metadata(
    data: object, production: bool, current: Client | None = None
) -> dict[str, Any]:
    """The metadata to store for a registration (``current``: the client a PUT replaces),
    checked with the CLI's rules (``clients.client_metadata``) and the limits of dynamic
    registration; an RFC 7591 error (with a sentence) if anything is wrong."""
    if not isinstance(data, dict) or not data:
        raise metadata_error(
            "The request body must be a JSON object of client metadata (RFC 7591 section 2)."
        )
    if "software_statement" in data:
        raise InvalidSoftwareStatementError(
            description="This server does not accept software statements: send the client "
            "metadata itself in the JSON body."
        )
    method = data.get("token_endpoint_auth_method")
    if method is None:
        method = current.token_endpoint_auth_method if current else DEFAULT_SECRET_AUTH_METHOD
    if method not in CLIENT_AUTH_METHODS:
        raise metadata_error(
            "token_endpoint_auth_method must be one of " + ", ".join(CLIENT_AUTH_METHODS) + "."
        )
    if current is not None and method != current.token_endpoint_auth_method:
        raise metadata_error(
            f"token_endpoint_auth_method cannot change ({current.token_endpoint_auth_method}): "
            "register a new client for another method."
        )
    redirect_uris = _string_list(data, "redirect_uris") or []
    for uri in redirect_uris:
        try:
            validate_redirect_uri(uri, production)
        except InvalidRequest as exc:
            raise InvalidRedirectURIError(description=safe(exc.description)) from exc
    grant_types = _string_list(data, "grant_types", 10)
    response_types = _string_list(data, "response_types", 10)
    if grant_types is None:  # RFC 7591 §2: authorization_code, or what the responses need
        grant_types = ["authorization_code"]
        if response_types and "code" not in response_types:
            grant_types = []
    for grant in grant_types:
        if grant in OPERATOR_GRANTS:
            raise metadata_error(
                f"The {grant} grant cannot be registered dynamically: a client_credentials "
                "token acts for no person, and its scopes are an operator's to grant "
                "(auth-server clients create)."
            )
    if (
        response_types is not None
        and "authorization_code" in grant_types
        and "code" not in response_types
    ):
        raise metadata_error("grant_types has authorization_code: response_types needs code.")
    scope = data.get("scope", " ".join(REGISTRABLE_SCOPES))
    if not isinstance(scope, str):
        raise metadata_error("scope must be a string of space-separated scopes.")
    for name in scope.split():
        if name in OPERATOR_SCOPES:
            raise metadata_error(
                f"The scope '{name}' cannot be registered dynamically; a registered client may "
                f"ask for {', '.join(REGISTRABLE_SCOPES)} (an operator registers clients for "
                f"{', '.join(OPERATOR_SCOPES)})."
            )
        if name not in SCOPES:
            raise metadata_error(
                f"The scope {safe(name)[:40]!r} is unknown; a registered client may ask for "
                f"{', '.join(REGISTRABLE_SCOPES)}."
            )
    name = data.get("client_name", DEFAULT_CLIENT_NAME)
    if not isinstance(name, str) or not name.strip() or len(name) > STRING_FIELDS["client_name"]:
        raise metadata_error("client_name must be a non-empty string of at most 200 characters.")
    try:
        stored: dict[str, Any] = clients.client_metadata(
            name=name,
            redirect_uris=redirect_uris,
            grant_types=grant_types,
            response_types=response_types,
            scope=scope,
            public=method == PUBLIC_AUTH_METHOD,
            production=production,
            auth_method=method,
        )
        stored.update(
            clients.client_keys_metadata(method, data.get("jwks"), data.get("jwks_uri"), production)
        )
    except InvalidRequest as exc:
        raise metadata_error(exc.description) from exc
    stored.update(_optional_metadata(data, method, production))
    return stored


def _optional_metadata(data: dict[str, Any], method: str, production: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in data:
        if ENCRYPTION_FIELD.search(name):
            raise metadata_error(f"This server does not encrypt its responses ({name}).")
    post_logout = _string_list(data, "post_logout_redirect_uris")
    if post_logout is not None:
        for uri in post_logout:
            try:
                validate_redirect_uri(uri, production)
            except InvalidRequest as exc:
                raise metadata_error("post_logout_redirect_uris: " + exc.description) from exc
        out["post_logout_redirect_uris"] = post_logout
    for name in URI_FIELDS:
        if data.get(name) is not None:
            out[name] = _web_uri(name, data[name], production)
    contacts = _string_list(data, "contacts", MAX_CONTACTS)
    if contacts is not None:
        if any(len(c) > 254 or not c.strip() for c in contacts):
            raise metadata_error("Each of contacts must be a non-empty string (an address).")
        out["contacts"] = contacts
    for name, limit in STRING_FIELDS.items():
        value = data.get(name)
        if name != "client_name" and value is not None:
            if not isinstance(value, str) or len(value) > limit:
                raise metadata_error(f"{name} must be a string of at most {limit} characters.")
            out[name] = value
    for name in BOOLEAN_FIELDS:
        if data.get(name) is not None:
            if not isinstance(data[name], bool):
                raise metadata_error(f"{name} must be true or false.")
            out[name] = data[name]
    alg = data.get("token_endpoint_auth_signing_alg")
    if alg is not None:
        allowed = ASSERTION_SIGNING_ALGS.get(method, ())
        if alg not in allowed:
            raise metadata_error(
                f"token_endpoint_auth_signing_alg must be one of {', '.join(allowed)} for {method}."
                if allowed
                else "token_endpoint_auth_signing_alg is only for private_key_jwt and "
                "client_secret_jwt."
            )
        out["token_endpoint_auth_signing_alg"] = alg
    server = _server_metadata()
    id_token_alg = data.get("id_token_signed_response_alg")
    if id_token_alg is not None:
        supported = server.get("id_token_signing_alg_values_supported", ["RS256"])
        if id_token_alg not in supported:
            raise metadata_error(
                f"id_token_signed_response_alg must be one of {', '.join(supported)}."
            )
        out["id_token_signed_response_alg"] = id_token_alg
    application_type = data.get("application_type")
    if application_type is not None:
        if application_type not in ("web", "native"):
            raise metadata_error("application_type must be web or native.")
        out["application_type"] = application_type
    subject_type = data.get("subject_type")
    if subject_type is not None:
        supported = server.get("subject_types_supported", ["public"])
        if subject_type not in supported:
            raise metadata_error(f"subject_type must be one of {', '.join(supported)}.")
        out["subject_type"] = subject_type
    max_age = data.get("default_max_age")
    if max_age is not None:
        if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
            raise metadata_error("default_max_age must be a whole number of seconds.")
        out["default_max_age"] = max_age
    return out


def public_metadata(client: Client) -> dict[str, Any]:
    return {k: v for k, v in client.client_metadata.items() if k not in INTERNAL_KEYS}


def client_information(client: Client) -> dict[str, Any]:
    """RFC 7591 §3.2.1 / RFC 7592 §3 without the secret (stored hashed: shown once only)."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.client_id_issued_at,
    }
    if client.client_secret:
        body["client_secret_expires_at"] = 0
    body.update(public_metadata(client))
    return body


def registration_client_uri(client_id: str) -> str:
    return f"{current_app.config['AUTH_ISSUER']}/oauth/register/{client_id}"


# --- the endpoints (Authlib) -------------------------------------------------------------------


@dataclass
class OpenRegistration:
    """The credential of a registration without an initial access token (open mode)."""

    token_id: None = None


class ClientRegistration(ClientRegistrationEndpoint):  # type: ignore[misc]
    """RFC 7591 ``POST /oauth/register``."""

    def authenticate_token(self, request: Any) -> RegistrationToken | OpenRegistration:
        how = (
            "send an initial access token from the operator "
            "(auth-server registration-tokens create)."
        )
        token = _bearer_token(how)
        if token is None:
            if current_app.config["AUTH_REGISTRATION"] == "open":
                return OpenRegistration()
            raise BearerTokenError(
                f"Registration needs an initial access token: {how}", missing=True
            )
        row = db.session.scalar(
            select(RegistrationToken).where(RegistrationToken.token_hash == sha256_hex(token))
        )
        if row is None:
            raise BearerTokenError("The initial access token is unknown.")
        state = token_state(row)
        if state != "active":
            raise BearerTokenError(f"The initial access token is {state}.")
        return row

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        metadata = registration_metadata(request.payload.data, _production())
        request.registration_method = metadata["token_endpoint_auth_method"]
        return metadata

    def generate_client_id(self, request: Any) -> str:
        return clients.new_client_id()

    def generate_client_secret(self, request: Any) -> str | None:
        if request.registration_method in (PUBLIC_AUTH_METHOD, PRIVATE_KEY_JWT):
            return None
        return secrets.token_urlsafe(32)

    def get_server_metadata(self) -> dict[str, Any]:
        return _server_metadata()

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any
    ) -> Client:
        credential = request.credential
        if isinstance(credential, RegistrationToken) and not consume_token(credential.id):
            db.session.rollback()
            raise BearerTokenError("The initial access token was used up or revoked meanwhile.")
        secret = client_info["client_secret"]
        registration_token = secrets.token_urlsafe(32)
        client = Client(
            client_id=client_info["client_id"],
            client_secret=hash_client_secret(secret) if secret else None,
            client_id_issued_at=client_info["client_id_issued_at"],
            client_secret_expires_at=0,
            registration_token_hash=sha256_hex(registration_token),
        )
        if secret and request.registration_method == CLIENT_SECRET_JWT:
            client.client_secret_encrypted = encrypt_secret(secret)
        client.set_client_metadata(
            {
                **client_metadata,
                "dynamically_registered": True,
                "initial_access_token_id": getattr(credential, "id", None),
            }
        )
        db.session.add(client)
        db.session.commit()
        request.registration_access_token = registration_token
        return client

    def generate_client_registration_info(self, client: Client, request: Any) -> dict[str, str]:
        return {
            "registration_client_uri": registration_client_uri(client.client_id),
            "registration_access_token": request.registration_access_token,
        }

    def create_registration_response(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        status, body, headers = super().create_registration_response(request)
        if body.get("client_secret") is None:
            body.pop("client_secret", None)
            body.pop("client_secret_expires_at", None)
        return status, body, headers


@dataclass
class RegistrationCredential:
    """A registration access token, found by its hash on its client's row."""

    client: Client
    token: str

    def check_client(self, client: Client) -> bool:
        return bool(client.client_id == self.client.client_id)


class ClientConfiguration(ClientConfigurationEndpoint):  # type: ignore[misc]
    """RFC 7592 ``GET|PUT|DELETE /oauth/register/<client_id>``."""

    def authenticate_token(self, request: Any) -> RegistrationCredential:
        how = "send the registration_access_token the registration returned."
        token = _bearer_token(how)
        if token is None:
            raise BearerTokenError(
                f"This endpoint needs the client's registration access token: {how}",
                missing=True,
            )
        client = db.session.scalar(
            select(Client).where(Client.registration_token_hash == sha256_hex(token))
        )
        if client is None:
            raise BearerTokenError(
                "The registration access token is unknown, or its client was deleted."
            )
        if client.client_id != (http.view_args or {}).get("client_id"):
            raise BearerTokenError("This registration access token is for another client.")
        return RegistrationCredential(client, token)

    def authenticate_client(self, request: Any) -> Client:
        return request.credential.client  # type: ignore[no-any-return]

    def revoke_access_token(self, request: Any, token: Any) -> None:
        """Nothing to do: the token lives on its client's row."""

    def check_permission(self, client: Client, request: Any) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return _server_metadata()

    def introspect_client(self, client: Client) -> dict[str, Any]:
        return client_information(client)

    def generate_client_registration_info(self, client: Client, request: Any) -> dict[str, str]:
        return {
            "registration_client_uri": registration_client_uri(client.client_id),
            "registration_access_token": request.credential.token,
        }

    def create_update_client_response(self, client: Client, request: Any) -> Any:
        data = request.payload.data
        if not isinstance(data, dict):
            raise metadata_error("The request body must be a JSON object of client metadata.")
        for name in (
            "registration_access_token",
            "registration_client_uri",
            "client_secret_expires_at",
            "client_id_issued_at",
        ):
            if name in data:
                raise InvalidRequestError(
                    f"The update must not include {name} (RFC 7592 section 2.2): it is the "
                    "server's."
                )
        if data.get("client_id") != client.client_id:
            raise InvalidRequestError(
                "The update must include the client's client_id (RFC 7592 section 2.2)."
            )
        secret = data.get("client_secret")
        if "client_secret" in data and not (
            isinstance(secret, str) and client.check_client_secret(secret)
        ):
            raise InvalidRequestError(
                "The client_secret of the update does not match the client's (RFC 7592 "
                "section 2.2); leave it out, the secret does not change."
            )
        return super().create_update_client_response(client, request)

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        data = {
            k: v for k, v in request.payload.data.items() if k not in ("client_id", "client_secret")
        }
        return registration_metadata(data, _production(), current=request.client)

    def update_client(
        self, client: Client, client_metadata: dict[str, Any], request: Any
    ) -> Client:
        internal = {k: v for k, v in client.client_metadata.items() if k in INTERNAL_KEYS}
        # A requirement that is on stays on: a client may tighten its own policy (PAR, DPoP,
        # auth_time) but only an operator loosens it (`auth-server clients update`), so a
        # stolen registration access token cannot switch off what the operator required.
        kept = {flag: True for flag in BOOLEAN_FIELDS if client.client_metadata.get(flag)}
        client.set_client_metadata({**client_metadata, **kept, **internal})
        db.session.commit()
        return client

    def delete_client(self, client: Client, request: Any) -> None:
        clients.delete_client(client.client_id)

    def create_delete_client_response(self, client: Client, request: Any) -> Any:
        self.delete_client(client, request)
        return 204, "", [("Cache-Control", "no-store"), ("Pragma", "no-cache")]

    def create_read_client_response(self, client: Client, request: Any) -> Any:
        body = self.introspect_client(client)
        body.update(self.generate_client_registration_info(client, request))
        return 200, body, default_json_headers


def discovery(issuer: str) -> dict[str, Any]:
    """The registration endpoint (unless ``AUTH_REGISTRATION=off``) and the algorithms a
    client assertion may be signed with, for the RFC 8414 / OpenID discovery documents."""
    algs = [alg for method in JWT_AUTH_METHODS for alg in ASSERTION_SIGNING_ALGS[method]]
    out: dict[str, Any] = {}
    if current_app.config["AUTH_REGISTRATION"] != "off":
        out["registration_endpoint"] = f"{issuer}/oauth/register"
    for endpoint in ("token", "revocation", "introspection"):
        out[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] = algs
    return out


def _production() -> bool:
    return bool(current_app.config["APP_ENV"] == "production")


def register_endpoints(server: Any) -> None:
    server.register_endpoint(ClientRegistration)
    server.register_endpoint(ClientConfiguration)
