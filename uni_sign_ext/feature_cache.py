"""Content-addressed cache of frozen-encoder description features: one file per dataset and encoder.

The encoder never changes, so each unique text is encoded once per dataset, not once per epoch.
A cache is keyed by the text and by the encoder's identity (its path and a fingerprint of its config
and weights); a cache made by another encoder is named and refused, never silently used.

    python -m uni_sign_ext.feature_cache --mt5_path pretrained_weight/mt5-base \
        --desc_dir description --dataset CSL_Daily --cache_dir feature_cache
"""
import argparse
import hashlib
import os
from pathlib import Path

import torch
from tqdm import tqdm

FORMAT = 1
CHUNK = 8 * 2 ** 20
WEIGHT_SUFFIXES = (".safetensors", ".bin")
WARM_BATCH = 256


class StaleCacheError(RuntimeError):
    """The cache file was made by a different encoder."""


class CorruptCacheError(RuntimeError):
    """The cache file cannot be read or is inconsistent."""


def encoder_fingerprint(mt5_path):
    """sha256 over config.json and every weight file of the folder (streamed)."""
    folder = Path(mt5_path)
    weights = sorted(p for p in folder.glob("*") if p.suffix in WEIGHT_SUFFIXES) if folder.is_dir() else []
    if not weights:
        raise FileNotFoundError(f"{folder}: no mT5 weight files (*.safetensors or *.bin) to fingerprint")
    digest = hashlib.sha256()
    for path in [folder / "config.json"] + weights:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def cache_path(cache_dir, dataset, mt5_path, fingerprint=None):
    fingerprint = fingerprint or encoder_fingerprint(mt5_path)
    name = Path(os.path.abspath(mt5_path)).name
    return Path(cache_dir) / f"{dataset}__{name}__{fingerprint[:12]}.pt"


def rebuild_hint(path):
    return (f"delete {path} and rebuild it with `python -m uni_sign_ext.feature_cache` "
            "(or let training refill it)")


class FeatureCache:
    """text → feature row, with the encoder identity it belongs to."""

    def __init__(self, encoder_path, fingerprint, d_model):
        self.encoder_path = str(os.path.abspath(encoder_path))
        self.fingerprint = fingerprint
        self.d_model = d_model
        self.texts = []
        self.rows = {}
        self.features = torch.zeros(0, d_model)

    @classmethod
    def load(cls, path, expected_fingerprint):
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
            texts, features = content["texts"], content["features"]
            cache = cls(content["encoder_path"], content["fingerprint"], int(content["d_model"]))
        except Exception as exc:
            raise CorruptCacheError(f"feature cache {path} is unreadable ({type(exc).__name__}: {exc}); "
                                    f"{rebuild_hint(path)}") from None
        if content.get("format") != FORMAT or features.ndim != 2 or len(texts) != len(features) \
                or features.shape[1] != cache.d_model:
            raise CorruptCacheError(f"feature cache {path} is inconsistent ({len(texts)} texts, features "
                                    f"{tuple(features.shape)}, d_model {cache.d_model}); {rebuild_hint(path)}")
        if cache.fingerprint != expected_fingerprint:
            raise StaleCacheError(f"feature cache {path} was made by encoder {cache.encoder_path} with fingerprint "
                                  f"{cache.fingerprint[:12]}, but the current encoder's is "
                                  f"{expected_fingerprint[:12]}; {rebuild_hint(path)}")
        cache.add(texts, features)
        return cache

    def __len__(self):
        return len(self.texts)

    def __contains__(self, text):
        return text in self.rows

    def lookup(self, texts):
        """→ (features (len(texts), d), with zero rows for misses; [distinct missing texts])."""
        index = torch.tensor([self.rows.get(t, -1) for t in texts], dtype=torch.long)
        known = index >= 0
        features = torch.zeros(len(texts), self.d_model)
        features[known] = self.features[index[known]]
        return features, list(dict.fromkeys(t for t, k in zip(texts, known.tolist()) if not k))

    def add(self, texts, features):
        new = [(t, f) for t, f in zip(texts, features) if t not in self.rows]
        if not new:
            return
        for text, _ in new:
            self.rows[text] = len(self.texts)
            self.texts.append(text)
        self.features = torch.cat([self.features, torch.stack([f.float() for _, f in new])])

    def save(self, path):
        """Atomic write: a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"format": FORMAT, "encoder_path": self.encoder_path, "fingerprint": self.fingerprint,
                    "d_model": self.d_model, "texts": self.texts, "features": self.features}, tmp)
        os.replace(tmp, path)


class TextFeatureProvider:
    """What training calls: cache hits first, the batch's misses in one encoder call.

    The encoder is loaded only on the first miss, so a run with a complete cache loads none.
    """

    def __init__(self, mt5_path, cache_dir=None, dataset=None, device="cpu"):
        from transformers import MT5Config

        self.mt5_path = mt5_path
        self.device = device
        self.d_model = MT5Config.from_pretrained(mt5_path).d_model
        self.encoder = None
        self.hits = self.misses = self.encoder_calls = 0
        fingerprint = encoder_fingerprint(mt5_path)
        self.path = cache_path(cache_dir, dataset or "dataset", mt5_path, fingerprint) if cache_dir else None
        if self.path is not None and self.path.exists():
            self.cache = FeatureCache.load(self.path, fingerprint)
        else:
            self.cache = FeatureCache(mt5_path, fingerprint, self.d_model)
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
        """Encode every text not cached yet, in batches with a progress bar, then save."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
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
    """Every distinct description text of a dataset's description folder."""
    from uni_sign_ext.descriptions import DescriptionLoader, find_description_dir

    folder = find_description_dir(desc_dir, dataset)
    if folder is None:
        raise SystemExit(f"no description folder for {dataset} under {desc_dir}")
    texts = {}
    for split in ("train", "dev", "test"):
        loader = DescriptionLoader(folder, phase=split)
        for sample in sorted(loader.sample_ids()):
            texts.update(dict.fromkeys(loader.load(sample)[0].values()))
    return list(texts)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fill the description feature cache of one dataset.")
    parser.add_argument("--mt5_path", required=True, help="the text encoder's mT5 folder")
    parser.add_argument("--desc_dir", required=True, help="root holding <Dataset>/ description folders")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--cache_dir", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    texts = collect_description_texts(args.desc_dir, args.dataset)
    provider = TextFeatureProvider(args.mt5_path, cache_dir=args.cache_dir, dataset=args.dataset, device=args.device)
    new = provider.warm(texts)
    print(f"{len(texts)} distinct texts: {new} newly encoded, {len(texts) - new} already cached → {provider.path}")


if __name__ == "__main__":
    main()
