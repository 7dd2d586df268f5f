"""Run upstream Uni-Sign's own RGB data path (its datasets.py) on a world, under a python with torchvision.

    .venv_tv/bin/python tests/rgb_reference_runner.py UPSTREAM WORLD OUT.pt --seeds 0 1 --max_length 256 64

Test-only. Upstream's datasets.py imports `decord` (its video decoder) and `utils`:
- `decord`: the real one (decord 0.6.0, requirements-test.txt) when it is importable, else (or with
  --decoder stand-in) a test-only stand-in installed in sys.modules: its VideoReader decodes the file with
  PyAV (every frame in order up to the last one asked, `to_ndarray(format="rgb24")`) and get_batch returns the
  requested frames. The stand-in is the library our uni_sign_ext/video.py uses, so a comparison run with it
  cannot show PyAV == decord; tests/test_decord_frames.py shows that with the real one. The decoder that ran
  is printed ("upstream decoder: ...") and written in the results under "decoder".
- `utils` (always a stand-in): upstream's utils.py imports deepspeed at the top; its datasets.py only calls
  utils.load_dataset_file (a gzip pickle load), which the stand-in provides.
Everything else (frame sampling, hand choice, boxes, crops, PIL, torchvision transforms, collate) is upstream's.
Writes {"decoder": name, f"{max_length}/{seed}": {"names": [...], "dicts": [...], "batches": [rgb part of
collate]}} with torch.save, and with --time the wall and CPU (process, all threads) seconds of each pass over
the split.
"""
import argparse
import gzip
import os
import pickle
import random
import sys
import time
import types


class _Batch:
    def __init__(self, array):
        self._array = array

    def asnumpy(self):
        return self._array


class VideoReader:
    """decord.VideoReader's calls that upstream makes (construct, seek(0), get_batch(indices).asnumpy()).

    Frames are converted with frame.to_ndarray(format="rgb24") (the spec's words), or with --time through one
    reused converter: same pixels, without PyAV's per-frame converter set-up, which real decord (C++) does not
    pay; so the timing does not flatter ours."""

    reuse_converter = False

    def __init__(self, path, num_threads=1, ctx=None):
        if not os.path.isfile(path):
            raise RuntimeError(f"cannot open {path}")
        self.path = path

    def seek(self, position):
        pass

    def get_batch(self, indices):
        import av
        import numpy as np

        from av.video.reformatter import VideoReformatter

        indices = [int(i) for i in indices]
        last, decoded, converter = max(indices), {}, VideoReformatter()
        with av.open(self.path) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in indices:
                    decoded[i] = (converter.reformat(frame, format="rgb24").to_ndarray() if self.reuse_converter
                                  else frame.to_ndarray(format="rgb24"))
                if i >= last:
                    break
        missing = [i for i in indices if i not in decoded]
        if missing:
            raise IndexError(f"{self.path}: frames {missing} out of range")
        return _Batch(np.stack([decoded[i] for i in indices]))


def real_decord():
    """The real decord module, or None where it is not importable."""
    try:
        import decord
    except ImportError:
        return None
    return decord


def install_stand_ins(decoder="auto"):
    """Puts `utils` (and, unless the real decord is used, `decord`) in sys.modules; returns the decoder's name."""
    decord = real_decord() if decoder in ("auto", "decord") else None
    if decord is None and decoder == "decord":
        raise SystemExit("--decoder decord: decord is not importable (pip install -r requirements-test.txt)")
    if decord is not None:
        name = f"decord {decord.__version__} (real)"
    else:
        decord = types.ModuleType("decord")
        decord.VideoReader = VideoReader
        decord.cpu = lambda index=0: ("cpu", index)
        name = "decord stand-in on PyAV"
    utils = types.ModuleType("utils")

    def load_dataset_file(filename):
        with gzip.open(filename, "rb") as f:
            return pickle.load(f)

    utils.load_dataset_file = load_dataset_file
    sys.modules["decord"], sys.modules["utils"] = decord, utils
    return name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("world")
    parser.add_argument("out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max_length", type=int, nargs="+", default=[256])
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--time", action="store_true", help="only time passes over the split")
    parser.add_argument("--decoder", choices=("auto", "decord", "stand-in"), default="auto",
                        help="upstream's decord: the real one if importable (auto), the real one or fail, or "
                             "the PyAV stand-in")
    args = parser.parse_args()
    VideoReader.reuse_converter = args.time
    decoder = install_stand_ins(args.decoder)
    print(f"upstream decoder: {decoder}", flush=True)
    sys.path.insert(0, os.path.abspath(args.upstream))
    os.chdir(args.world)  # upstream's config.py paths are relative to the working directory
    import numpy as np
    import torch

    import datasets as upstream

    results = {"decoder": decoder}
    for max_length in args.max_length:
        for seed in args.seeds:
            ns = argparse.Namespace(rgb_support=True, max_length=max_length, dataset="CSL_Daily")
            dataset = upstream.S2T_Dataset(f"./data/CSL_Daily/labels.{args.split}", ns, args.split)
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            started, cpu_started = time.perf_counter(), time.process_time()
            items = [dataset[i] for i in range(len(dataset))]
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            if args.time:
                results[f"{max_length}/{seed}"] = {"samples": len(items), "seconds": elapsed, "cpu_seconds": cpu}
                continue
            batches = []
            for b in range(0, len(items), args.batch):
                src, _ = dataset.collate_fn(items[b:b + args.batch])
                batches.append({k: v for k, v in src.items() if k.startswith(("left_", "right_"))})
            results[f"{max_length}/{seed}"] = {"names": [it[0] for it in items], "dicts": [it[4] for it in items],
                                               "batches": batches}
    torch.save(results, args.out)


if __name__ == "__main__":
    main()
