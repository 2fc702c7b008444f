"""On-disk cache of text embeddings, one folder per encoder model.

This module owns `EmbeddingCache`: append-only shard files that map the SHA-256 of a text
(`gcp.hashing.text_hash`) to its float32 embedding. It does not check that the vectors really
come from the model it is named after. `gcp.encoder.embed_texts` checks that the cache's
`model_id` equals the encoder's before it reads or writes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gcp.exceptions import EncoderError

logger = logging.getLogger(__name__)

# A temporary shard older than this is taken to be from a killed writer, not one still writing.
_STALE_TEMPORARY_SECONDS = 3600
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")


class EmbeddingCache:
    """Append-only on-disk store of embeddings for one model, keyed by text hash.

    Each model gets its own folder under `directory`. Every `put_many` writes one new shard
    (an uncompressed ``.npz`` with the hex keys, the float32 vectors and the model id) to a
    temporary file and renames it into place, so a shard under its final name is always
    complete. On open, all shards are read into memory. A shard that cannot be read, or that
    belongs to another model or dimension, is logged, renamed to ``*.corrupt`` and skipped,
    so its texts are encoded again. Two processes may write the same folder, because shard
    names are unique and a text stored twice is harmless.

    Parameters
    ----------
    directory : str or Path
        Root folder of the cache, created if missing.
    model_id : str
        Id of the model whose embeddings are stored (`TextEncoder.model_id`).
    max_shards : int, optional
        When a write leaves more shard files than this, all entries are rewritten into one.
    """

    def __init__(
        self, directory: str | os.PathLike, model_id: str, *, max_shards: int = 32
    ) -> None:
        self.model_id = model_id
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[-60:]
        id_digest = hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:10]
        self.path = Path(directory) / f"{slug}-{id_digest}"
        self.max_shards = max_shards
        self._lock = threading.Lock()
        self._index: dict[bytes, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._size = 0
        self._shard_paths: list[Path] = []
        self.path.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporary_files()
        for path in sorted(self.path.glob("*.npz")):
            arrays = self._read_shard(path)
            if arrays is not None:
                self._shard_paths.append(path)
                self._append(*arrays)

    def _remove_stale_temporary_files(self) -> None:
        """Delete temporary shards left by a writer that was killed more than an hour ago."""
        cutoff = time.time() - _STALE_TEMPORARY_SECONDS
        for path in self.path.glob(".shard-*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    logger.info("Deleted unfinished embedding cache shard %s", path)
            except OSError as err:
                logger.warning("Could not delete unfinished cache shard %s: %s", path, err)

    @property
    def dim(self) -> int | None:
        """Embedding size of the stored vectors, or None while the cache is empty."""
        return self._matrix.shape[1] if self._size else None

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, text_hash_hex: object) -> bool:
        return isinstance(text_hash_hex, str) and text_hash_hex.encode("ascii") in self._index

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the (n,) S64 keys and (n, dim) float32 vectors of a shard, or None if unusable."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys, vectors = archive["keys"], archive["vectors"]
                model_id = str(archive["model_id"])
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as err:
            problem = f"unreadable ({type(err).__name__}: {err})"
        else:
            dim = self.dim
            if model_id != self.model_id:
                problem = f"written for model {model_id!r}"
            elif keys.dtype != np.dtype("S64") or vectors.dtype != np.float32 or vectors.ndim != 2:
                problem = (
                    f"unexpected arrays (keys {keys.dtype}, "
                    f"vectors {vectors.dtype} {vectors.shape})"
                )
            elif keys.shape != (vectors.shape[0],):
                problem = f"{keys.shape[0]} keys for {vectors.shape[0]} vectors"
            elif dim is not None and vectors.shape[1] != dim:
                problem = f"dimension {vectors.shape[1]}, expected {dim}"
            else:
                return keys, vectors
        logger.warning(
            "Skipping embedding cache shard %s: %s. Its texts will be encoded again.", path, problem
        )
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
        if self._size == 0 and len(fresh) == len(keys):
            # First shard: adopt the loaded array instead of copying it (the common case on open).
            self._matrix = np.ascontiguousarray(vectors, dtype=np.float32)
            self._index = {key: row for row, key in enumerate(keys.tolist())}
            self._size = len(keys)
            return
        if self._size == 0:
            self._matrix = np.zeros((max(len(fresh), 1024), vectors.shape[1]), dtype=np.float32)
        needed = self._size + len(fresh)
        if needed > self._matrix.shape[0]:
            capacity = max(needed, 2 * self._matrix.shape[0])
            grown = np.zeros((capacity, self._matrix.shape[1]), dtype=np.float32)
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
            float32 array (len(hashes), dim) with zero rows for missing hashes. Its dim is 0
            while the cache is empty.
        missing : numpy.ndarray
            bool array (len(hashes),), True where the hash is not cached.
        """
        with self._lock:
            lookup = (self._index.get(h.encode("ascii"), -1) for h in hashes)
            rows = np.fromiter(lookup, dtype=np.int64, count=len(hashes))
            missing = rows < 0
            if not self._size:
                return np.zeros((len(hashes), 0), dtype=np.float32), missing
            # One gather copies the data once. Missing rows read row 0 and are zeroed after.
            matrix = np.take(self._matrix, np.where(missing, 0, rows), axis=0)  # (len(hashes), dim)
            matrix[missing] = 0.0
        return matrix, missing

    def put_many(self, hashes: Sequence[str], matrix: np.ndarray) -> None:
        """Store embeddings and write the new ones to disk as one shard.

        Hashes already cached, and repeats within `hashes`, are skipped. The entries are added
        in memory before the shard is written, so they stay usable in this session if the write
        fails.

        Parameters
        ----------
        hashes : sequence of str
            Hex SHA-256 digests from `gcp.hashing.text_hash`.
        matrix : numpy.ndarray
            (len(hashes), dim) embeddings, row i for hashes[i]; converted to float32.

        Raises
        ------
        EncoderError
            If a hash is not 64 lowercase hex characters, or the matrix shape does not match the
            hashes or the stored dimension.
        OSError
            If the shard cannot be written.
        """
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(hashes):
            raise EncoderError(
                f"put_many got {len(hashes)} hashes but a matrix of shape {matrix.shape}. "
                f"Expected shape ({len(hashes)}, dim)."
            )
        if self.dim is not None and matrix.shape[1] != self.dim:
            raise EncoderError(
                f"put_many got {matrix.shape[1]}-d vectors, but cache {self.path} contains "
                f"{self.dim}-d vectors."
            )
        for h in hashes:
            if not isinstance(h, str) or _HASH_PATTERN.fullmatch(h) is None:
                raise EncoderError(
                    f"Invalid text hash {h!r}: expected the output of gcp.hashing.text_hash."
                )
        keys = np.array([h.encode("ascii") for h in hashes], dtype="S64")  # (n,)
        with self._lock:
            _, first = np.unique(keys, return_index=True)
            new_rows = sorted(i for i in first.tolist() if keys[i] not in self._index)
            keep = np.array(new_rows, dtype=np.int64)
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
