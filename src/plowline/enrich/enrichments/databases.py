"""Where an enrichment's data file is: Snowplow's ``uri`` + ``database`` pair.

Plowline reads local files only: ``uri`` is a folder path (relative to the
configuration file's folder) or a ``file://`` URI; remote locations (http,
https, s3, gs) must be downloaded first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from plowline.errors import ConfigurationError

_REMOTE_SCHEMES = ("http", "https", "s3", "gs")


def resolve_database(uri: Any, database: Any, *, source: str, section: str) -> Path:
    """The local file that ``uri`` + "/" + ``database`` names."""
    for key, value in (("uri", uri), ("database", database)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"{source}: {section}.{key} must be a non-empty string, not {value!r}."
            )
    parts = urlsplit(str(uri))
    scheme = parts.scheme.lower()
    if scheme in _REMOTE_SCHEMES:
        raise ConfigurationError(
            f"{source}: {section}.uri is {uri!r}, a remote location; Plowline "
            "reads local files only: remote databases must be downloaded first "
            "and uri set to their directory (a path or a file:// URI)."
        )
    if scheme == "file":
        directory = Path(unquote(parts.path))
    elif len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ConfigurationError(
            f"{source}: {section}.uri {uri!r} has the scheme {parts.scheme!r}; "
            "expected a directory path or a file:// URI."
        )
    else:
        directory = Path(str(uri))
    if not directory.is_absolute():
        config_file = Path(source)
        base = config_file.parent if config_file.is_file() else Path.cwd()
        directory = base / directory
    return directory / str(database)


def require_file(path: Path, *, source: str, what: str, hint: str = "") -> None:
    """A ConfigurationError unless ``path`` is a file; ``what`` names it in the
    message ("the geo database"), ``hint`` says what to do."""
    if path.is_file():
        return
    problem = "is a directory, not a file" if path.is_dir() else "does not exist"
    raise ConfigurationError(
        f"{source}: {what} {str(path)!r} {problem}" + (f"; {hint}" if hint else ".")
    )
