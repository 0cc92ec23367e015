"""`fmflow index --verify` looks for each entry by its own embedding: an approximate search's miss is not damage."""

from __future__ import annotations

import math

from fmflow.retrieval.verify import NEIGHBOURS, _not_found_by_their_embedding


class ApproximateIndex:
    """A collection whose search, like HNSW's, only finds `hard` ids when asked for many results,
    and never finds `lost` ones (entries its vector index no longer holds)."""

    def __init__(self, vectors: dict[str, list[float]], hard: set[str], lost: set[str]) -> None:
        self.vectors, self.hard, self.lost = vectors, hard, lost
        self.asked: list[int] = []

    def count(self) -> int:
        return len(self.vectors)

    def query(self, query_embeddings, n_results, include):
        self.asked.append(n_results)
        reachable = [i for i in self.vectors if i not in self.lost and (n_results > 50 or i not in self.hard)]
        ids, distances = [], []
        for query in query_embeddings:
            ranked = sorted(reachable, key=lambda i: math.dist(query, self.vectors[i]))[:n_results]
            ids.append(ranked)
            distances.append([math.dist(query, self.vectors[i]) for i in ranked])
        return {"ids": ids, "distances": distances}


def vectors(count: int) -> dict[str, list[float]]:
    return {f"e{i}": [math.cos(i / 7), math.sin(i / 7), i / 1000] for i in range(count)}


def test_an_entry_the_narrow_search_misses_is_found_by_the_wider_one():
    index = ApproximateIndex(vectors(300), hard={"e17", "e200"}, lost=set())
    assert _not_found_by_their_embedding(index, index.vectors) == set()
    assert index.asked == [NEIGHBOURS, 300]  # the second search only for the two it missed


def test_an_entry_the_index_lost_is_reported_after_both_searches():
    index = ApproximateIndex(vectors(300), hard={"e17"}, lost={"e42", "e43"})
    assert _not_found_by_their_embedding(index, index.vectors) == {"e42", "e43"}


def test_a_sound_index_is_searched_once():
    index = ApproximateIndex(vectors(40), hard=set(), lost=set())
    assert _not_found_by_their_embedding(index, index.vectors) == set()
    assert index.asked == [NEIGHBOURS]
