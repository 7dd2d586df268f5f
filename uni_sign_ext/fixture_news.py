"""The mini-world's tiny CSL-News, for pre_training.py: CSL-Daily's world sentences, signed again as news clips.

Upstream's layout: one JSON list data/CSL_News/CSL_News_Labels.json of {"video", "pose", "text"} (the first
99 % of it trains, the last 1 % is dev and test), pose files dataset/CSL_News/pose_format/<pose>. Its texts
are the CSL_Daily sentences of the same world, so the tokenizer (and every other dataset's numbers) stay as
they were. Each sentence keeps its own motion program; WorldWriter varies the clips as for the other
datasets (its description files go to description/CSL_News/; pre-training does not read them).
"""
import json

from uni_sign_ext.fixture import WorldWriter, motion_program

SAMPLES_PER_SPLIT_FACTOR = 3  # list length = 3 × samples_per_split: 36 items → 35 train, 1 dev/test
SEED_OFFSET = 3  # CSL_Daily's writer uses seed, How2Sign's seed + 1, WLASL's seed + 2
LABEL_FILE = "CSL_News_Labels.json"


def build_csl_news(root, sentences, per_split, seed):
    """Write CSL-News's label list and pose files under root; returns the list."""
    writer = WorldWriter(seed + SEED_OFFSET)
    items = []
    for k in range(SAMPLES_PER_SPLIT_FACTOR * per_split):
        s = k % len(sentences)
        name = f"news_{k:05d}"
        entry = writer.sample(name, name + ".mp4", {"gloss": "", "text": sentences[s]},
                              motion_program(sentences[s], s), root / "dataset" / "CSL_News" / "pose_format",
                              root / "description" / "CSL_News")
        items.append({"video": entry["video_path"], "pose": name + ".pkl", "text": entry["text"]})
    path = root / "data" / "CSL_News" / LABEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    return items
