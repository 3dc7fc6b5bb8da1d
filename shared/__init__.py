"""Code both services use: the error hierarchy, configuration helpers, keys, database setup.

Nothing here imports ``auth_server`` or ``call_api``.
"""
