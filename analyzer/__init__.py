"""oauth-traffic-analyzer: find authentication exchanges in packet captures.

``analyze(paths)`` runs the whole pipeline and returns an ``Analysis`` whose tables are pandas
DataFrames; ``analyze_paths(paths)`` returns the plain records; ``analyze_many(paths, client)``
reads many captures (paths or fsspec URLs) on a Dask cluster, or here without a client.
``analyzer.model`` holds the record schema every output shares.
"""

from __future__ import annotations

from typing import Any

from analyzer.model import SCHEMA_VERSION, Challenge, Credential, Event

__all__ = [
    "SCHEMA_VERSION",
    "Analysis",
    "AnalysisResult",
    "Challenge",
    "Credential",
    "Event",
    "analyze",
    "analyze_many",
    "analyze_paths",
]


def __getattr__(name: str) -> Any:
    # The engine pulls in every stage; load it only when asked for.
    if name in ("analyze_paths", "AnalysisResult"):
        from analyzer import engine

        return getattr(engine, name)
    if name == "analyze_many":
        from analyzer import cluster

        return cluster.analyze_many
    if name in ("analyze", "Analysis"):
        from analyzer import api

        return getattr(api, name)
    raise AttributeError(name)
