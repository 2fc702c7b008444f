"""Configuration and numpy inference API shared by every student.

This module owns `StudentConfig` (the architecture stored in checkpoints), `StudentOutput`
(the raw tensors of one forward pass) and `StudentBase`. The base class wraps a subclass's
``forward`` in the numpy API that the app and the active-learning code call:
`predict_proba`, `predict`, `mc_dropout_proba`, `output_features` and `intervene_proba`.
The models themselves live in `gcp.student`. Embeddings are checked for shape and finite
values only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gcp.exceptions import StudentError
from gcp.graph import ConceptGraph

__all__ = ["StudentBase", "StudentConfig", "StudentOutput", "node_seed"]

_INFERENCE_BATCH = 2048  # rows per forward pass in the numpy API


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of a student; stored in every checkpoint."""

    hidden_dim: int = 64  # width of each node's transition layer (and of the baseline's MLP)
    root_hidden_dim: int | None = None  # transition width of root nodes; None = hidden_dim
    embedding_dim: int = 16  # size of each per-value concept embedding
    dropout: float = 0.1  # dropout after each transition layer; also drives MC-dropout samples
    input_dropout: float = 0.0  # dropout on the text embedding before the root nodes
    contextual_embeddings: bool = True  # value embeddings computed from the node's input (CEM)
    output_skip: bool = True  # also feed the text embedding into the output node

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "embedding_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StudentError(f"StudentConfig.{name} must be a positive integer, got {value!r}")
        if self.root_hidden_dim is not None and (
                isinstance(self.root_hidden_dim, bool) or not isinstance(self.root_hidden_dim, int)
                or self.root_hidden_dim < 1):
            raise StudentError(
                f"StudentConfig.root_hidden_dim must be a positive integer or None, got {self.root_hidden_dim!r}"
            )
        for name in ("dropout", "input_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise StudentError(f"StudentConfig.{name} must be in [0, 1), got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudentConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise StudentError(f"unknown StudentConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)


@dataclass
class StudentOutput:
    """Raw tensors of one forward pass, keyed by node name."""

    logits: dict[str, torch.Tensor]  # node -> (n, n_values), before any intervention
    features: dict[str, torch.Tensor]  # node -> (n, hidden_dim), input of the node's head


def node_seed(seed: int, name: str) -> int:
    """Derive a per-node seed, so adding a node never changes how the others start."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class StudentBase(nn.Module):
    """Numpy inference API shared by both students; subclasses define `forward`."""

    kind = ""

    def __init__(self, graph: ConceptGraph, input_dim: int, config: StudentConfig | None, seed: int) -> None:
        super().__init__()
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise StudentError(f"input_dim must be a positive integer (384 for all-MiniLM-L6-v2), got {input_dim!r}")
        self.graph = graph
        self.input_dim = input_dim
        self.config = config if config is not None else StudentConfig()
        self.seed = int(seed)
        self.encoder_state: dict[str, torch.Tensor] | None = None  # fine-tuned encoder layers, if any
        self.encoder_info: dict[str, Any] | None = None  # which encoder layers were fine-tuned

    @property
    def node_names(self) -> list[str]:
        """Nodes this student predicts, in graph file order."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, do: Mapping[str, torch.Tensor] | None = None) -> StudentOutput:
        raise NotImplementedError

    # ------------------------------------------------------------------ input checks

    def check_embeddings(self, X: Any) -> torch.Tensor:
        """Validate an (n, input_dim) embedding matrix and return it as a float32 tensor."""
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[1] != self.input_dim:
            raise StudentError(
                f"embeddings must have shape (n_texts, {self.input_dim}), got {array.shape}; "
                "encode the texts with the encoder this student was built for"
            )
        if not np.issubdtype(array.dtype, np.number):
            raise StudentError(f"embeddings must be numeric, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise StudentError("embeddings contain NaN or infinite values; re-encode the texts")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    # ------------------------------------------------------------------ inference

    def _run(self, x: torch.Tensor, do: Mapping[str, torch.Tensor] | None, *, train: bool) -> dict[str, list]:
        was_training = self.training
        self.train(train)
        chunks: dict[str, list] = {"logits": [], "features": []}
        try:
            with torch.no_grad():
                for start in range(0, len(x), _INFERENCE_BATCH):
                    part = {k: v[start:start + _INFERENCE_BATCH] for k, v in (do or {}).items()}
                    out = self(x[start:start + _INFERENCE_BATCH], part or None)
                    chunks["logits"].append(out.logits)
                    chunks["features"].append(out.features)
        finally:
            self.train(was_training)
        return chunks

    def _probabilities(self, x: torch.Tensor, do: Mapping[str, torch.Tensor] | None = None, *,
                       train: bool = False) -> dict[str, np.ndarray]:
        chunks = self._run(x, do, train=train)
        probs = {}
        for name in self.node_names:
            logits = torch.cat([part[name] for part in chunks["logits"]]) if chunks["logits"] else \
                torch.zeros(0, len(self.graph.node(name).values))
            probs[name] = torch.softmax(logits, dim=1).numpy()
        return probs

    def predict_proba(self, X: Any) -> dict[str, np.ndarray]:
        """Predict a distribution over values for every node.

        Parameters
        ----------
        X : array-like of shape (n_texts, input_dim)
            Text embeddings.

        Returns
        -------
        dict of str to numpy.ndarray
            Node name -> float32 array of shape (n_texts, n_values); rows sum to 1.
        """
        return self._probabilities(self.check_embeddings(X))

    def predict(self, X: Any) -> dict[str, np.ndarray]:
        """Predict the most likely value index of every node: node -> int64 array (n_texts,)."""
        return {name: p.argmax(axis=1).astype(np.int64) for name, p in self.predict_proba(X).items()}

    def mc_dropout_proba(self, X: Any, *, n_samples: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
        """Sample predictions with dropout left on (MC dropout).

        Parameters
        ----------
        X : array-like of shape (n_texts, input_dim)
        n_samples : int, default=20
            Number of stochastic passes T.
        seed : int, default=0
            Seed of the dropout masks; the global torch random state is left unchanged.

        Returns
        -------
        dict of str to numpy.ndarray
            Node name -> array of shape (T, n_texts, n_values). With ``dropout=0`` all T
            samples are equal.
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise StudentError(f"n_samples must be a positive integer, got {n_samples!r}")
        x = self.check_embeddings(X)
        samples: dict[str, list[np.ndarray]] = {name: [] for name in self.node_names}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(n_samples):
                for name, p in self._probabilities(x, train=True).items():
                    samples[name].append(p)
        return {name: np.stack(parts) for name, parts in samples.items()}

    def output_features(self, X: Any) -> np.ndarray:
        """Return the input of the output node's head, shape (n_texts, hidden_dim) (for BADGE)."""
        x = self.check_embeddings(X)
        chunks = self._run(x, None, train=False)
        if not chunks["features"]:
            return np.zeros((0, self.config.hidden_dim), dtype=np.float32)
        return torch.cat([part[self.graph.output] for part in chunks["features"]]).numpy()

    def intervene_proba(self, X: Any, interventions: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Predict every node under ``do(node = value)`` interventions.

        Parameters
        ----------
        X : array-like of shape (n_texts, input_dim)
        interventions : mapping of str to str, int or array-like
            Node name -> a value name, a value index, or an int array of shape (n_texts,)
            with one value index per row (-1 = no intervention on that row).

        Returns
        -------
        dict of str to numpy.ndarray
            Like `predict_proba`. An intervened node shows a one-hot row on intervened rows;
            only its descendants are recomputed.
        """
        raise StudentError(
            f"a {type(self).__name__} has no concept nodes to intervene on; use a GCPStudent"
        )

    # ------------------------------------------------------------------ parameters and files

    def node_parameters(self, name: str) -> list[nn.Parameter]:
        """Return the parameters of node `name`'s module."""
        raise NotImplementedError

    @classmethod
    def from_previous(cls, old: StudentBase, new_graph: ConceptGraph, *, seed: int | None = None) -> tuple[Any, Any]:
        """Build a student for an edited graph, keeping every module the edit left valid.

        Returns ``(student, CarryOver)``; see `gcp.checkpoint.carry_over` for the rules.
        """
        from gcp.checkpoint import carry_over

        if not isinstance(old, cls):
            raise StudentError(f"{cls.__name__}.from_previous needs a {cls.__name__}, got {type(old).__name__}")
        return carry_over(old, new_graph, seed=seed)

    def save(self, directory: str | Path) -> None:
        """Save as safetensors weights, graph.json and config.json in `directory`.

        See `gcp.checkpoint.save_student`; an existing checkpoint there is replaced whole.
        """
        from gcp.checkpoint import save_student

        save_student(self, directory)
