"""Retrieval: embeddings, stores and `retriever` declarations made real."""
