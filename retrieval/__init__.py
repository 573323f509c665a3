"""Retrieval: the chromadb RAG store that agents and the planner pull context from (to come)."""
