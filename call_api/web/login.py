"""The call API's pages as an OAuth client of the auth server: sign-in (authorization code
with PKCE S256, a confidential client), refresh and revocation.

The auth server's endpoints come from its metadata (RFC 8414,
``$AUTH_ISSUER/.well-known/oauth-authorization-server``), cached for ``METADATA_TTL``.
Every request to it goes through one ``requests.Session``
(``app.extensions["clickcall_web_http"]``), which tests replace with one that forwards to
an in-process auth server. The sign-in's state, PKCE verifier and ``next`` page travel in a
short-lived cookie encrypted with ``CALL_SECRET_KEY`` (``clickcall_calls_login``): nothing
is stored before the person comes back, and a callback in another browser finds no cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote, urlencode

import requests
from flask import Blueprint, current_app, g, redirect, render_template, request
from werkzeug.wrappers import Response

from shared.errors import InvalidToken

from ..auth import is_person_token, verify_token
from .session import (
    AuthServerUnavailable,
    GrantRefused,
    configured,
    create_session,
    decrypt,
    encrypt,
    end_session,
    error_page,
    hash_secret,
    load_session,
    not_configured_page,
    safe_next,
    secure_cookies,
    set_session_cookie,
)

log = logging.getLogger("clickcall.call_api.web")

bp = Blueprint("calls_login", __name__, url_prefix="/calls")

LOGIN_COOKIE = "clickcall_calls_login"
LOGIN_TTL = 600  # seconds between "sign in" and the callback
METADATA_TTL = 3600.0
HTTP_TIMEOUT = 5.0
SCOPE = "call admin"  # the auth server grants admin only to users with the admin role
METADATA_PATH = "/.well-known/oauth-authorization-server"


# --- the OAuth client ----------------------------------------------------------------------


def transport() -> requests.Session:
    """The HTTP session every request to the auth server goes through."""
    session = current_app.extensions.get("clickcall_web_http")
    if session is None:
        session = requests.Session()
        current_app.extensions["clickcall_web_http"] = session
    return session


def redirect_uri() -> str:
    return f"{current_app.config['CALL_WEB_URL']}/calls/callback"


def metadata() -> dict[str, Any]:
    """The auth server's metadata (cached); ``AuthServerUnavailable`` if it cannot be read
    or does not describe ``AUTH_ISSUER``."""
    cached = current_app.extensions.get("clickcall_web_metadata")
    if cached is not None and time.monotonic() - cached[0] < METADATA_TTL:
        doc: dict[str, Any] = cached[1]
        return doc
    issuer = current_app.config["AUTH_ISSUER"]
    try:
        response = transport().get(issuer + METADATA_PATH, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        doc = response.json()
    except (requests.RequestException, ValueError) as exc:
        log.warning("auth server metadata unavailable: %s", type(exc).__name__)
        raise AuthServerUnavailable("metadata") from None
    if not isinstance(doc, dict) or doc.get("issuer") != issuer:
        log.warning("auth server metadata does not describe AUTH_ISSUER %s", issuer)
        raise AuthServerUnavailable("metadata issuer")
    for name in ("authorization_endpoint", "token_endpoint"):
        value = doc.get(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise AuthServerUnavailable(f"metadata {name}")
    current_app.extensions["clickcall_web_metadata"] = (time.monotonic(), doc)
    return doc


def _client_auth() -> tuple[str, str]:
    """``client_secret_basic``: id and secret form-encoded first (RFC 6749 §2.3.1)."""
    config = current_app.config
    return (
        quote(config["CALL_WEB_CLIENT_ID"], safe=""),
        quote(config["CALL_WEB_CLIENT_SECRET"], safe=""),
    )


def _token_request(data: dict[str, str]) -> dict[str, Any]:
    endpoint = metadata()["token_endpoint"]
    try:
        response = transport().post(
            endpoint,
            data=data,
            auth=_client_auth(),
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        log.warning("token endpoint unreachable: %s", type(exc).__name__)
        raise AuthServerUnavailable("token endpoint") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict):
        if isinstance(body.get("access_token"), str):
            return body
    if 400 <= response.status_code < 500 and isinstance(body, dict) and "error" in body:
        error = str(body.get("error"))[:64]
        log.info("token request refused: %s", error)
        raise GrantRefused(error, str(body.get("error_description", ""))[:300])
    log.warning("token endpoint answered %s", response.status_code)
    raise AuthServerUnavailable("token endpoint")


def exchange_code(code: str, verifier: str) -> dict[str, Any]:
    """The tokens for an authorization code (``GrantRefused`` / ``AuthServerUnavailable``)."""
    return _token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri(),
            "code_verifier": verifier,
        }
    )


def refresh(refresh_token: str) -> dict[str, Any]:
    """New tokens (the refresh token rotates)."""
    return _token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})


def revoke(refresh_token: str) -> None:
    """Revoke a refresh token (RFC 7009) and with it its grant's tokens; best effort: a
    sign-out never fails because the auth server is away."""
    try:
        endpoint = metadata().get("revocation_endpoint")
        if not isinstance(endpoint, str):
            return
        transport().post(
            endpoint,
            data={"token": refresh_token, "token_type_hint": "refresh_token"},
            auth=_client_auth(),
            timeout=HTTP_TIMEOUT,
        )
    except (AuthServerUnavailable, requests.RequestException) as exc:
        log.warning("could not revoke the refresh token at sign-out: %s", type(exc).__name__)


def validate(token: str) -> dict[str, Any]:
    """The claims of an access token the auth server just gave these pages, validated as
    any bearer token is (``InvalidToken`` otherwise), for a person, issued to this client."""
    claims = verify_token(token, current_app.extensions["clickcall_keys"], current_app.config)
    if not is_person_token(claims):
        raise InvalidToken("The access token was not issued for a person.")
    if claims.get("client_id") != current_app.config["CALL_WEB_CLIENT_ID"]:
        raise InvalidToken("The access token was issued to another client.")
    if not isinstance(claims.get("exp"), int):
        raise InvalidToken("The access token has no usable expiry.")
    return claims


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- the routes ----------------------------------------------------------------------------


def _unreachable() -> Response:
    return error_page(
        503,
        "The sign-in service is not answering",
        "The ClickCall auth server cannot be reached just now, so you cannot sign in. "
        "Try again in a moment.",
    )


@bp.get("/login")
def login() -> Response:
    """Start signing in: send the browser to the auth server's authorization endpoint."""
    if not configured():
        return not_configured_page()
    target = safe_next(request.args.get("next"))
    try:
        if load_session() is not None:
            return redirect(target)
        endpoint = metadata()["authorization_endpoint"]
    except AuthServerUnavailable:
        return _unreachable()
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    params = {
        "response_type": "code",
        "client_id": current_app.config["CALL_WEB_CLIENT_ID"],
        "redirect_uri": redirect_uri(),
        "scope": SCOPE,
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in endpoint else "?"
    response = redirect(endpoint + separator + urlencode(params))
    cookie = encrypt(json.dumps({"state": state, "verifier": verifier, "next": target}))
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        max_age=LOGIN_TTL,
        path="/calls/callback",
        httponly=True,
        secure=secure_cookies(),
        samesite="Lax",
    )
    return response


def _pending_login() -> dict[str, str] | None:
    """The state, verifier and next page this browser's sign-in started with."""
    raw = request.cookies.get(LOGIN_COOKIE)
    if not raw or len(raw) > 4096:
        return None
    try:
        data = json.loads(decrypt(raw, ttl=LOGIN_TTL))
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("state", "verifier", "next")
    ):
        return None
    return data


def _forget_login(response: Response) -> Response:
    response.delete_cookie(
        LOGIN_COOKIE,
        path="/calls/callback",
        httponly=True,
        secure=secure_cookies(),
        samesite="Lax",
    )
    return response


def _from_our_issuer() -> bool:
    """RFC 9207 §2.4: when the auth server says it sends ``iss``
    (``authorization_response_iss_parameter_supported``), the answer must carry ours: a
    mix-up attack (an answer from another server delivered here) is refused. A server that
    does not send it is not asked to."""
    iss = request.args.get("iss")
    try:
        required = bool(metadata().get("authorization_response_iss_parameter_supported"))
    except AuthServerUnavailable:
        required = iss is not None
    if iss is None:
        return not required
    return hmac.compare_digest(
        iss.encode("utf-8", "replace"), current_app.config["AUTH_ISSUER"].encode()
    )


def _callback_error(status: int, title: str, message: str, next_url: str = "/calls") -> Response:
    return _forget_login(error_page(status, title, message, sign_in=True, next_url=next_url))


@bp.get("/callback")
def callback() -> Response:
    """The auth server sends the browser back here with a code (or an error)."""
    if not configured():
        return not_configured_page()
    pending = _pending_login()
    state = request.args.get("state", "")
    if pending is None or not hmac.compare_digest(
        state.encode("utf-8", "replace"), pending["state"].encode()
    ):
        return _callback_error(
            400,
            "This sign-in cannot be completed",
            "It expired, was started in another browser or tab, or was not started here. "
            "Nothing was signed in. Start again.",
        )
    next_url = safe_next(pending["next"])
    if not _from_our_issuer():
        return _callback_error(
            400,
            "This sign-in came back from another server",
            "The answer does not name this site's auth server as its issuer (RFC 9207), so "
            "nothing was signed in. Start again.",
            next_url,
        )
    error = request.args.get("error")
    if error is not None:
        if error == "access_denied":
            return _callback_error(
                403,
                "You did not allow access",
                "The call pages need your permission to see your calls. You can sign in "
                "again and allow it whenever you like.",
                next_url,
            )
        return _callback_error(
            400,
            "The sign-in was refused",
            f"The auth server answered with the error '{error[:64]}'. Start again.",
            next_url,
        )
    code = request.args.get("code", "")
    if not code or len(code) > 512:
        return _callback_error(
            400, "The sign-in came back without a code", "Start again.", next_url
        )
    try:
        tokens = exchange_code(code, pending["verifier"])
        claims = validate(tokens["access_token"])
    except GrantRefused:
        return _callback_error(
            400,
            "The sign-in could not be completed",
            "The auth server refused the sign-in code (it may have been used already or "
            "expired). Start again.",
            next_url,
        )
    except InvalidToken as exc:
        log.warning("the auth server's access token was refused: %s", exc.description)
        return _callback_error(
            502,
            "The sign-in could not be completed",
            "The token the auth server issued is not one these pages accept "
            f"({exc.description}) Ask an operator to check the call API's settings.",
            next_url,
        )
    except AuthServerUnavailable:
        return _forget_login(_unreachable())
    previous = load_session()
    if previous is not None:
        end_session(previous)  # a new sign-in never inherits an older session
    cookie = create_session(tokens, claims)
    response = redirect(next_url)
    set_session_cookie(response, cookie)
    g.web_cookie_set = True
    log.info("page session started for subject %s", hash_secret(claims["sub"])[:12])
    return _forget_login(response)


@bp.post("/logout")
def logout() -> Response:
    """End the session (the CSRF check ran before) and revoke its refresh token."""
    row = load_session()
    if row is not None:
        end_session(row, revoke=True)
    return redirect("/calls/signed-out", code=303)


@bp.get("/signed-out")
def signed_out() -> Response:
    """Where sign-out lands: say so, and how to sign in again."""
    body = render_template(
        "calls_signed_out.html", account_url=current_app.config["AUTH_ISSUER"] + "/account"
    )
    return Response(body, mimetype="text/html")
