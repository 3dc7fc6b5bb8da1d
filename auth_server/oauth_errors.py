"""Every OAuth error explains itself: one place where Authlib's errors get their wording.

Authlib raises many errors without an ``error_description`` (``unsupported_grant_type``,
``unsupported_token_type``, a missing ``token`` at revocation), some with a terse one
(``Missing 'code_verifier'``) and one with a Python list in it (``The client cannot
authenticate with methods: ['client_secret_basic', …]``). :class:`AuthorizationServer`
rewrites each error into a sentence for a person just before it becomes a response — a
JSON body, a redirect to the client, or the error page (:meth:`describe`).

Authlib's own wording is matched literally (``REWRITES``); should a new Authlib release
change a message, the error keeps Authlib's text (still ending with a period), and the
tests that pin every description say which one moved.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import unquote

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
    UnsupportedTokenTypeError,
)
from flask import request as http

from .rules import JWT_AUTH_METHODS, PERSON_SCOPES

MISSING_GRANT_TYPE = "Missing 'grant_type' parameter."

# Authlib's wording → ours. Keys are Authlib 1.x messages, verbatim.
REWRITES = {
    # token endpoint, authorization_code grant
    "Missing 'code' in request.": (
        "The 'code' parameter is required with grant_type=authorization_code."
    ),
    "Invalid 'code' in request.": (
        "The authorization code is unknown: this server never issued it, or it was cut short."
    ),
    "Invalid 'redirect_uri' in request.": (
        "The redirect_uri does not match the one sent in the authorization request."
    ),
    "There is no 'user' for this code.": (
        "The user who approved this authorization code no longer exists or is disabled."
    ),
    # PKCE (RFC 7636)
    "Missing 'code_verifier'": (
        "The 'code_verifier' parameter is required: send the PKCE verifier whose S256 hash "
        "was the code_challenge."
    ),
    "Invalid 'code_verifier'": (
        "The code_verifier is malformed: it must be 43 to 128 characters of A-Z, a-z, 0-9 "
        "and - . _ ~."
    ),
    "Code challenge failed.": (
        "The code_verifier does not match the code_challenge of the authorization request (PKCE)."
    ),
    "Missing 'code_challenge'": "A code_challenge_method was sent without a code_challenge.",
    "Invalid 'code_challenge'": (
        "The code_challenge is malformed: an S256 challenge is the 43-character base64url "
        "SHA-256 hash of the code_verifier."
    ),
    "Unsupported 'code_challenge_method'": "The code_challenge_method must be S256.",
    # refresh_token grant
    "Missing 'refresh_token' in request.": (
        "The 'refresh_token' parameter is required with grant_type=refresh_token."
    ),
    "There is no 'user' for this token.": (
        "The user this refresh token was issued to no longer exists or is disabled."
    ),
    # authorization endpoint
    "Missing 'redirect_uri' in request.": (
        "The 'redirect_uri' parameter is required unless the client has exactly one "
        "registered redirect URI."
    ),
    AccessDeniedError.description: "The user declined to authorize the application.",
    # OpenID Connect (Authlib's oidc.core grants)
    "Replay attack": (
        "The nonce was used before with this client; send a new random nonce with every "
        "authorization request."
    ),
    "Missing 'nonce' in request.": (
        "The 'nonce' parameter is required with response_type id_token or 'id_token token'."
    ),
    "Missing 'openid' scope": (
        "response_type id_token and 'id_token token' need the 'openid' scope."
    ),
    "Invalid 'prompt' parameter.": "prompt=none cannot be combined with other prompt values.",
}

# When an error reaches us with no description at all.
GENERIC = {
    "invalid_request": "The request is malformed or misses a required parameter.",
    "invalid_client": "Client authentication failed.",
    "invalid_grant": "The grant is invalid, expired or revoked.",
    "unauthorized_client": "This client is not allowed to use this grant.",
    "unsupported_grant_type": "This grant_type is not supported.",
    "unsupported_response_type": "This response_type is not supported.",
    "invalid_scope": "The requested scope is invalid, unknown or malformed.",
    "access_denied": "The user declined to authorize the application.",
    "unsupported_token_type": "The token_type_hint must be access_token or refresh_token.",
    # OpenID Connect Core §3.1.2.6
    "login_required": (
        "prompt=none was sent, but the user must sign in first (not signed in, or the "
        "sign-in is older than max_age)."
    ),
    "consent_required": (
        "prompt=none was sent, but the user has not yet authorized this application for "
        "the requested scope."
    ),
    "interaction_required": "prompt=none was sent, but the user must interact with this server.",
    "account_selection_required": "prompt=none was sent, but the user must choose an account.",
}

_ECHOABLE = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]{1,40}$")


def echo(value: object) -> str | None:
    """``'value'`` when it may be quoted back in an error description, else ``None``.

    RFC 6749 §4.1.2.1 allows only %x20-21 / %x23-5B / %x5D-7E there (no quote, backslash,
    control or non-ASCII character); long values are not echoed either.
    """
    if isinstance(value, str) and _ECHOABLE.match(value) and value.strip() == value:
        return f"'{value}'"
    return None


def one_of(names: list[str], conjunction: str = "or") -> str:
    """``a``, ``a or b``, ``a, b or c`` (or ``and``)."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + f" {conjunction} " + names[-1]


def as_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "?", "!")) else text + "."


def repeated_parameter(values: Any) -> str | None:
    """The first parameter sent more than once (query and body together), or ``None``.

    RFC 6749 §3.1 and §3.2: request parameters MUST NOT be included more than once. Authlib
    checks five of them at the authorization endpoint and none at the token endpoint, where
    it reads the first of two ``grant_type``s, ``code``s or ``scope``s.
    """
    for name in values:
        if len(values.getlist(name)) > 1:
            return str(name)
    return None


def repeated_parameter_refusal(name: str) -> str:
    shown = echo(name)
    what = f"The parameter {shown} was" if shown else "A parameter was"
    return f"{what} sent more than once; send each parameter once."


def person_scope_refusal(
    grant_type: str, client: Any, refused: list[str], asked: str | None
) -> str:
    names = one_of([f"'{s}'" for s in refused], "and")
    text = f"The scope {names} acts for a person, and a {grant_type} token has no user"
    if not asked:
        text += f"; this client asked for no scope and is registered for {names}"
    others = [s for s in str(client.scope or "").split() if s not in PERSON_SCOPES]
    if others:
        return f"{text}: ask for {one_of(others)}."
    return f"{text}: get it through authorization_code, where a person signs in."


def _sent_credentials() -> tuple[str | None, str | None]:
    """``(client_id, client_secret)`` as sent: HTTP Basic first (as Authlib tries it), else
    the form. ``ValueError`` for an ``Authorization: Basic`` header that is not valid."""
    scheme, _, value = http.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return http.form.get("client_id"), http.form.get("client_secret")
    # binascii.Error and UnicodeDecodeError are ValueErrors
    decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise ValueError("no colon in Basic credentials")
    return unquote(client_id), unquote(secret)


class AuthorizationServer(FlaskAuthorizationServer):
    """Authlib's Flask server, with every error described before it is rendered."""

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Any:
        self.describe(request, error)
        return super().handle_error_response(request, error)

    def get_consent_grant(self, request: Any = None, end_user: Any = None) -> Any:
        """Authlib's validation of an authorization request, refusing any repeated parameter
        first (``invalid_request``, without a redirect: which ``redirect_uri`` or ``state``
        would be the real one?)."""
        name = repeated_parameter(http.values)
        if name is not None:
            raise InvalidRequestError(repeated_parameter_refusal(name))
        return super().get_consent_grant(request, end_user=end_user)

    def generate_token(
        self, grant_type: str, client: Any, user: Any = None, scope: str | None = None, **kw: Any
    ) -> Any:
        """Every token, for every grant; one without a user never carries a person's scope.

        ``call`` places calls for the signed-in person: a ``client_credentials`` token acts
        for nobody, so asking for ``call`` there (or asking for nothing, from a client
        registered for it) is ``invalid_scope``, before anything is issued.
        """
        if user is None:
            granted = (client.get_allowed_scope(scope) or "").split()
            refused = [s for s in PERSON_SCOPES if s in granted]
            if refused:
                raise InvalidScopeError(person_scope_refusal(grant_type, client, refused, scope))
        return super().generate_token(grant_type, client, user=user, scope=scope, **kw)

    def token_grant_types(self) -> list[str]:
        return [grant.GRANT_TYPE for grant, _ in self._token_grants]

    def response_types(self) -> list[str]:
        types: list[str] = []
        for grant, _ in self._authorization_grants:
            types.extend(sorted(grant.RESPONSE_TYPES))
        return types

    def describe(self, request: Any, error: OAuth2Error) -> OAuth2Error:
        """Give ``error`` a description written for a person (in place; returned too)."""
        original = error.description or ""
        text = self._description(request, error, original)
        if not text or "['" in text:  # never a Python repr
            text = GENERIC.get(error.error or "", "The request cannot be completed.")
        error.description = as_sentence(text)
        return error

    def _description(self, request: Any, error: OAuth2Error, original: str) -> str:
        if isinstance(error, UnsupportedGrantTypeError):
            return self._unsupported_grant_type(error.grant_type)
        if original == MISSING_GRANT_TYPE:
            use = one_of(self.token_grant_types())
            return f"The 'grant_type' parameter is required; use {use}."
        if isinstance(error, UnsupportedResponseTypeError):
            # Not error.response_type: Authlib passes its arguments to this error swapped.
            value = echo(http.values.get("response_type"))
            what = f"The response_type {value}" if value else "This response_type"
            types = [f"'{t}'" if " " in t else t for t in self.response_types()]
            return f"{what} is not supported; use {one_of(types)}."
        if isinstance(error, InvalidClientError) and original.startswith(
            "The client cannot authenticate with methods"
        ):
            return self._client_authentication_failed(re.findall(r"'(\w+)'", original))
        if isinstance(error, UnauthorizedClientError):
            found = re.search(r"'((?:grant|response)_type)=(\w+)'", original)
            if found:
                return f"This client is not registered for {found[1]}={found[2]}."
        if isinstance(error, InvalidScopeError) and original == InvalidScopeError.description:
            # Authlib's bare invalid_scope; ours (the user's role) come described already.
            return self._scope_refused(request)
        if isinstance(error, UnsupportedTokenTypeError):
            return GENERIC["unsupported_token_type"]
        if not original and isinstance(error, InvalidRequestError) and "token" not in http.form:
            if http.endpoint in ("oauth.revoke_token", "oauth.introspect_token"):
                return "The 'token' parameter is required."
        if not original and isinstance(error, InvalidGrantError):
            if http.form.get("grant_type") == "refresh_token":
                return "The refresh token is unknown, expired or revoked."
        return REWRITES.get(original, original)

    def _unsupported_grant_type(self, grant_type: object) -> str:
        value = echo(grant_type)
        what = f"The grant_type {value}" if value else "This grant_type"
        text = f"{what} is not supported; use {one_of(self.token_grant_types())}."
        if grant_type == "implicit":
            text += " The implicit flow gets its token from /oauth/auth with response_type=token."
        return text

    def _client_authentication_failed(self, methods: list[str]) -> str:
        """Why none of ``methods`` authenticated the client, from what the request sent."""
        needs_secret = "none" not in methods
        how = "with HTTP Basic auth or as the client_id and client_secret form fields"
        try:
            client_id, secret = _sent_credentials()
        except ValueError:
            return (
                "The Authorization header is not valid HTTP Basic credentials: send the base64 "
                "of client_id:client_secret, each form-urlencoded."
            )
        if not client_id:
            text = f"The client did not authenticate: send its client_id and client_secret {how}"
            return text + ("." if needs_secret else "; a public client sends its client_id alone.")
        client = self.query_client(client_id)
        if client is None:
            return "The client does not exist on this server."
        public = bool(getattr(client, "is_public", False))
        if public and needs_secret:
            return (
                "This endpoint needs a confidential client: a public client has no secret to "
                "authenticate with."
            )
        if public:
            return "This client is public and has no secret: send its client_id alone, with PKCE."
        method = getattr(client, "token_endpoint_auth_method", "")
        if method in JWT_AUTH_METHODS:
            return (
                f"This client is registered for {method}: authenticate with a signed JWT in "
                "client_assertion (client_assertion_type "
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer), not a client_secret."
            )
        if not secret:
            return f"This client is confidential: send its client_secret too, {how}."
        return "Client authentication failed: wrong client_secret for this client_id."

    def _scope_refused(self, request: Any) -> str:
        requested = (http.values.get("scope") or "").split()
        supported = list(self.scopes_supported or [])
        unknown = [s for s in requested if supported and s not in supported]
        if unknown:
            names = [echo(s) for s in unknown[:3]]
            offered = f"this server offers {one_of(supported, 'and')}"
            if len(unknown) == 1 and names[0]:
                return f"The scope {names[0]} is unknown; {offered}."
            if all(names) and len(unknown) <= 3:
                return f"The scopes {one_of([str(n) for n in names])} are unknown; {offered}."
            return f"The requested scope names scopes this server does not offer; {offered}."
        if http.values.get("grant_type") == "refresh_token":
            return (
                "The requested scope is wider than the scope originally granted; ask for part "
                "of it, or leave scope out to keep all of it."
            )
        client = getattr(request, "client", None)
        if client is None and http.values.get("client_id"):
            client = self.query_client(http.values["client_id"])
        if client is not None:
            registered = str(getattr(client, "scope", "") or "").split()
            extra = [s for s in requested if s not in registered]
            allowed = (
                f"it is registered for {one_of(registered, 'and')}"
                if registered
                else "it is registered for no scope"
            )
            if len(extra) == 1 and echo(extra[0]):
                return f"This client may not ask for the scope {echo(extra[0])}; {allowed}."
            return f"This client may not ask for that scope; {allowed}."
        return GENERIC["invalid_scope"]
