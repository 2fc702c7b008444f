"""Tests of gcp.finetune: tuning the top encoder layer with a student on a few demo texts."""

import numpy as np
import pytest
import torch

from gcp.encoder import TextEncoder
from gcp.exceptions import StudentError
from gcp.finetune import encode_for_student, encoder_for_student, fit_student_finetune
from gcp.graph import annotations_to_matrix
from gcp.student import GCPStudent, StudentConfig, load_student
from gcp.training import TrainConfig

torch.set_num_threads(2)

pytestmark = pytest.mark.slow

ONE_EPOCH = TrainConfig(epochs=1, batch_size=8, val_fraction=0.0)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def subset(demo_graph, demo_frame):
    rows = demo_frame.iloc[:16]
    return rows["text"].tolist(), annotations_to_matrix(demo_graph, rows[demo_graph.names].to_dict("records"))


@pytest.fixture(scope="module")
def tuned(demo_graph, encoder, subset):
    texts, Y = subset
    base_state = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    student = GCPStudent(demo_graph, encoder.dim, StudentConfig(hidden_dim=16, embedding_dim=4), seed=0)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = fit_student_finetune(student, encoder, texts, Y, layers=1, encoder_lr=1e-3, config=ONE_EPOCH)
    return student, result, base_state, before


def test_finetune_changes_only_top_layer(tuned, encoder):
    student, result, base_state, _ = tuned
    assert result.tuned_layers == [5]
    tuned_state = result.encoder.model.state_dict()
    changed = {k for k in base_state if not torch.equal(base_state[k], tuned_state[k])}
    assert changed
    assert all(k.startswith("encoder.layer.5.") for k in changed)
    assert set(student.encoder_state) == {k for k in base_state if k.startswith("encoder.layer.5.")}
    assert student.encoder_info["layers"] == [5]


def test_finetune_leaves_caller_encoder_unchanged(tuned, encoder):
    _, _, base_state, _ = tuned
    current = encoder.model.state_dict()
    assert all(torch.equal(base_state[k], current[k]) for k in base_state)
    assert not any(p.requires_grad for p in encoder.model.parameters())


def test_finetune_trains_student(tuned):
    student, result, _, before = tuned
    after = student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert len(result.history) == 1
    assert np.isfinite(result.history[0]["train_loss"])


def test_finetune_embeddings_differ_from_frozen(tuned, encoder, subset):
    student, result, _, _ = tuned
    texts, _ = subset
    frozen = encoder.encode(texts[:4])
    recomputed = encode_for_student(student, encoder, texts[:4])
    assert recomputed.shape == frozen.shape
    assert not np.allclose(recomputed, frozen)
    np.testing.assert_allclose(recomputed, result.encoder.encode(texts[:4]), atol=1e-6)


def test_finetune_checkpoint_round_trip(tuned, encoder, subset, tmp_path):
    student, result, _, _ = tuned
    texts, _ = subset
    student.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "encoder_layers.safetensors").exists()
    loaded = load_student(tmp_path / "ckpt", graph=student.graph)
    assert set(loaded.encoder_state) == set(student.encoder_state)
    assert all(torch.equal(loaded.encoder_state[k], student.encoder_state[k]) for k in student.encoder_state)
    X = encode_for_student(loaded, encoder, texts[:4])
    np.testing.assert_allclose(X, result.encoder.encode(texts[:4]), atol=1e-6)
    np.testing.assert_array_equal(loaded.predict_proba(X)["verdict"], student.predict_proba(X)["verdict"])


def test_encoder_for_frozen_student_is_the_encoder(demo_graph, encoder):
    assert encoder_for_student(GCPStudent(demo_graph, encoder.dim), encoder) is encoder


def test_finetune_rejects_too_many_layers(demo_graph, encoder, subset):
    texts, Y = subset
    with pytest.raises(StudentError, match=r"layers must be an integer in 1..6, got 7"):
        fit_student_finetune(GCPStudent(demo_graph, encoder.dim), encoder, texts, Y, layers=7)


def test_finetune_warm_start_runs_frozen_fit(tuned):
    _, result, _, _ = tuned
    warm = result.warm_start
    assert warm is not None
    assert warm.n_train == 16
    assert warm.n_val == 0
    assert len(warm.history) > 1


def test_finetune_cold_start_has_higher_loss(demo_graph, encoder, subset, tuned):
    texts, Y = subset
    student = GCPStudent(demo_graph, encoder.dim, StudentConfig(hidden_dim=16, embedding_dim=4), seed=0)
    cold = fit_student_finetune(student, encoder, texts, Y, layers=1, encoder_lr=1e-3, config=ONE_EPOCH,
                                warm_start=False)
    assert cold.warm_start is None
    # The warm-started heads already fit these texts, so their first joint epoch has a lower loss.
    assert tuned[1].history[0]["train_loss"] < cold.history[0]["train_loss"]


def test_finetune_tunes_every_layer_by_default(demo_graph, encoder, subset):
    texts, Y = subset
    student = GCPStudent(demo_graph, encoder.dim, StudentConfig(hidden_dim=16, embedding_dim=4), seed=0)
    result = fit_student_finetune(student, encoder, texts, Y, config=ONE_EPOCH, warm_start=False)
    assert result.tuned_layers == [0, 1, 2, 3, 4, 5]
    assert student.encoder_info["layers"] == [0, 1, 2, 3, 4, 5]
