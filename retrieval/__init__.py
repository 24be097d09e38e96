"""Retrieval: media decoding, encoders, fusion strategies, and the SearchEngine API."""

from retrieval.engine import CollectionNotFoundError, Hit, QueryInput, SearchEngine, SearchResult

__all__ = ["CollectionNotFoundError", "Hit", "QueryInput", "SearchEngine", "SearchResult"]
