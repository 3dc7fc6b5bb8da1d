"""The call API's pages for people (``/calls``), signed in through the auth server like any
OAuth client: ``login`` (the OAuth client and its routes), ``session`` (server-side
sessions, the page guard, CSRF), ``pages`` (live calls and history), ``history`` (the
history's filters and query), ``console`` (the operator console, ``/calls/console``)."""

from __future__ import annotations

from flask import Flask


def init_web(app: Flask) -> None:
    """Register the pages, their session hooks and their navigation."""
    from . import console, login, pages, session

    session.init_app(app)
    app.register_blueprint(login.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(console.bp)
    session.add_nav_link(app, "Live calls", "calls.live")
    session.add_nav_link(app, "History", "calls.history")
    session.add_nav_link(app, "Console", "console.dashboard", admin=True)
