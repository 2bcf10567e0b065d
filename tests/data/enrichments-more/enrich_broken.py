"""Fails when loaded, as a user's file with a bug in it would."""

raise RuntimeError("bad import-time code")
