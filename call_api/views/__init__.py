"""Blueprints of the call API; each view parses, calls a function in ``calls``, renders."""
