"""The one root of Plowline's exceptions, grouped by what the caller can do."""

from __future__ import annotations


class PlowlineError(Exception):
    """Base class of every error Plowline raises on purpose."""


class BadInputError(PlowlineError):
    """Input that can never be processed as it is: fix the data, not the setup."""

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line


class ConfigurationError(PlowlineError):
    """A setting, option or file that Plowline was given is wrong or missing."""


class StoreUnavailableError(PlowlineError):
    """A store or stream that may come back: the operation can be retried."""
