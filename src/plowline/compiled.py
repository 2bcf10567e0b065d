"""The compiled per-event loops (``_core.c``), where they were built, and the
loader's compiled TSV splitter (``columns``, ``storage/_columns.c``).

``core`` is the C module, or None where it could not be built or the
environment variable ``PLOWLINE_PURE_PYTHON`` is set (to anything); the
modules that use it keep their Python code for that case, and for every value
the C code leaves to them. Tests run both and compare
(``tests/enrich/test_compiled.py``, ``test_compiled_breaking.py``,
``test_compiled_breaking_2.py``, ``test_fused_breaking.py``).

The C code takes only dicts whose keys are all exact ``str`` (no subclass can
run Python code in the middle of its loops) and leaves the rest to Python.

What it does, each beside the Python function it stands in for:

- ``querystring_params(text)``: :func:`plowline.enrich.urls.querystring_params`
  for ASCII text (None for other text);
- ``apply_params(event, params, rules, late)``: the plain values of
  :func:`plowline.enrich.transform.apply_params`, set in the order the Python
  code sets them (returns the parameters it left: values to clean of control
  characters, values that do not convert and unusual spellings such as ``+5``
  or ``1E3``, whose messages and forms stay in Python);
- ``ms_text(ms)``: :func:`plowline.enrich.convert.ms_to_tstamp` (None out of
  range);
- ``has_control(text)``: whether :func:`plowline.enrich.convert.tsv_safe` has
  anything to change;
- ``decode_base64(text)``: :func:`plowline.enrich.selfdesc.decode_base64`;
- ``split_url(url)``: the parts of :func:`plowline.enrich.urls.split_url`;
- ``wrap_entities(document, prefix, known, single)``: the entities of the
  usual contexts or self-describing-event envelope, re-wrapped as
  :mod:`plowline.enrich.selfdesc` does (None for anything else);
- ``lengths_ok(event, limits)``: whether
  :func:`plowline.enrich.limits.enforce_lengths` has nothing to do;
- ``tsv_row(fields, index)``: the enriched TSV line as UTF-8 bytes;
- ``record_from_dict(data, cls, slots, known)``: a plain raw-log record for
  :func:`plowline.rawlog.record.decode_record` (None for the rest, which
  Python reads or refuses with its messages);
- ``record_from_line(line, loads, cls, slots, known)``: the same from the
  line, JSON and all, in one call;
- ``count_brackets(data)``: :func:`plowline.enrich.selfdesc.json_brackets`;
- ``base_event(head, referer_url, collector_ms, params)``: the base steps of
  :meth:`plowline.enrich.pipeline.Enricher.enrich_event` (record fields,
  parameters, event id, contexts and self-describing event, URL columns,
  ``derived_tstamp``, the event's schema fields) for a plain event in one
  call, built from the functions above; None for any event with a problem or
  an unusual part, which the Python steps then take from the start
  (``pipeline.FUSED`` switches it off; ``configure_base`` hands it the rules,
  caches and Python functions it shares with the Python code).
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

logger = logging.getLogger(__name__)


def _compiled(name: str, what: str) -> ModuleType | None:
    """The C module ``name``, or None where it was not built (no C compiler
    at install time) or PLOWLINE_PURE_PYTHON is set (to run as there: tests,
    debugging)."""
    try:
        if os.environ.get("PLOWLINE_PURE_PYTHON"):
            raise ImportError("PLOWLINE_PURE_PYTHON is set")
        return importlib.import_module(name)
    except ImportError as exc:
        logger.debug("%s not in use (%s)", what, exc)
        return None


core = _compiled("plowline._core", "Enrichment's compiled loops are")
# The loader's TSV splitter and timestamp reader (storage/_columns.c); where
# it is None, Arrow's CSV reader and cast do the work.
columns = _compiled("plowline.storage._columns", "The compiled TSV splitter is")

COMPILED = core is not None
