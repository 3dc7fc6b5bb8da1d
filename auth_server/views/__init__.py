"""Blueprints of the auth server; each view parses, calls a function, renders."""
