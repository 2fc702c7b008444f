"""Tests of gcp.encoder, gcp.embedding_cache and gcp.hashing with the real all-MiniLM-L6-v2."""

import hashlib
import logging

import numpy as np
import pytest
import torch

from gcp.embedding_cache import EmbeddingCache
from gcp.encoder import DEFAULT_MODEL_ID, EncoderConfig, TextEncoder, embed_texts
from gcp.exceptions import EncoderError
from gcp.hashing import text_hash

torch.set_num_threads(2)

TEXTS = [
    "The acting was superb and the plot kept me guessing until the end.",
    "A dull, lifeless film with wooden performances.",
    "Great soundtrack.",
    "I walked out halfway through; the pacing was unbearable and the jokes fell flat every time.",
    "The cinematography is gorgeous, but the script is thin.",
    "",
    "Bring tissues: the final scene is heartbreaking.",
    "Nothing new here, yet it is oddly charming.",
    "Das war ein sehr guter Film.",
]


@pytest.fixture(scope="module")
def encoder():
    """One default encoder for the module, so the model loads once."""
    model = TextEncoder()
    assert model.dim == 384  # forces the load here, not inside the first test
    return model


def test_hashing_text_hash_matches_sha256():
    assert text_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert text_hash("café") == hashlib.sha256("café".encode("utf-8")).hexdigest()


def test_hashing_text_hash_rejects_bytes():
    with pytest.raises(TypeError, match="expects a str, got bytes"):
        text_hash(b"abc")


def test_encoder_default_model_id_is_stable():
    assert TextEncoder().model_id == DEFAULT_MODEL_ID == "sentence-transformers/all-MiniLM-L6-v2"


def test_encoder_model_id_includes_non_default_settings():
    model_id = TextEncoder(EncoderConfig(max_length=64, normalize=False)).model_id
    assert model_id.startswith(DEFAULT_MODEL_ID)
    assert "max_length=64" in model_id
    assert "normalize=False" in model_id


def test_encoder_config_rejects_bad_batch_size():
    with pytest.raises(EncoderError, match=r"batch_size must be a positive integer, got 0"):
        EncoderConfig(batch_size=0)


def test_encoder_encode_returns_normalized_float32(encoder):
    embeddings = encoder.encode(TEXTS)
    assert embeddings.shape == (len(TEXTS), 384)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_encoder_related_texts_are_closer(encoder):
    cat, kitten, stocks = encoder.encode(
        ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell sharply today."]
    )
    assert float(cat @ kitten) > 0.5
    assert float(cat @ stocks) < 0.2
    assert float(cat @ kitten) > float(cat @ stocks) + 0.3


def test_encoder_batching_matches_single_texts(encoder):
    batched = encoder.encode(TEXTS)
    one_by_one = np.vstack([encoder.encode([text]) for text in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_encoder_small_batch_size_matches_default(encoder):
    small = TextEncoder(EncoderConfig(batch_size=2))
    small._tokenizer, small._model = encoder.tokenizer, encoder.model  # reuse the loaded weights
    np.testing.assert_allclose(small.encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)


def test_encoder_truncates_long_text(encoder):
    long_text = "the film was long and the story went on " * 400
    tokens = encoder.encode_tokens([long_text, "short"])
    assert tokens["input_ids"].shape == (2, 128)
    assert int(tokens["attention_mask"][1].sum()) < 5
    head, extended = encoder.encode([long_text, long_text + " but the ending was wonderful"])
    np.testing.assert_allclose(head, extended, atol=1e-6)


def test_encoder_encode_empty_list(encoder):
    assert encoder.encode([]).shape == (0, 384)


def test_encoder_rejects_non_string_text(encoder):
    with pytest.raises(EncoderError, match="Text at index 1 is a int, not a str"):
        encoder.encode(["fine", 3])


def test_encoder_rejects_single_string(encoder):
    with pytest.raises(EncoderError, match="got a single str"):
        encoder.encode("not a list")


def test_encoder_bad_model_path_raises(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EncoderError, match=f"directory not found: '{missing}'"):
        TextEncoder(EncoderConfig(model=str(missing))).encode(["x"])


def test_encoder_incomplete_model_directory_raises(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    expected = rf"(?s)Cannot load encoder model '{tmp_path}'.*Pass a local model directory"
    with pytest.raises(EncoderError, match=expected):
        TextEncoder(EncoderConfig(model=str(tmp_path))).encode(["x"])


def test_encoder_uncached_hub_name_raises():
    with pytest.raises(EncoderError, match="Cannot load encoder model 'gcp-test/not-a-real-model'"):
        TextEncoder(EncoderConfig(model="gcp-test/not-a-real-model")).encode(["x"])


def test_encoder_forward_pooled_supports_gradients(encoder):
    model = encoder.model
    top_layer = model.encoder.layer[-1]
    top_layer.requires_grad_(True)
    try:
        with torch.enable_grad():
            pooled = encoder.forward_pooled(encoder.encode_tokens(TEXTS[:3]))
            pooled.sum().backward()
        assert pooled.shape == (3, 384)
        assert all(p.grad is not None for p in top_layer.parameters())
        assert all(p.grad is None for p in model.encoder.layer[0].parameters())
        np.testing.assert_allclose(pooled.detach().numpy(), encoder.encode(TEXTS[:3]), atol=1e-5)
    finally:
        top_layer.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    assert not any(p.requires_grad for p in model.parameters())


def test_encoder_encode_restores_training_mode(encoder):
    encoder.model.encoder.layer[-1].train()
    try:
        encoder.encode(TEXTS[:2])
        assert encoder.model.encoder.layer[-1].training
        assert not encoder.model.embeddings.training
    finally:
        encoder.model.eval()


def test_embed_texts_second_call_encodes_nothing(encoder, tmp_path):
    cache = EmbeddingCache(tmp_path, encoder.model_id)
    before = encoder.texts_encoded
    first = embed_texts(TEXTS, encoder=encoder, cache=cache)
    assert encoder.texts_encoded - before == len(TEXTS)

    before = encoder.texts_encoded
    second = embed_texts(TEXTS, encoder=encoder, cache=cache)
    assert encoder.texts_encoded == before
    np.testing.assert_array_equal(first, second)

    reopened = embed_texts(TEXTS, encoder=encoder, cache=EmbeddingCache(tmp_path, encoder.model_id))
    assert encoder.texts_encoded == before
    np.testing.assert_array_equal(first, reopened)


def test_embed_texts_encodes_duplicates_once_in_order(encoder, tmp_path):
    texts = [TEXTS[2], TEXTS[0], TEXTS[2], TEXTS[1], TEXTS[0]]
    before = encoder.texts_encoded
    result = embed_texts(texts, encoder=encoder, cache=EmbeddingCache(tmp_path, encoder.model_id))
    assert encoder.texts_encoded - before == 3
    np.testing.assert_allclose(result, encoder.encode(texts), atol=1e-5)
    np.testing.assert_array_equal(result[0], result[2])
    np.testing.assert_array_equal(result[1], result[4])


def test_embed_texts_mixes_cached_and_new(encoder, tmp_path):
    cache = EmbeddingCache(tmp_path, encoder.model_id)
    embed_texts(TEXTS[:4], encoder=encoder, cache=cache)
    before = encoder.texts_encoded
    result = embed_texts(TEXTS[2:], encoder=encoder, cache=cache)
    assert encoder.texts_encoded - before == len(TEXTS) - 4
    np.testing.assert_allclose(result, encoder.encode(TEXTS[2:]), atol=1e-5)
    assert len(cache) == len(TEXTS)


def test_embed_texts_without_cache_deduplicates(encoder):
    before = encoder.texts_encoded
    result = embed_texts([TEXTS[0], TEXTS[0]], encoder=encoder)
    assert encoder.texts_encoded - before == 1
    assert result.shape == (2, 384)


def test_embed_texts_uses_encoder_cache_dir(tmp_path):
    cached = TextEncoder(cache_dir=tmp_path)
    assert cached.cache is not None
    assert cached.cache.model_id == DEFAULT_MODEL_ID
    assert cached.cache.path.parent == tmp_path


def test_embed_texts_rejects_cache_of_other_model(encoder, tmp_path):
    with pytest.raises(EncoderError, match="cache is for model 'other-model', but the encoder is"):
        embed_texts(TEXTS, encoder=encoder, cache=EmbeddingCache(tmp_path, "other-model"))


def test_embed_texts_progress_ends_at_total(encoder, tmp_path):
    small = TextEncoder(EncoderConfig(batch_size=3))
    small._tokenizer, small._model = encoder.tokenizer, encoder.model  # reuse the loaded weights
    cache = EmbeddingCache(tmp_path, small.model_id)
    embed_texts(TEXTS[:2], encoder=small, cache=cache)

    calls = []
    embed_texts(TEXTS, encoder=small, cache=cache, on_progress=lambda *args: calls.append(args))
    counts = [done for done, _, _ in calls]
    assert counts == [2, 5, 8, 9]
    assert all(total == len(TEXTS) for _, total, _ in calls)
    assert all(isinstance(info, str) and info for _, _, info in calls)


def test_embed_texts_recovers_from_corrupt_shard(encoder, tmp_path, caplog):
    cache = EmbeddingCache(tmp_path, encoder.model_id)
    first = embed_texts(TEXTS[:3], encoder=encoder, cache=cache)
    embed_texts(TEXTS[3:], encoder=encoder, cache=cache)
    shards = sorted(cache.path.glob("*.npz"))
    assert len(shards) == 2
    partial = next(path for path in shards if _shard_length(path) == 3)
    partial.write_bytes(partial.read_bytes()[:500])  # a shard cut off mid-write
    (cache.path / "shard-garbage.npz").write_bytes(b"\x00not a zip file" * 50)
    (cache.path / ".shard-unfinished.tmp").write_bytes(b"half written")

    with caplog.at_level(logging.WARNING, logger="gcp.embedding_cache"):
        reopened = EmbeddingCache(tmp_path, encoder.model_id)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("Skipping embedding cache shard" in message for message in warnings)
    assert len(reopened) == len(TEXTS) - 3

    before = encoder.texts_encoded
    again = embed_texts(TEXTS, encoder=encoder, cache=reopened)
    assert encoder.texts_encoded - before == 3
    np.testing.assert_allclose(again[:3], first, atol=1e-5)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gcp.embedding_cache"):
        assert len(EmbeddingCache(tmp_path, encoder.model_id)) == len(TEXTS)
    assert not caplog.records


def _shard_length(path):
    with np.load(path) as archive:
        return len(archive["keys"])


def test_embedding_cache_round_trip_100k(tmp_path):
    rng = np.random.default_rng(0)
    hashes = [text_hash(f"text {i}") for i in range(100_000)]
    vectors = rng.standard_normal((100_000, 384), dtype=np.float32)
    EmbeddingCache(tmp_path, "random-model").put_many(hashes, vectors)

    cache = EmbeddingCache(tmp_path, "random-model")
    assert len(cache) == 100_000
    assert cache.dim == 384
    query = hashes[::-7] + [text_hash("never stored")]
    matrix, missing = cache.get_many(query)
    assert matrix.shape == (len(query), 384)
    assert missing.tolist() == [False] * (len(query) - 1) + [True]
    np.testing.assert_array_equal(matrix[:-1], vectors[::-7])
    assert not matrix[-1].any()


def test_embedding_cache_skips_known_hashes_and_compacts(tmp_path):
    vectors = np.eye(4, dtype=np.float32)
    hashes = [text_hash(str(i)) for i in range(4)]
    cache = EmbeddingCache(tmp_path, "m", max_shards=2)
    cache.put_many(hashes[:2], vectors[:2])
    cache.put_many(hashes[:2], vectors[:2])
    assert len(list(cache.path.glob("*.npz"))) == 1
    cache.put_many(hashes[2:3], vectors[2:3])
    cache.put_many(hashes[3:], vectors[3:])
    assert len(list(cache.path.glob("*.npz"))) == 1

    matrix, missing = EmbeddingCache(tmp_path, "m").get_many(hashes[::-1])
    assert not missing.any()
    np.testing.assert_array_equal(matrix, vectors[::-1])


def test_embedding_cache_empty_lookup(tmp_path):
    matrix, missing = EmbeddingCache(tmp_path, "m").get_many([text_hash("a")])
    assert matrix.shape == (1, 0)
    assert missing.tolist() == [True]


def test_embedding_cache_rejects_shape_mismatch(tmp_path):
    with pytest.raises(EncoderError, match=r"got 2 hashes but a matrix of shape \(3, 4\)"):
        EmbeddingCache(tmp_path, "m").put_many([text_hash("a"), text_hash("b")], np.zeros((3, 4)))


def test_embedding_cache_rejects_invalid_hash(tmp_path):
    with pytest.raises(EncoderError, match="Invalid text hash 'abc'"):
        EmbeddingCache(tmp_path, "m").put_many(["abc"], np.zeros((1, 4)))
