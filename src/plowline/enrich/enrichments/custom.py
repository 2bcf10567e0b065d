"""Python enrichment (``python_enrichment_config``): a function of your own,
from a ``.py`` file, run on every event. Plowline's counterpart of Snowplow's
JavaScript enrichment.

The configuration names the file, the function (``process`` by default) and a
``config`` object. The function is called as ``function(event, config)``:

* ``event`` is a :class:`PythonEvent`: ``fields`` (the enriched fields by name,
  TSV text or None, read-only), ``contexts`` (the tracker's entities),
  ``unstruct_event`` (the self-describing event, or None), ``derived_contexts``
  (those added by earlier enrichments) and ``headers`` (the request's
  ``(name, value)`` pairs). All are copies: changing them changes nothing.
* ``config`` is a copy of the ``config`` object of the configuration.

It returns None or a list of self-describing JSON objects ``{"schema":
"iglu:...", "data": {...}}``, which become derived contexts (a copy of them:
the function may return the same objects every time). Whatever it raises,
``SystemExit`` included, fails the event (an enrichment failure naming the
file, the function and the exception); Plowline goes on. Only
``KeyboardInterrupt`` goes through, so Ctrl-C still stops Plowline. A call that
runs longer than ``timeoutSeconds`` (default ``DEFAULT_TIMEOUT_SECONDS``;
``null`` for none) is stopped and fails its event: see ``time_limit`` for how,
and for what cannot be stopped.

The file is loaded once per process, so the enrichment can be rebuilt from its
parameters in each worker process. An exception at its top level, or
``sys.exit()``, is a configuration error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import orjson

from plowline.enrich.enrichments.base import (
    Enrichment,
    EnrichmentError,
    EnrichmentInput,
    Event,
)
from plowline.enrich.enrichments.databases import require_file
from plowline.enrich.enrichments.time_limit import TIME_LIMIT, TimeLimitExceeded
from plowline.enrich.selfdesc import schema_parts
from plowline.errors import ConfigurationError

logger = logging.getLogger(__name__)

UserFunction = Callable[["PythonEvent", Any], Any]

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 3600.0
# How many valid results (and of what length of JSON text at most) an
# enrichment remembers, so as not to check them again.
RESULTS_KEPT = 4096
RESULT_TEXT_KEPT = 1024
# What the function's result may hold: JSON's types, as orjson writes them
# (dataclasses and dates are refused rather than converted).
_STRICT_JSON = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


class PythonEvent:
    """What the user's function is given about one event (read-only attributes).

    ``contexts``, ``unstruct_event`` and ``derived_contexts`` are decoded and
    copied when first read, from what the event held when the view was made:
    most functions read one of them or none, and each costs a JSON round trip.
    """

    # Until it is first read, each lazy attribute's slot holds what it is
    # decoded from: the column's text (str or None) for the first two, the
    # derived entities as a tuple for the third. Their decoded forms (a list,
    # a dict or None, a list) tell the two states apart.
    __slots__ = ("_contexts", "_derived", "_unstruct", "fields", "headers")

    fields: Mapping[str, str | None]
    headers: tuple[tuple[str, str], ...]
    _contexts: str | list[dict[str, Any]] | None
    _unstruct: str | dict[str, Any] | None
    _derived: tuple[dict[str, Any], ...] | list[dict[str, Any]]

    def __init__(
        self,
        fields: Mapping[str, str | None],
        headers: tuple[tuple[str, str], ...],
        *,
        contexts: str | None = None,
        unstruct_event: str | None = None,
        derived_contexts: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.fields = fields
        self.headers = headers
        # The enriched columns' text, and the derived entities as they are now
        # (later enrichments replace entities, they never change one in place).
        self._contexts = contexts
        self._unstruct = unstruct_event
        self._derived = tuple(derived_contexts)

    def __repr__(self) -> str:
        return f"PythonEvent(fields={dict(self.fields)!r}, headers={self.headers!r})"

    @property
    def contexts(self) -> list[dict[str, Any]]:
        """The tracker's entities (a copy)."""
        value = self._contexts
        if not isinstance(value, list):
            value = self._contexts = _entities(value)
        return value

    @property
    def unstruct_event(self) -> dict[str, Any] | None:
        """The self-describing event (a copy), or None."""
        value = self._unstruct
        if isinstance(value, str):
            value = self._unstruct = _unstruct(value)
        return value

    @property
    def derived_contexts(self) -> list[dict[str, Any]]:
        """The contexts earlier enrichments derived (a copy)."""
        value = self._derived
        if isinstance(value, tuple):
            value = self._derived = _copy(list(value)) if value else []
        return value


def _view(event: Event, inp: EnrichmentInput) -> PythonEvent:
    """``PythonEvent(...)`` for one call, its slots filled directly: this runs
    for every event, and the keyword call cost as much as the copy of the
    fields."""
    view: PythonEvent = _new_object(PythonEvent)
    view.fields = MappingProxyType(dict(event))
    view.headers = inp.record.headers
    view._contexts = event.get("contexts")
    view._unstruct = event.get("unstruct_event")
    view._derived = tuple(inp.derived_contexts)
    return view


_new_object = object.__new__


def load_function(path: Path, function: str, source: str) -> UserFunction:
    """``function`` from the module in ``path``, loaded once per process."""
    # The module name comes from the full path, so two files both called
    # enrich.py do not replace each other in sys.modules.
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:12]
    module_name = f"plowline_user_enrichment_{digest}"
    module = sys.modules.get(module_name)
    if module is None:
        module = _import(path, module_name, source)
    found = getattr(module, function, None)
    if not callable(found):
        raise ConfigurationError(
            f"{source}: {path} defines no function {function!r} "
            f"(parameters.function names the function to call)."
        )
    return found  # type: ignore[no-any-return]


def _import(path: Path, module_name: str, source: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{source}: {path} cannot be loaded as Python.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # Ctrl-C (KeyboardInterrupt) goes on
        raise ConfigurationError(
            f"{source}: loading {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    sys.modules[module_name] = module
    logger.info("Loaded Python enrichment %s", path)
    return module


def _rebuild(parameters: dict[str, Any], source: str) -> PythonEnrichment:
    return PythonEnrichment.from_parameters(parameters, source=source)


class PythonEnrichment(Enrichment):
    name: ClassVar[str] = "python_enrichment_config"
    accepts: ClassVar[tuple[str, ...]] = ("1-0-*",)

    def __init__(
        self,
        function: UserFunction,
        config: Any,
        *,
        label: str,
        parameters: dict[str, Any],
        source: str,
        timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.function = function
        self.config = config
        self.label = label  # "file.py:process", for failure messages
        self.timeout = timeout  # seconds per call; None: no limit
        self._parameters = parameters
        self._source = source
        # Results (as JSON text) already found to be lists of self-describing
        # objects: a function tends to return the same few, and the text
        # alone decides whether a result is valid.
        self._valid_results: set[bytes] = set()

    @property
    def config(self) -> Any:
        """The ``config`` object of the configuration."""
        return self._config

    @config.setter
    def config(self, value: Any) -> None:
        self._config = value
        # Each call gets a fresh copy: from this text, made once.
        self._config_json = orjson.dumps(value)

    def __reduce__(self) -> tuple[Any, ...]:
        # The user's function may not pickle: a worker process rebuilds the
        # enrichment from its parameters instead.
        return (_rebuild, (self._parameters, self._source))

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, Any], *, source: str
    ) -> PythonEnrichment:
        file = parameters.get("file")
        if not isinstance(file, str) or not file.endswith(".py"):
            raise ConfigurationError(
                f"{source}: parameters.file must be the path of a .py file; "
                f"found {file!r}."
            )
        path = Path(file)
        if not path.is_absolute() and Path(source).is_file():
            path = Path(source).parent / path  # relative to the configuration file
        require_file(path, source=source, what="the Python file")
        name = parameters.get("function", "process")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(
                f"{source}: parameters.function must be a Python function name; "
                f"found {name!r}."
            )
        config = parameters.get("config", {})
        if not isinstance(config, dict):
            raise ConfigurationError(
                f"{source}: parameters.config must be an object; found {config!r}."
            )
        timeout = _timeout(parameters, source)
        function = load_function(path.resolve(), name, source)
        return cls(
            function,
            config,
            label=f"{path.name}:{name}",
            parameters=parameters,
            source=source,
            timeout=timeout,
        )

    def enrich(self, event: Event, inp: EnrichmentInput) -> None:
        view = _view(event, inp)
        config = orjson.loads(self._config_json)
        try:
            if self.timeout is None:
                result = self.function(view, config)
            else:
                result = TIME_LIMIT.run(self.timeout, self.function, view, config)
        except TimeLimitExceeded:
            raise EnrichmentError(
                {
                    "error": f"{self.label} did not return within its time limit "
                    f"of {self.timeout:g} s (parameters.timeoutSeconds)"
                }
            ) from None
        except (Exception, SystemExit) as exc:  # Ctrl-C (KeyboardInterrupt) goes on
            raise EnrichmentError(
                {"error": f"{self.label} raised {_describe(exc)}"}
            ) from exc
        if result is not None:
            inp.derived_contexts.extend(self._contexts(result))

    def _contexts(self, returned: Any) -> list[dict[str, Any]]:
        if returned is None:
            return []
        if not isinstance(returned, list):
            raise self._bad_result(f"returned {type(returned).__name__}")
        try:
            # A copy: what the function returns may be its own (a module-level
            # list...), and later enrichments (PII) change derived contexts.
            text = orjson.dumps(returned, option=_STRICT_JSON)
            result: list[Any] = orjson.loads(text)
        except (TypeError, orjson.JSONDecodeError) as exc:
            raise self._bad_result(f"it is not JSON data ({exc})") from None
        if text in self._valid_results:
            return result
        for index, item in enumerate(result):
            schema = item.get("schema") if isinstance(item, dict) else None
            if (
                not isinstance(schema, str)
                or schema_parts(schema) is None
                or len(item) != 2
                or "data" not in item
            ):
                raise self._bad_result(f"item {index} is {_short(item)}")
        if len(text) <= RESULT_TEXT_KEPT:
            if len(self._valid_results) >= RESULTS_KEPT:
                self._valid_results.clear()
            self._valid_results.add(text)
        return result

    def _bad_result(self, what: str) -> EnrichmentError:
        return EnrichmentError(
            {
                "error": f"{self.label} must return None or a list of "
                f'{{"schema": "iglu:...", "data": ...}} objects; {what}'
            }
        )


def _timeout(parameters: dict[str, Any], source: str) -> float | None:
    value = parameters.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_SECONDS
    ):
        raise ConfigurationError(
            f"{source}: parameters.timeoutSeconds must be a number of seconds "
            f"above 0 and at most {MAX_TIMEOUT_SECONDS:g}, or null for no limit; "
            f"found {value!r}."
        )
    if not TIME_LIMIT.supported:
        logger.warning(
            "%s: this Python cannot stop a running call; timeoutSeconds is not "
            "enforced",
            source,
        )
    return float(value)


def _entities(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    data = orjson.loads(text).get("data")
    return data if isinstance(data, list) else []


def _unstruct(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    data = orjson.loads(text).get("data")
    return data if isinstance(data, dict) else None


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # the user's __str__ may fail too
        text = "(its message cannot be shown)"
    return _short_text(f"{type(exc).__name__}: {text}", 1000)


def _short_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _copy(value: Any) -> Any:
    """A deep copy of JSON data: through orjson, many times faster than
    copy.deepcopy (and the data came from JSON in the first place)."""
    return orjson.loads(orjson.dumps(value))
