"""The operator's console (``/console``): users, clients, signing keys and the audit trail,
for a signed-in user with the ``admin`` role.

Signed out: a redirect to the login page (``next`` brings the operator back). Signed in
without the role: a 403 page. Every action is a form POST carrying the session's CSRF
token; the destructive ones (disable a user, rotate a client secret, delete a client,
retire a key) go through a confirmation page whose form adds ``confirm=yes``, which the
action requires. The rules are those of the CLI: each action calls the same service
function (``accounts``, ``clients``, the key ring).

Every action is audited (``auth_server.audit``): the entry is added before the service
function runs and committed by it, in one transaction; a refused attempt (a rule, a bad
value) is rolled back and recorded with outcome ``refused`` and the reason. Key actions
change files, not rows: their entry follows the change. A secret (a new client secret, a
generated password) is shown once on the page that answers the POST, never stored in the
session nor in the audit trail.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, select
from werkzeug.wrappers import Response as BaseResponse

from shared.audit import AuditEntry, Page, client_ip, entry_dict, page_number
from shared.errors import ClickCallError, Conflict, CSRFError, InvalidRequest, ObjectDoesNotExist

from .. import accounts, audit, flow, sessions
from .. import clients as client_service
from ..extensions import db
from ..models import Client, User
from ..rules import GRANT_TYPES, ROLES, SCOPES
from ..tokens import keyring

bp = Blueprint("console", __name__, url_prefix="/console")

ADMIN_ROLE = "admin"
PER_PAGE = 25
CONFIRM = "yes"
GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters


# --- who may come in ---------------------------------------------------------------------


@bp.before_request
def admins_only() -> BaseResponse | None:
    """Signed out: to the login page. Not an admin: 403 (a POST with a valid CSRF token is
    audited as a refused attempt). Every POST: a form body with this session's CSRF token."""
    user = flow.current_user()
    if user is None:
        back = request.full_path.rstrip("?") if request.method == "GET" else url_for(".index")
        return redirect(url_for("login.login_form", next=back), 302)
    if user.role != ADMIN_ROLE:
        if request.method in flow.UNSAFE_METHODS and _csrf_ok():
            audit.record_now(
                AuditEntry(
                    actor_id=user.id,
                    actor_name=user.username,
                    action="console.forbidden",
                    target=request.path,
                    ip=client_ip(),
                    details={"role": user.role},
                    outcome="refused",
                )
            )
        return _page("console_forbidden.html", 403, user=user, nav=False)
    if request.method in flow.UNSAFE_METHODS:
        flow.require_form_body()
        flow.check_csrf()
    g.console_admin = user
    return None


def _csrf_ok() -> bool:
    if flow.form_body_problem():
        return False
    try:
        flow.check_csrf()
    except CSRFError:
        return False
    return True


def _admin() -> User:
    admin: User = g.console_admin
    return admin


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"when": when, "csrf_token": flow.csrf_token, "page_query": page_query}


def when(value: datetime | int | None) -> str:
    """A time as the console shows it: ``2026-12-01 05:00 UTC`` (``—`` for none)."""
    if value is None:
        return "—"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:  # SQLite hands back naive datetimes, stored in UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def page_query(number: int, **params: str) -> str:
    """The query string of another page of a listing, keeping its filters."""
    kept = {k: v for k, v in params.items() if v}
    if number > 1:
        kept["page"] = str(number)
    return "?" + urlencode(kept) if kept else "?"


def _page(template: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("nav", True)
    context.setdefault("admin", g.get("console_admin"))
    return Response(render_template(template, **context), status=status)


# --- auditing --------------------------------------------------------------------------------


def _entry(action: str, target: str, details: dict[str, Any], outcome: str = "ok") -> AuditEntry:
    admin = _admin()
    return AuditEntry(
        actor_id=admin.id,
        actor_name=admin.username,
        action=action,
        target=target,
        ip=client_ip(),
        details=details,
        outcome=outcome,
    )


@contextmanager
def audited(action: str, target: str, details: dict[str, Any] | None = None) -> Iterator[None]:
    """Run the block with the entry pending in its transaction (the service function's
    commit stores both). A ``ClickCallError`` rolls the block back, is recorded as refused
    (with its description as ``error``) and propagates."""
    details = details or {}
    audit.record(_entry(action, target, details))
    try:
        yield
    except ClickCallError as exc:
        db.session.rollback()
        audit.record_now(_entry(action, target, {**details, "error": exc.description}, "refused"))
        raise


@contextmanager
def audited_after(
    action: str, target: str, details: dict[str, Any] | None = None
) -> Iterator[None]:
    """For an action outside the database (the keys folder): recorded once it is done, or
    as refused when it raises ``ClickCallError``."""
    details = details or {}
    try:
        yield
    except ClickCallError as exc:
        db.session.rollback()
        audit.record_now(_entry(action, target, {**details, "error": exc.description}, "refused"))
        raise
    audit.record_now(_entry(action, target, details))


def _arg(name: str, size: int) -> str:
    """A query-string filter: trimmed, at most ``size`` characters, no NUL (PostgreSQL
    refuses it in text, and no stored name holds one)."""
    return (request.args.get(name) or "").replace("\x00", "").strip()[:size]


def _client(client_id: str) -> Client:
    """The client named in the path (404 for an id no client can have)."""
    if "\x00" in client_id or len(client_id) > 64:
        raise ObjectDoesNotExist(f"No client {client_id!r}.")
    return client_service.get_client(client_id)


def _confirmed() -> bool:
    return request.form.get("confirm") == CONFIRM


def _production() -> bool:
    return bool(current_app.config["APP_ENV"] == "production")


# --- overview --------------------------------------------------------------------------------


@bp.get("")
def index() -> Response:
    """Counts, the signing key, and the latest audit entries."""
    users = db.session.scalar(select(func.count()).select_from(User)) or 0
    clients = db.session.scalar(select(func.count()).select_from(Client)) or 0
    return _page(
        "console.html",
        section="overview",
        users=users,
        clients=clients,
        current_kid=_current_kid(),
        events=[entry_dict(row) for row in audit.list_events(per_page=5).items],
    )


# --- users -----------------------------------------------------------------------------------


def _user_target(username: str) -> str:
    return f"user:{username}"


def audited_user(
    action: str, user: User, details: dict[str, Any] | None = None
) -> AbstractContextManager[None]:
    """``audited`` for an action on an existing user: target ``user:<username>``, the
    user's id first in the details."""
    return audited(action, _user_target(user.username), {"user_id": user.id, **(details or {})})


@bp.get("/users")
def users() -> Response:
    """Users whose name contains ``q``, a page at a time; the form to create one."""
    return _users_page()


def _users_page(
    error: ClickCallError | None = None, form: dict[str, str] | None = None
) -> Response:
    query = _arg("q", 150)
    number = page_number(request.args.get("page"))
    found, total = accounts.search_users(query, number, PER_PAGE)
    return _page(
        "console_users.html",
        error.status if error else 200,
        section="users",
        query=query,
        page=Page(items=found, page=number, per_page=PER_PAGE, total=total),
        roles=ROLES,
        error=error.description if error else None,
        form=form or {},
    )


@bp.post("/users")
def user_create() -> BaseResponse:
    """Create a user with the username, password and role typed by the operator."""
    username = request.form.get("username", "")
    role = request.form.get("role", "")
    try:
        with audited(
            "user.create", _user_target(accounts.normalise_username(username)), {"role": role}
        ):
            user = accounts.create_user(username, request.form.get("password", ""), role)
    except ClickCallError as exc:
        return _users_page(exc, {"username": username, "role": role})
    flash(f"User {user.username} created.")
    return redirect(url_for(".user_detail", user_id=user.id), 303)


@bp.get("/users/<user_id>")
def user_detail(user_id: str) -> Response:
    """One user: role, state, live sessions, apps; the forms that act on them."""
    return _user_page(accounts.get_user(user_id))


def _user_page(user: User, error: ClickCallError | None = None) -> Response:
    described = accounts.describe_user(user, details=True)
    return _page(
        "console_user.html",
        error.status if error else 200,
        section="users",
        user=user,
        described=described,
        live_sessions=len(sessions.list_sessions(user.id)),
        roles=ROLES,
        is_self=user.id == _admin().id,
        error=error.description if error else None,
    )


def _not_self(user: User, what: str) -> None:
    if user.id == _admin().id:
        raise Conflict(what)


@bp.post("/users/<user_id>/role")
def user_role(user_id: str) -> BaseResponse:
    """Set the user's role (a demotion revokes the grants the new role does not allow)."""
    user = accounts.get_user(user_id)
    role = request.form.get("role", "")
    try:
        with audited_user("user.set_role", user, {"from": user.role, "to": role[:20]}):
            if role != ADMIN_ROLE:
                _not_self(user, "You cannot remove your own admin role; another admin must.")
            accounts.set_role(user.username, role)
    except ClickCallError as exc:
        return _user_page(accounts.get_user(user_id), exc)
    flash(f"{user.username} now has the role {role}.")
    return redirect(url_for(".user_detail", user_id=user.id), 303)


@bp.post("/users/<user_id>/profile")
def user_profile(user_id: str) -> BaseResponse:
    """Set the user's name and email address (the OpenID Connect profile and email claims);
    the checkbox says whether the address is known to be theirs."""
    user = accounts.get_user(user_id)
    name = request.form.get("name", "")
    email = request.form.get("email", "")
    verified = request.form.get("email_verified") == CONFIRM
    try:
        with audited_user("user.set_profile", user, {"email_verified": verified}):
            accounts.set_profile(user, name, email, verified and bool(email.strip()))
    except ClickCallError as exc:
        return _user_page(accounts.get_user(user_id), exc)
    flash(f"Profile of {user.username} saved.")
    return redirect(url_for(".user_detail", user_id=user.id), 303)


@bp.post("/users/<user_id>/password")
def user_password(user_id: str) -> BaseResponse:
    """Reset the password: the one the operator typed, or (``generate=yes``) a random one
    shown once. Either way the user's sessions end."""
    user = accounts.get_user(user_id)
    generate = request.form.get("generate") == CONFIRM
    password = (
        secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        if generate
        else request.form.get("password", "")
    )
    try:
        with audited_user("user.reset_password", user, {"generated": generate}):
            _not_self(
                user,
                "Change your own password on your account page (it asks for the current one).",
            )
            accounts.set_password(user.username, password)
    except ClickCallError as exc:
        return _user_page(accounts.get_user(user_id), exc)
    if generate:
        return _page(
            "console_secret.html",
            section="users",
            title=f"New password for {user.username}",
            label="Password",
            secret=password,
            note="Give it to the user over a safe channel; they should change it on their "
            "account page. Their sessions have ended.",
            back=url_for(".user_detail", user_id=user.id),
        )
    flash(f"Password of {user.username} changed; their sessions have ended.")
    return redirect(url_for(".user_detail", user_id=user.id), 303)


@bp.get("/users/<user_id>/disable")
def user_disable_confirm(user_id: str) -> Response:
    user = accounts.get_user(user_id)
    return _confirm_page(
        section="users",
        title=f"Disable {user.username}?",
        consequences=[
            "They are signed out of every browser at once.",
            "Every token issued for them is revoked (the call API refuses them within seconds) "
            "and the apps they allowed lose access.",
            "They cannot sign in until an operator enables the account.",
        ],
        action=url_for(".user_disable", user_id=user.id),
        button=f"Disable {user.username}",
        back=url_for(".user_detail", user_id=user.id),
    )


@bp.post("/users/<user_id>/disable")
def user_disable(user_id: str) -> BaseResponse:
    """Disable the user: signed out everywhere, grants revoked (``accounts.disable_user``)."""
    user = accounts.get_user(user_id)
    if not _confirmed():
        return _unconfirmed(url_for(".user_disable_confirm", user_id=user.id))
    try:
        with audited_user("user.disable", user):
            _not_self(user, "You cannot disable your own account; another admin must.")
            accounts.disable_user(user.username)
    except ClickCallError as exc:
        return _user_page(accounts.get_user(user_id), exc)
    flash(f"{user.username} is disabled: signed out everywhere, tokens revoked.")
    return redirect(url_for(".user_detail", user_id=user.id), 303)


@bp.post("/users/<user_id>/enable")
def user_enable(user_id: str) -> BaseResponse:
    """Let the user sign in again (what was revoked stays revoked)."""
    user = accounts.get_user(user_id)
    with audited_user("user.enable", user):
        accounts.enable_user(user.username)
    flash(f"{user.username} is enabled and may sign in again.")
    return redirect(url_for(".user_detail", user_id=user.id), 303)


# --- clients ---------------------------------------------------------------------------------


def _client_target(client_id: str) -> str:
    return f"client:{client_id}"


def _redirect_uris(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@bp.get("/clients")
def clients() -> Response:
    """Every registered client."""
    return _page(
        "console_clients.html",
        section="clients",
        clients=[client_service.describe(c) for c in client_service.list_clients()],
    )


@bp.get("/clients/new")
def client_new() -> Response:
    """The registration form."""
    return _client_form()


def _client_form(
    error: ClickCallError | None = None, form: dict[str, Any] | None = None
) -> Response:
    return _page(
        "console_client_new.html",
        error.status if error else 200,
        section="clients",
        grant_types=GRANT_TYPES,
        scopes=SCOPES,
        form=form or {"grant_types": ["authorization_code"], "scopes": ["call"]},
        error=error.description if error else None,
        admin_warning=client_service.ADMIN_FOR_USERS_WARNING,
    )


@bp.post("/clients")
def client_create() -> BaseResponse:
    """Register a client (checked as by ``auth-server clients create``); its secret is shown
    on the answer, once."""
    name = request.form.get("name", "")
    uris_text = request.form.get("redirect_uris", "")
    grants = request.form.getlist("grant_types")
    scopes = request.form.getlist("scopes")
    public = request.form.get("client_type") == "public"
    allow_admin = request.form.get("allow_admin_for_users") == CONFIRM
    form = {
        "name": name,
        "redirect_uris": uris_text,
        "grant_types": grants,
        "scopes": scopes,
        "public": public,
        "allow_admin_for_users": allow_admin,
    }
    client_id = client_service.new_client_id()
    uris = _redirect_uris(uris_text)
    details = {
        "client_name": name.strip(),
        "redirect_uris": uris,
        "grant_types": grants,
        "scope": " ".join(scopes),
        "public": public,
        "allow_admin_for_users": allow_admin,
    }
    try:
        with audited("client.create", _client_target(client_id), details):
            if not grants:
                raise InvalidRequest("Choose at least one grant type.")
            registered = client_service.create_client(
                name=name,
                redirect_uris=uris,
                grant_types=grants,
                scope=" ".join(scopes),
                public=public,
                production=_production(),
                client_id=client_id,
                allow_admin_for_users=allow_admin,
            )
    except ClickCallError as exc:
        return _client_form(exc, form)
    client = registered.client
    if registered.client_secret is None:
        flash(f"Public client {client.client_name} registered (no secret).")
        return redirect(url_for(".client_detail", client_id=client.client_id), 303)
    return _page(
        "console_secret.html",
        section="clients",
        title=f"Client {client.client_name} registered",
        client_id=client.client_id,
        label="Client secret",
        secret=registered.client_secret,
        note="Copy it now: it is stored hashed and never shown again (rotate it to get a new one).",
        back=url_for(".client_detail", client_id=client.client_id),
    )


@bp.get("/clients/<client_id>")
def client_detail(client_id: str) -> Response:
    """One client: its registration and the forms to edit, rotate or delete it."""
    return _client_page(_client(client_id))


def _client_page(
    client: Client, error: ClickCallError | None = None, form: dict[str, Any] | None = None
) -> Response:
    described = client_service.describe(client)
    return _page(
        "console_client.html",
        error.status if error else 200,
        section="clients",
        client=described,
        scopes=SCOPES,
        form=form
        or {
            "redirect_uris": "\n".join(described["redirect_uris"]),  # type: ignore[arg-type]
            "scopes": str(described["scope"]).split(),
        },
        admin_for_users=client_service.admin_for_users(client),
        admin_warning=client_service.ADMIN_FOR_USERS_WARNING,
        error=error.description if error else None,
    )


@bp.post("/clients/<client_id>")
def client_update(client_id: str) -> BaseResponse:
    """Replace the redirect URIs and scopes (checked as by ``auth-server clients update``)."""
    before = client_service.describe(_client(client_id))
    uris_text = request.form.get("redirect_uris", "")
    scopes = request.form.getlist("scopes")
    allow_admin = request.form.get("allow_admin_for_users") == CONFIRM
    uris = _redirect_uris(uris_text)
    scope = " ".join(scopes)
    details = {
        "redirect_uris": {"from": before["redirect_uris"], "to": uris},
        "scope": {"from": before["scope"], "to": scope},
        "allow_admin_for_users": allow_admin,
    }
    try:
        with audited("client.update", _client_target(client_id), details):
            client_service.update_client(
                client_id,
                redirect_uris=uris,
                scope=scope,
                production=_production(),
                allow_admin_for_users=allow_admin,
            )
    except ClickCallError as exc:
        form = {"redirect_uris": uris_text, "scopes": scopes, "allow_admin_for_users": allow_admin}
        return _client_page(_client(client_id), exc, form)
    flash("Client updated.")
    return redirect(url_for(".client_detail", client_id=client_id), 303)


@bp.get("/clients/<client_id>/rotate")
def client_rotate_confirm(client_id: str) -> Response:
    client = _client(client_id)
    return _confirm_page(
        section="clients",
        title=f"Rotate the secret of {client.client_name}?",
        consequences=[
            "A new secret is generated and shown once.",
            "The current secret stops working at once: the app cannot get or refresh tokens "
            "until it is given the new one. Tokens already issued stay valid.",
        ],
        action=url_for(".client_rotate", client_id=client_id),
        button="Rotate the secret",
        back=url_for(".client_detail", client_id=client_id),
    )


@bp.post("/clients/<client_id>/rotate")
def client_rotate(client_id: str) -> BaseResponse:
    """A new secret (shown once); the old one stops working at once."""
    client = _client(client_id)
    if not _confirmed():
        return _unconfirmed(url_for(".client_rotate_confirm", client_id=client_id))
    try:
        with audited("client.rotate_secret", _client_target(client_id)):
            secret = client_service.rotate_secret(client_id)
    except ClickCallError as exc:
        return _client_page(_client(client_id), exc)
    return _page(
        "console_secret.html",
        section="clients",
        title=f"New secret for {client.client_name}",
        client_id=client_id,
        label="Client secret",
        secret=secret,
        note="The old secret no longer works. Copy this one now: it is stored hashed and "
        "never shown again.",
        back=url_for(".client_detail", client_id=client_id),
    )


@bp.get("/clients/<client_id>/delete")
def client_delete_confirm(client_id: str) -> Response:
    client = _client(client_id)
    return _confirm_page(
        section="clients",
        title=f"Delete {client.client_name}?",
        consequences=[
            "Its registration, consents, codes and tokens are deleted.",
            "The call API refuses its access tokens within seconds (revocation feed).",
            "This cannot be undone: registering it again gives a new client id.",
        ],
        action=url_for(".client_delete", client_id=client_id),
        button=f"Delete {client.client_name}",
        back=url_for(".client_detail", client_id=client_id),
    )


@bp.post("/clients/<client_id>/delete")
def client_delete(client_id: str) -> BaseResponse:
    """Delete the client and revoke its tokens (``clients.delete_client``)."""
    client = _client(client_id)
    if not _confirmed():
        return _unconfirmed(url_for(".client_delete_confirm", client_id=client_id))
    name = client.client_name
    with audited("client.delete", _client_target(client_id), {"client_name": name}):
        client_service.delete_client(client_id)
    flash(f"Client {name} deleted; its tokens are revoked.")
    return redirect(url_for(".clients"), 303)


# --- signing keys ----------------------------------------------------------------------------


def _current_kid() -> str | None:
    current = keyring().store.current()
    return current.kid if current is not None else None


def _key_target(kid: str) -> str:
    return f"key:{kid}"


@bp.get("/keys")
def keys() -> Response:
    return _keys_page()


def _keys_page(error: ClickCallError | None = None) -> Response:
    ring = keyring()
    return _page(
        "console_keys.html",
        error.status if error else 200,
        section="keys",
        keys=ring.inventory(),
        current_kid=_current_kid(),
        algorithm=ring.algorithm,
        error=error.description if error else None,
    )


def _find_key(kid: str, *states: str) -> dict[str, object]:
    for key in keyring().inventory():
        if key["kid"] == kid and key["state"] in states:
            return key
    raise ObjectDoesNotExist(f"No {' or '.join(states)} key {kid!r}.")


@bp.post("/keys/stage")
def key_stage() -> BaseResponse:
    """Publish a new key in the JWKS without signing with it yet (``keys rotate --stage``)."""
    key = keyring().rotate(stage=True)
    audit.record_now(_entry("key.stage", _key_target(key.kid), {"alg": key.algorithm}))
    flash(f"Key {key.kid} staged: published, not signing yet.")
    return redirect(url_for(".keys"), 303)


@bp.post("/keys/<kid>/activate")
def key_activate(kid: str) -> BaseResponse:
    """Sign new tokens with a published key (``keys activate``)."""
    try:
        with audited_after("key.activate", _key_target(kid), {"previous": _current_kid()}):
            _find_key(kid, "staged", "previous")  # published, not already signing
            keyring().activate(kid)
    except ClickCallError as exc:
        return _keys_page(exc)
    flash(f"Key {kid} now signs new tokens.")
    return redirect(url_for(".keys"), 303)


@bp.get("/keys/<kid>/retire")
def key_retire_confirm(kid: str) -> Response:
    _find_key(kid, "staged", "previous")
    return _confirm_page(
        section="keys",
        title="Retire this key?",
        subject=kid,
        consequences=[
            "It leaves the JWKS: tokens it signed stop validating at the call API once it "
            "fetches the JWKS again.",
            "Retire a key only after the longest access-token lifetime has passed since "
            "another key took over signing.",
        ],
        action=url_for(".key_retire", kid=kid),
        button="Retire the key",
        back=url_for(".keys"),
    )


@bp.post("/keys/<kid>/retire")
def key_retire(kid: str) -> BaseResponse:
    """Take a published key that does not sign out of the JWKS (``keys retire``)."""
    if not _confirmed():
        return _unconfirmed(url_for(".key_retire_confirm", kid=kid))
    try:
        with audited_after("key.retire", _key_target(kid)):
            _find_key(kid, "active", "staged", "previous")
            try:
                keyring().retire(kid)
            except ValueError:  # the key ring's rule: the signing key stays published
                raise Conflict("This key signs new tokens: activate another key first.") from None
    except ClickCallError as exc:
        return _keys_page(exc)
    flash(f"Key {kid} retired.")
    return redirect(url_for(".keys"), 303)


# --- audit trail -----------------------------------------------------------------------------


@bp.get("/audit")
def audit_trail() -> Response:
    """Console actions, newest first; filter by actor (username) and action."""
    actor = _arg("actor", 150)
    action = _arg("action", 64)
    number = page_number(request.args.get("page"))
    found = audit.list_events(
        actor=actor or None, action=action or None, page=number, per_page=PER_PAGE
    )
    return _page(
        "console_audit.html",
        section="audit",
        actor=actor,
        action=action,
        page=found,
        events=[entry_dict(row) for row in found.items],
    )


# --- confirmation ----------------------------------------------------------------------------


def _confirm_page(**context: Any) -> Response:
    return _page("console_confirm.html", confirm=CONFIRM, **context)


def _unconfirmed(confirm_url: str) -> Response:
    """A destructive POST without ``confirm=yes``: 400, pointing at the confirmation page."""
    return _page(
        "console_unconfirmed.html",
        400,
        section=None,
        confirm_url=confirm_url,
    )
