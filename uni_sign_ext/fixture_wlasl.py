"""The mini-world's tiny WLASL, for --task ISLR: a few isolated signs, each signed several times per split.

Labels and poses are in upstream's layout: data/WLASL/labels-2000.{train,dev,test} (gzip-pickled
{name: {"name", "gloss": '', "text": word, "video_path"}}) and dataset/WLASL/pose_format/<split>/<id>.pkl.
The words are real WLASL glosses whose letters the world's tokenizer already knows from its English
sentences, so adding them leaves the tokenizer (and every translation number) as it was.
Each word gets its own motion program; WorldWriter varies the clips as it does for the sentences (it also
writes description files, under description/WLASL/: nothing reads them, --use_descriptions is SLT-only).
"""
from uni_sign_ext.fixture import WorldWriter, motion_program, write_labels

WORDS = ("book", "drink", "go", "who")
SPLITS = ("train", "dev", "test")
SEED_OFFSET = 2  # CSL_Daily's writer uses seed, How2Sign's seed + 1


def build_wlasl(root, per_split, seed):
    """Write WLASL's labels and poses under root; returns the words. Names are WLASL-style 5-digit video ids."""
    writer = WorldWriter(seed + SEED_OFFSET)
    for t, split in enumerate(SPLITS):
        labels = {}
        for k in range(per_split):
            w = k % len(WORDS)
            name = f"{t}{k:04d}"
            entry = {"gloss": "", "text": WORDS[w]}
            labels[name] = writer.sample(name, name + ".mp4", entry, motion_program(WORDS[w], w),
                                         root / "dataset" / "WLASL" / "pose_format" / split,
                                         root / "description" / "WLASL" / split)
        write_labels(root / "data" / "WLASL" / f"labels-2000.{split}", labels)
    return list(WORDS)
