"""``/plowline.js``: the JavaScript tracker, served by the collector itself.

The file is read once, when the application is built; a new build of the
tracker is served after the collector restarts. Browsers may keep it for
``tracker_max_age`` seconds and then revalidate with its ``ETag``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

TRACKER_SCRIPT = Path(__file__).parent / "static" / "plowline.js"
NOT_BUILT = (
    "The Plowline JavaScript tracker is not built: the collector has no "
    "static/plowline.js to serve.\n"
)


@dataclass(frozen=True, slots=True)
class TrackerScript:
    """The file's bytes and its two precomputed answers' headers."""

    body: bytes
    etag: bytes
    headers: list[tuple[bytes, bytes]]
    not_modified_headers: list[tuple[bytes, bytes]]
    # The same file gzip-compressed once, for browsers that accept it.
    gzipped: bytes = b""
    gzipped_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @staticmethod
    def accepts_gzip(accept_encoding: bytes | None) -> bool:
        """Whether ``Accept-Encoding`` allows gzip (and does not refuse it)."""
        if not accept_encoding:
            return False
        for item in accept_encoding.lower().split(b","):
            coding, _, params = item.strip().partition(b";")
            if coding.strip() in (b"gzip", b"x-gzip", b"*"):
                return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00")
        return False

    def not_modified(self, if_none_match: bytes | None) -> bool:
        """True when the browser's ``If-None-Match`` names this version."""
        if if_none_match is None:
            return False
        for tag in if_none_match.split(b","):
            tag = tag.strip()
            # Weak comparison (RFC 9110 §13.1.2): W/ does not matter here.
            if tag == b"*" or tag.removeprefix(b"W/") == self.etag:
                return True
        return False


def load_tracker_script(path: Path, max_age: int) -> TrackerScript | None:
    """The script at ``path``, or None when there is none to serve."""
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning(
            "Cannot read the tracker script %s (%s); not serving it.", path, exc
        )
        return None
    etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
    common = [
        (b"cache-control", f"public, max-age={max_age}".encode("ascii")),
        (b"etag", etag),
    ]
    common.append((b"vary", b"Accept-Encoding"))
    headers = [
        (b"content-type", b"application/javascript; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        *common,
    ]
    gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    gzipped_headers = [
        (b"content-type", b"application/javascript; charset=utf-8"),
        (b"content-encoding", b"gzip"),
        (b"content-length", str(len(gzipped)).encode("ascii")),
        *common,
    ]
    return TrackerScript(
        body,
        etag,
        headers,
        [*common, (b"content-length", b"0")],
        gzipped,
        gzipped_headers,
    )
