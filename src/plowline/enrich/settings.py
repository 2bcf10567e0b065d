"""What configures enrichment: enrichment files and an Iglu resolver.

``EnrichSettings`` holds paths only, so that it crosses into worker processes
(``plowline enrich --workers``) and each builds the same enricher from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from plowline.enrich.pipeline import Enricher

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EnrichSettings:
    """``enrichments``: a folder of Snowplow enrichment JSON files;
    ``iglu_resolver``: an Iglu resolver configuration file. With no resolver,
    contexts and self-describing events are checked for their shape only."""

    enrichments: str | None = None
    iglu_resolver: str | None = None

    def build(self) -> Enricher:
        """The enricher these settings describe; a ConfigurationError names
        the file and the field that is wrong."""
        from plowline.enrich.enrichments.config import load_enrichments
        from plowline.iglu.config import load_resolver

        resolver = load_resolver(self.iglu_resolver)
        enrichments = (
            load_enrichments(self.enrichments, resolver) if self.enrichments else []
        )
        if self.iglu_resolver is None:
            logger.info(
                "No Iglu resolver given: contexts and self-describing events are "
                "not validated against their schemas (--iglu-resolver)"
            )
        return Enricher(
            enrichments=enrichments,
            resolver=resolver if self.iglu_resolver is not None else None,
            settings=self,
        )
