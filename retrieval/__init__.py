"""Retrieval: media decoding, encoders, fusion strategies, and the SearchEngine API."""

from retrieval.engine import CollectionNotFoundError, SearchEngine
from retrieval.results import Hit, QueryInput, SearchResult

__all__ = ["CollectionNotFoundError", "Hit", "QueryInput", "SearchEngine", "SearchResult"]
