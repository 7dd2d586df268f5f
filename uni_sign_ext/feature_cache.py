"""Content-addressed cache of frozen-encoder description features: one file per dataset and encoder.

The encoder never changes, so each unique text is encoded once per dataset, not once per epoch.
A cache is keyed by the text and by the encoder's identity (its path and a fingerprint of its config,
tokenizer and weights); a cache made by another version of the encoder is named and refused, never
silently used.

    python -m uni_sign_ext.feature_cache --mt5_path pretrained_weight/mt5-base \
        --desc_dir description --dataset CSL_Daily --cache_dir feature_cache
"""
import argparse
import fnmatch
import glob
import hashlib
import json
import os
from pathlib import Path

import torch
from tqdm import tqdm

from uni_sign_ext.atomic_io import atomic_torch_save, check_writable_dir, file_lock

FORMAT = 1
CHUNK = 8 * 2 ** 20
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")  # single files and shards
TOKENIZER_FILES = ("spiece.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
WARM_BATCH = 256


class StaleCacheError(RuntimeError):
    """The cache file was made by a different version of the encoder."""


class CorruptCacheError(RuntimeError):
    """The cache file cannot be read or is inconsistent."""


class NonFiniteFeaturesError(RuntimeError):
    """The encoder produced NaN/inf features: caching them would train the model to NaN."""


def encoder_fingerprint(mt5_path):
    """sha256 over config.json, the tokenizer files T5Tokenizer reads and every weight file (all that
    shapes a feature); other files in the folder do not count."""
    folder = Path(mt5_path)
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    weights = [n for n in names if any(fnmatch.fnmatch(n, p) for p in WEIGHT_PATTERNS)]
    if not weights:
        raise FileNotFoundError(f"{folder}: no mT5 weight files (model*.safetensors or pytorch_model*.bin) "
                                "to fingerprint")
    digest = hashlib.sha256()
    for name in ["config.json"] + [n for n in TOKENIZER_FILES if n in names] + weights:
        digest.update(name.encode())
        with open(folder / name, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _cache_prefix(dataset, mt5_path):
    return f"{dataset}__{Path(os.path.abspath(mt5_path)).name}__"


def cache_path(cache_dir, dataset, mt5_path, fingerprint=None):
    """<cache_dir>/<dataset>__<encoder folder name>__<first 12 hex of its fingerprint>.pt"""
    fingerprint = fingerprint or encoder_fingerprint(mt5_path)
    return Path(cache_dir) / f"{_cache_prefix(dataset, mt5_path)}{fingerprint[:12]}.pt"


def rebuild_hint(path, mt5_path="MT5_PATH", dataset="DATASET"):
    return (f"delete {path} and rebuild it with `python -m uni_sign_ext.feature_cache --mt5_path {mt5_path} "
            f"--desc_dir DESC_DIR --dataset {dataset} --cache_dir {Path(path).parent}` "
            "(or let training refill it)")


def _inconsistency(format_, texts, features, d_model):
    """What is wrong with a cache file's content, or None."""
    if format_ != FORMAT:
        return f"format {format_!r}, expected {FORMAT}"
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return "texts is not a list of strings"
    if len(set(texts)) != len(texts):
        return "a text appears twice"
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        return f"features is a {type(features).__name__}, not a float tensor"
    if tuple(features.shape) != (len(texts), d_model):
        return f"{len(texts)} texts but features of shape {tuple(features.shape)} with d_model {d_model}"
    bad = (~torch.isfinite(features)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        return f"{len(bad)} texts have NaN/inf features, e.g. {texts[bad[0]]!r}"
    return None


def _d_model(mt5_path):
    return json.loads((Path(mt5_path) / "config.json").read_text())["d_model"]


class FeatureCache:
    """text → feature row, with the encoder identity it belongs to.

    Rows live in a buffer that doubles when full, so adding each batch's misses stays cheap.
    """

    def __init__(self, encoder_path, fingerprint, d_model):
        self.encoder_path = os.path.abspath(encoder_path)
        self.fingerprint = fingerprint
        self.d_model = d_model
        self.texts = []
        self.rows = {}
        self._buffer = torch.zeros(0, d_model)

    @property
    def features(self):
        return self._buffer[:len(self.texts)]

    @classmethod
    def load(cls, path, expected_fingerprint):
        """Raises CorruptCacheError (unreadable, inconsistent) or StaleCacheError (another encoder)."""
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
            texts, features = content["texts"], content["features"]
            cache = cls(content["encoder_path"], content["fingerprint"], int(content["d_model"]))
            format_ = content["format"]
        except Exception as exc:
            raise CorruptCacheError(f"feature cache {path} is unreadable ({type(exc).__name__}: {exc}); "
                                    f"{rebuild_hint(path)}") from None
        problem = _inconsistency(format_, texts, features, cache.d_model)
        if problem:
            raise CorruptCacheError(f"feature cache {path} is inconsistent ({problem}); {rebuild_hint(path)}")
        if cache.fingerprint != expected_fingerprint:
            raise StaleCacheError(f"feature cache {path} was made by encoder {cache.encoder_path} with fingerprint "
                                  f"{cache.fingerprint[:12]}, but the current encoder's is "
                                  f"{expected_fingerprint[:12]}; {rebuild_hint(path, cache.encoder_path)}")
        cache.texts = list(texts)
        cache.rows = {text: i for i, text in enumerate(texts)}
        cache._buffer = features.float()
        return cache

    def __len__(self):
        return len(self.texts)

    def __contains__(self, text):
        return text in self.rows

    def lookup(self, texts):
        """→ (features (len(texts), d) with zero rows for misses, [distinct missing texts])."""
        index = torch.tensor([self.rows.get(t, -1) for t in texts], dtype=torch.long)
        known = index >= 0
        features = torch.zeros(len(texts), self.d_model)
        features[known] = self.features[index[known]]
        return features, list(dict.fromkeys(t for t, k in zip(texts, known.tolist()) if not k))

    def add(self, texts, features):
        """Store rows for texts not cached yet (the first row wins for a text given twice)."""
        new = {}
        for i, text in enumerate(texts):
            if text not in self.rows and text not in new:
                new[text] = i
        if not new:
            return
        rows = features[list(new.values())].float()
        bad = (~torch.isfinite(rows)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise NonFiniteFeaturesError(f"the text encoder {self.encoder_path} gave NaN/inf features for "
                                         f"{len(bad)} texts (e.g. {list(new)[bad[0]]!r}); nothing was cached. "
                                         "Check its weights (--mt5_model / --mt5_path) and --dtype")
        start, end = len(self.texts), len(self.texts) + len(new)
        if end > len(self._buffer):
            grown = torch.empty(max(end, 2 * len(self._buffer)), self.d_model)
            grown[:start] = self.features
            self._buffer = grown
        self._buffer[start:end] = rows
        for row, text in enumerate(new, start):
            self.rows[text] = row
        self.texts += new

    def save(self, path):
        """Merge with what the file holds now (another process may have added texts since it was read),
        then write atomically; a lock beside the file keeps concurrent writers from losing entries."""
        path = Path(path)
        with file_lock(path.with_name(path.name + ".lock")):
            if path.exists():
                try:
                    on_disk = FeatureCache.load(path, self.fingerprint)
                except (CorruptCacheError, StaleCacheError):
                    on_disk = None  # nothing usable to keep: this cache replaces it
                if on_disk is not None:
                    self.add(on_disk.texts, on_disk.features)
            content = {"format": FORMAT, "encoder_path": self.encoder_path, "fingerprint": self.fingerprint,
                       "d_model": self.d_model, "texts": self.texts, "features": self.features.clone()}
            atomic_torch_save(content, path)


def open_cache(cache_dir, dataset, mt5_path, fingerprint=None):
    """→ (path, FeatureCache) of this dataset and encoder, empty when not built yet.

    Raises StaleCacheError when this file is absent but one made by an earlier version of the same
    encoder folder exists (its weights changed since): the user expects a cache, so say why it is not used.
    """
    fingerprint = fingerprint or encoder_fingerprint(mt5_path)
    path = cache_path(cache_dir, dataset, mt5_path, fingerprint)
    if path.exists():
        return path, FeatureCache.load(path, fingerprint)
    encoder_path = os.path.abspath(mt5_path)
    for other in sorted(Path(cache_dir).glob(glob.escape(_cache_prefix(dataset, mt5_path)) + "?" * 12 + ".pt")):
        try:
            content = torch.load(other, map_location="cpu", weights_only=True, mmap=True)
            made_by = content["encoder_path"], content["fingerprint"]
        except Exception:
            continue  # not readable as a cache: nothing to be mistaken for ours
        if made_by[0] == encoder_path and made_by[1] != fingerprint:
            raise StaleCacheError(f"feature cache {other} was made by {encoder_path} with fingerprint "
                                  f"{made_by[1][:12]}, but that folder's weights now have fingerprint "
                                  f"{fingerprint[:12]}; {rebuild_hint(other, mt5_path, dataset)}")
    return path, FeatureCache(mt5_path, fingerprint, _d_model(mt5_path))


class TextFeatureProvider:
    """What training calls: cache hits first, the batch's misses in one encoder call.

    The encoder is loaded only on the first miss, so a run with a complete cache loads none.
    `hits` and `misses` count distinct texts per call; `encoder_calls` counts encoder runs.
    """

    def __init__(self, mt5_path, cache_dir=None, dataset=None, device="cpu"):
        if cache_dir is not None and not dataset:
            raise ValueError("a feature cache file is per dataset: pass dataset= with cache_dir=")
        self.mt5_path = mt5_path
        self.device = device
        self.encoder = None
        self.hits = self.misses = self.encoder_calls = 0
        if cache_dir is None:
            self.path = None  # in memory only: never saved, so no fingerprint to compute
            self.cache = FeatureCache(mt5_path, None, _d_model(mt5_path))
        else:
            check_writable_dir(cache_dir, "--feature_cache_dir")  # found now, not after an epoch
            self.path, self.cache = open_cache(cache_dir, dataset, mt5_path)
        self.d_model = self.cache.d_model
        self._saved_size = len(self.cache)

    @property
    def encoder_loaded(self):
        return self.encoder is not None

    def _encode(self, texts):
        if self.encoder is None:
            from uni_sign_ext.text_encoder import FrozenTextEncoder

            self.encoder = FrozenTextEncoder(self.mt5_path, device=self.device)
        self.encoder_calls += 1
        return self.encoder.encode(texts)

    def __call__(self, texts):
        """list of str → (len(texts), d_model) float32 features on the CPU."""
        features, missing = self.cache.lookup(texts)
        self.misses += len(missing)
        self.hits += len(set(texts)) - len(missing)
        if missing:
            self.cache.add(missing, self._encode(missing))
            features, _ = self.cache.lookup(texts)
        return features

    def warm(self, texts, progress=True):
        """Encode every text not cached yet, in batches with a progress bar, then save; → how many were new."""
        missing = sorted(dict.fromkeys(t for t in texts if t not in self.cache), key=len)  # less padding
        for start in tqdm(range(0, len(missing), WARM_BATCH), disable=not progress, unit="batch",
                          desc="encoding descriptions"):
            chunk = missing[start:start + WARM_BATCH]
            self.cache.add(chunk, self._encode(chunk))
        self.save()
        return len(missing)

    def save(self):
        """Persist new features (no-op without a cache dir or when nothing changed)."""
        if self.path is not None and len(self.cache) != self._saved_size:
            self.cache.save(self.path)
            self._saved_size = len(self.cache)


def collect_description_texts(desc_dir, dataset):
    """Every distinct description text of a dataset, over the files each split's loader can reach."""
    from uni_sign_ext.descriptions import DescriptionLoader, find_description_dir

    folder = find_description_dir(desc_dir, dataset)
    if folder is None:
        raise FileNotFoundError(f"no description folder for {dataset} under {desc_dir}")
    texts = {}
    for split in ("train", "dev", "test"):
        loader = DescriptionLoader(folder, phase=split)
        for sample in sorted(loader.sample_ids()):
            texts.update(dict.fromkeys(loader.load(sample)[0].values()))
    return list(texts)


def fill_cache(texts, mt5_path, dataset, cache_dir, device="cpu", progress=True):
    """Encode and save the texts the cache lacks; → (how many were new, the cache file)."""
    provider = TextFeatureProvider(mt5_path, cache_dir=cache_dir, dataset=dataset, device=device)
    return provider.warm(texts, progress=progress), provider.path


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fill the description feature cache of one dataset.")
    parser.add_argument("--mt5_path", required=True, help="the text encoder's mT5 folder")
    parser.add_argument("--desc_dir", required=True, help="root holding <Dataset>/ description folders")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--cache_dir", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        texts = collect_description_texts(args.desc_dir, args.dataset)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    from uni_sign_ext.guards import exit_on_user_error

    with exit_on_user_error():
        new, path = fill_cache(texts, args.mt5_path, args.dataset, args.cache_dir, device=args.device)
    print(f"{len(texts)} distinct texts: {new} newly encoded, {len(texts) - new} already cached → {path}")


if __name__ == "__main__":
    main()
