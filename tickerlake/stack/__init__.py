"""The embedded local stack (no Docker): `python -m tickerlake.stack up|down|status`."""
