"""The description feature cache: fingerprints, hits and misses, staleness, corrupt files, the fill command."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from test_text_encoder import CORPUS, build_tiny_mt5
from uni_sign_ext import feature_cache
from uni_sign_ext.feature_cache import (CorruptCacheError, FeatureCache, StaleCacheError, TextFeatureProvider,
                                        cache_path, encoder_fingerprint, fill_cache)
from uni_sign_ext.text_encoder import FrozenTextEncoder

TEXTS = CORPUS[:6]


@pytest.fixture(scope="module")
def built_mt5(tmp_path_factory):
    return build_tiny_mt5(tmp_path_factory.mktemp("mt5") / "tiny-mt5")


@pytest.fixture
def mt5_dir(built_mt5, tmp_path):
    """A private copy, so a test may change its weights."""
    return str(shutil.copytree(built_mt5, tmp_path / "models" / "tiny-mt5"))


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def small_cache(rows=3, d=4):
    cache = FeatureCache("/models/enc", "f" * 64, d)
    cache.add([f"text {i}" for i in range(rows)], torch.randn(rows, d))
    return cache


# Fingerprints and paths

def test_fingerprint_covers_config_and_weights(mt5_dir, tmp_path):
    folder = Path(mt5_dir)
    first = encoder_fingerprint(folder)
    assert first == encoder_fingerprint(folder) and len(first) == 64
    flip_last_byte(folder / "model.safetensors")
    second = encoder_fingerprint(folder)
    assert second != first
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, dropout_rate=0.5)))
    assert encoder_fingerprint(folder) not in (first, second)


@pytest.mark.parametrize("name", ["spiece.model", "tokenizer_config.json", "special_tokens_map.json"])
def test_fingerprint_covers_the_tokenizer(mt5_dir, name):
    folder = Path(mt5_dir)
    before = encoder_fingerprint(folder)
    (folder / "README.md").write_text("not part of the encoder")
    assert encoder_fingerprint(folder) == before
    path = folder / name
    if path.exists():
        flip_last_byte(path)
    else:
        path.write_text("{}")
    assert encoder_fingerprint(folder) != before


def test_fingerprint_of_sharded_weights(tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin.index.json").write_text("{}")
    for shard in ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"):
        (folder / shard).write_bytes(b"weights")
    before = encoder_fingerprint(folder)
    (folder / "pytorch_model-00002-of-00002.bin").write_bytes(b"changed")
    assert encoder_fingerprint(folder) != before


def test_fingerprint_without_weights_names_the_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        encoder_fingerprint(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing-folder"):
        encoder_fingerprint(tmp_path / "missing-folder")


def test_cache_path_names_dataset_encoder_and_fingerprint(mt5_dir, tmp_path):
    path = cache_path(tmp_path / "cache", "CSL_Daily", mt5_dir + "/")
    assert path == tmp_path / "cache" / f"CSL_Daily__tiny-mt5__{encoder_fingerprint(mt5_dir)[:12]}.pt"


# The cache file

def test_lookup_add_contains_len():
    cache = FeatureCache("/models/enc", "f" * 64, 4)
    rows = torch.randn(3, 4)
    cache.add(["a", "b", "a"], rows)  # the first row wins for a repeated text
    cache.add(["b", "c"], torch.randn(2, 4))

    features, missing = cache.lookup(["c", "x", "a", "x", "b"])

    assert len(cache) == 3 and "a" in cache and "x" not in cache
    assert missing == ["x"]
    assert torch.equal(features[2], rows[0]) and torch.equal(features[4], rows[1])
    assert torch.equal(features[1], torch.zeros(4))


def test_save_load_round_trip_is_exact_and_atomic(tmp_path):
    cache = small_cache(rows=1000, d=16)
    cache.add(["one more"], torch.randn(1, 16))  # the buffer doubles: its spare rows must not be saved
    path = tmp_path / "cache" / "ds__enc__ffffffffffff.pt"

    cache.save(path)
    cache.save(path)  # overwriting works too

    loaded = FeatureCache.load(path, "f" * 64)
    assert loaded.texts == cache.texts and torch.equal(loaded.features, cache.features)
    assert loaded.features.dtype == torch.float32 and loaded.encoder_path == "/models/enc"
    assert sorted(os.listdir(path.parent)) == [path.name, path.name + ".lock"]  # no temporary file left behind
    assert path.stat().st_size < 1.2 * 1001 * 16 * 4 + 50_000


def test_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ds__enc__ffffffffffff.pt"
    small_cache().save(path)
    before = path.read_bytes()
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", disk_full)

    with pytest.raises(OSError, match="disk full"):
        small_cache(rows=5).save(path)

    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == [path.name, path.name + ".lock"]


def test_a_cache_of_another_fingerprint_is_stale(tmp_path):
    path = tmp_path / "ds__enc__ffffffffffff.pt"
    small_cache().save(path)
    with pytest.raises(StaleCacheError) as error:
        FeatureCache.load(path, "0" * 64)
    assert str(path) in str(error.value) and "ffffffffffff" in str(error.value) and "000000000000" in str(error.value)
    assert "python -m uni_sign_ext.feature_cache" in str(error.value)


def corrupt_contents():
    good = {"format": 1, "encoder_path": "/models/enc", "fingerprint": "f" * 64, "d_model": 4,
            "texts": ["a", "b"], "features": torch.zeros(2, 4)}
    yield "missing key", {k: v for k, v in good.items() if k != "features"}
    yield "row mismatch", dict(good, texts=["a", "b", "c"])
    yield "wrong width", dict(good, d_model=8)
    yield "repeated text", dict(good, texts=["a", "a"])
    yield "a text that is not a string", dict(good, texts=["a", 3])
    yield "texts not a list", dict(good, texts="ab")
    yield "not a tensor", dict(good, features=[[0.0] * 4] * 2)
    yield "other format", dict(good, format=2)
    yield "not a dict", ["a", "b"]


@pytest.mark.parametrize("name, content", list(corrupt_contents()))
def test_inconsistent_content_is_corrupt(tmp_path, name, content):
    path = tmp_path / "ds__enc__ffffffffffff.pt"
    torch.save(content, path)
    with pytest.raises(CorruptCacheError, match="delete") as error:
        FeatureCache.load(path, "f" * 64)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("data", [os.urandom(4096), b"", b"PK\x03\x04truncated"])
def test_unreadable_file_is_corrupt(tmp_path, data):
    path = tmp_path / "ds__enc__ffffffffffff.pt"
    path.write_bytes(data)
    with pytest.raises(CorruptCacheError, match="delete") as error:
        FeatureCache.load(path, "f" * 64)
    assert str(path) in str(error.value)


# The provider training calls

def test_in_memory_provider_encodes_each_text_once(mt5_dir):
    provider = TextFeatureProvider(mt5_dir)
    assert not provider.encoder_loaded and provider.d_model == 64

    first = provider(TEXTS[:4] + TEXTS[:2])
    second = provider(TEXTS[2:6])

    assert provider.encoder_loaded and provider.encoder_calls == 2
    assert (provider.misses, provider.hits) == (6, 2)
    torch.testing.assert_close(first, FrozenTextEncoder(mt5_dir).encode(TEXTS[:4] + TEXTS[:2]), rtol=1e-5, atol=1e-6)
    assert torch.equal(second[:2], first[2:4])
    provider(TEXTS)
    assert provider.encoder_calls == 2 and provider.hits == 8


def test_a_complete_cache_loads_no_encoder(mt5_dir, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    filled = TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="CSL_Daily")
    expected = filled(TEXTS)
    filled.save()
    monkeypatch.setattr("uni_sign_ext.text_encoder.FrozenTextEncoder",
                        lambda *a, **k: pytest.fail("the text encoder was loaded"))

    provider = TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="CSL_Daily")
    features = provider(list(reversed(TEXTS)) + TEXTS[:1])

    assert torch.equal(features, torch.cat([expected.flip(0), expected[:1]]))
    assert provider.encoder_loaded is False and provider.encoder_calls == 0
    assert (provider.hits, provider.misses) == (6, 0)


def test_misses_are_encoded_in_one_call_and_saved(mt5_dir, tmp_path):
    cache_dir = tmp_path / "cache"
    first = TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="ds")
    first(TEXTS[:2])
    first.save()

    second = TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="ds")
    second(TEXTS)
    assert second.encoder_calls == 1 and (second.hits, second.misses) == (2, 4)
    second.save()

    assert FeatureCache.load(second.path, encoder_fingerprint(mt5_dir)).texts == TEXTS


def test_nothing_is_written_without_new_texts(mt5_dir, tmp_path):
    provider = TextFeatureProvider(mt5_dir, cache_dir=tmp_path / "cache", dataset="ds")
    provider.save()
    assert not provider.path.exists()


def test_a_cache_dir_needs_a_dataset(mt5_dir, tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        TextFeatureProvider(mt5_dir, cache_dir=tmp_path)


def test_changed_weights_make_the_old_cache_stale(mt5_dir, tmp_path):
    cache_dir = tmp_path / "cache"
    old = TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="ds")
    old.warm(TEXTS, progress=False)
    flip_last_byte(Path(mt5_dir) / "model.safetensors")

    with pytest.raises(StaleCacheError) as error:
        TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="ds")

    message = str(error.value)
    assert str(old.path) in message and encoder_fingerprint(mt5_dir)[:12] in message
    assert old.cache.fingerprint[:12] in message and "python -m uni_sign_ext.feature_cache" in message


def test_a_retrained_model_in_the_same_folder_makes_the_cache_stale(mt5_dir, tmp_path):
    old = TextFeatureProvider(mt5_dir, cache_dir=tmp_path / "cache", dataset="ds")
    old.warm(TEXTS, progress=False)
    build_tiny_mt5(Path(mt5_dir), seed=1)

    with pytest.raises(StaleCacheError, match=str(old.path)):
        TextFeatureProvider(mt5_dir, cache_dir=tmp_path / "cache", dataset="ds")


def test_another_encoder_with_the_same_folder_name_is_not_stale(mt5_dir, tmp_path):
    other = shutil.copytree(mt5_dir, tmp_path / "other" / "tiny-mt5")
    flip_last_byte(other / "model.safetensors")
    cache_dir = tmp_path / "cache"
    TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="ds").warm(TEXTS, progress=False)
    TextFeatureProvider(str(other), cache_dir=cache_dir, dataset="ds").warm(TEXTS[:2], progress=False)

    assert len(TextFeatureProvider(mt5_dir, cache_dir=cache_dir, dataset="ds").cache) == 6
    assert len(TextFeatureProvider(str(other), cache_dir=cache_dir, dataset="ds").cache) == 2
    assert len(list(Path(cache_dir).glob("*.pt"))) == 2


def test_a_corrupt_cache_file_is_named_not_used(mt5_dir, tmp_path):
    path = cache_path(tmp_path / "cache", "ds", mt5_dir)
    path.parent.mkdir()
    path.write_bytes(os.urandom(1000))
    with pytest.raises(CorruptCacheError, match=str(path)):
        TextFeatureProvider(mt5_dir, cache_dir=tmp_path / "cache", dataset="ds")


# Filling the cache ahead of training

def test_warm_shows_progress_and_saves(mt5_dir, tmp_path, capsys):
    provider = TextFeatureProvider(mt5_dir, cache_dir=tmp_path / "cache", dataset="ds")
    assert provider.warm(TEXTS + TEXTS[:3]) == 6
    assert "encoding descriptions" in capsys.readouterr().err
    assert provider.warm(TEXTS) == 0 and provider.encoder_calls == 1
    assert len(FeatureCache.load(provider.path, encoder_fingerprint(mt5_dir))) == 6


def test_fill_cache_then_train_without_encoder(mt5_dir, tmp_path, monkeypatch):
    new, path = fill_cache(TEXTS, mt5_dir, "ds", tmp_path / "cache", progress=False)
    assert new == 6 and path == cache_path(tmp_path / "cache", "ds", mt5_dir)
    assert fill_cache(TEXTS[:4] + ["a new text"], mt5_dir, "ds", tmp_path / "cache", progress=False) == (1, path)
    monkeypatch.setattr("uni_sign_ext.text_encoder.FrozenTextEncoder",
                        lambda *a, **k: pytest.fail("the text encoder was loaded"))
    provider = TextFeatureProvider(mt5_dir, cache_dir=tmp_path / "cache", dataset="ds")
    provider(TEXTS + ["a new text"])
    assert not provider.encoder_loaded


def test_command_fills_the_cache(mt5_dir, tmp_path, monkeypatch, capsys):
    collected = []
    monkeypatch.setattr(feature_cache, "collect_description_texts",
                        lambda desc_dir, dataset: collected.append((desc_dir, dataset)) or TEXTS)
    argv = ["--mt5_path", mt5_dir, "--desc_dir", str(tmp_path / "desc"), "--dataset", "CSL_Daily",
            "--cache_dir", str(tmp_path / "cache"), "--device", "cpu"]

    feature_cache.main(argv)
    first = capsys.readouterr().out
    feature_cache.main(argv)
    second = capsys.readouterr().out

    path = cache_path(tmp_path / "cache", "CSL_Daily", mt5_dir)
    assert collected[0] == (str(tmp_path / "desc"), "CSL_Daily")
    assert "6 newly encoded, 0 already cached" in first and str(path) in first
    assert "0 newly encoded, 6 already cached" in second
    assert sorted(FeatureCache.load(path, encoder_fingerprint(mt5_dir)).texts) == sorted(TEXTS)


def test_collect_description_texts(tmp_path):
    folder = tmp_path / "desc" / "CSL-Daily"
    for split, name, document in [
            ("train", "S1", {"0": "hand up", "3": "hand down"}),
            ("dev", "S2", {"descriptions": {"1": "hand up", "2": "hand to chin"}, "model": "vlm"}),
            ("test", "S3", [{"start": 0, "end": 2, "text": "both hands move"}])]:
        (folder / "split_data" / split).mkdir(parents=True)
        (folder / "split_data" / split / f"{name}.json").write_text(json.dumps(document))
    (folder / "S4.json").write_text(json.dumps({"5": "hand to side"}))

    texts = feature_cache.collect_description_texts(tmp_path / "desc", "CSL_Daily")

    assert sorted(texts) == ["both hands move", "hand down", "hand to chin", "hand to side", "hand up"]
    with pytest.raises(FileNotFoundError, match="How2Sign"):
        feature_cache.collect_description_texts(tmp_path / "desc", "How2Sign")
