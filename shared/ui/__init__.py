"""The look both services' pages share: ``base.html`` (the page frame), the stylesheet and
the icon. Each app registers ``blueprint``: templates extend ``"base.html"`` and link
``url_for('ui.static', filename=…)`` (served at ``/static/ui/…``). No front-end build step."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint(
    "ui",
    __name__,
    static_folder="static",
    static_url_path="/static/ui",
    template_folder="templates",
)
