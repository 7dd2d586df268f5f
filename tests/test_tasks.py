"""--task ISLR / CSLR (issue 13): metrics equal upstream's on the same predictions, best-checkpoint direction,
targets and prompts per task, WLASL's per-split layout read as upstream reads it, clear start-up errors;
BLEURT's skip and scoring paths (a fake `bleurt` records what it is given)."""
import importlib.machinery
import logging
import random
import sys
import types

import pytest
import torch

from conftest import parse_args
from upstream import load_upstream, point_at, require_upstream, seeded_items, upstream_args
from uni_sign_ext import tasks
from uni_sign_ext.metrics import islr_accuracy, wer

PARTS = ("body", "left", "right", "face_all")


@pytest.fixture(scope="module")
def up():
    require_upstream()
    return load_upstream()


def aim_upstream(up, world):
    """Upstream's config-derived globals at the mini-world's mT5 and the pose folders these tests read."""
    point_at(up, world / "pretrained_weight" / "mt5-base",
             {dataset: str(world / "dataset" / dataset / "pose_format") for dataset in ("CSL_Daily", "WLASL")})


# ---------------------------------------------------------------- ISLR accuracy


def test_islr_accuracy_by_hand():
    # 'go' signed 3 times, all right; 'who' once, wrong: 3 of 4 instances, classes (1 + 0) / 2.
    scores = islr_accuracy(["go", "go", "go", "who"], ["go", "go", "go", "book"])
    assert scores == {"top1_acc_pi": 75.0, "top1_acc_pc": 50.0}
    assert islr_accuracy(["go"], ["go "]) == {"top1_acc_pi": 0.0, "top1_acc_pc": 0.0}  # exact match, as upstream
    for refs, hyps in ((["go", "who"], ["go"]), (["go"], ["go", "who"]), ([], [])):
        with pytest.raises(ValueError, match="need as many, at least one"):
            islr_accuracy(refs, hyps)


def _islr_cases():
    rng = random.Random(0)
    words = ["book", "drink", "go", "who", "chair", "before", "computer"]
    cases = [(["a", "a", "b"], ["a", "b", "b"]), (["x"], ["x"])]
    for n in (5, 37, 400):
        refs = [rng.choice(words[:rng.randint(2, len(words))]) for _ in range(n)]  # unequal class sizes
        cases.append((refs, [r if rng.random() < 0.6 else rng.choice(words) for r in refs]))
    return cases


def test_islr_accuracy_equals_upstreams(up, capsys):
    for refs, hyps in _islr_cases():
        pi, pc = up.SLRT_metrics.islr_performance(refs, hyps)
        assert islr_accuracy(refs, hyps) == {"top1_acc_pi": pi, "top1_acc_pc": pc}


# ---------------------------------------------------------------- CSLR WER


def test_wer_by_hand():
    # a b c d → a x c d e: one substitution, one insertion over 4 reference glosses.
    assert wer(["a b c d"], ["a x c d e"]) == {"wer": 50.0, "del_rate": 0.0, "ins_rate": 25.0, "sub_rate": 25.0}
    # Summed over the corpus before dividing: 1 deletion + 0 errors over 2 + 3 glosses.
    assert wer(["a b", "c d e"], ["a", "c d e"])["wer"] == pytest.approx(20.0)
    # Weighted costs (sub 4, ins/del 3): 'a b' → 'b c' is a deletion and an insertion (6), not two substitutions (8).
    assert wer(["a b"], ["b c"]) == {"wer": 100.0, "del_rate": 50.0, "ins_rate": 50.0, "sub_rate": 0.0}


def test_wer_of_long_hypotheses_does_not_overflow():
    """Upstream's uint8 table cannot hold costs past 255 (a hypothesis of 86+ glosses); ours counts on."""
    assert wer(["a"], [" ".join(["b"] * 100)]) == {"wer": 10000.0, "del_rate": 0.0, "ins_rate": 9900.0,
                                                   "sub_rate": 100.0}


def _wer_cases():
    """Real CSL-Daily gloss lines against random edits of each (kept under upstream's 85-gloss limit)."""
    from uni_sign_ext.fixture import REAL_LABELS_DIR, read_labels

    rng = random.Random(1)
    glosses = [" ".join(e["gloss"]) for e in read_labels(REAL_LABELS_DIR / "CSL_Daily" / "labels.train").values()]
    vocabulary = sorted({g for line in glosses for g in line.split()})

    def edit(line):
        out = []
        for gloss in line.split():
            roll = rng.random()
            if roll < 0.15:
                continue                                    # deletion
            out.append(rng.choice(vocabulary) if roll < 0.3 else gloss)
            if rng.random() < 0.1:
                out.append(rng.choice(vocabulary))          # insertion
        return " ".join(out)

    real = rng.sample(glosses, 300)
    cases = [("real glosses, edited", real, [edit(line) for line in real]),
             ("empty and repeated hypotheses", real[:20], [""] * 10 + ["a a a a"] * 10),
             # equal-cost alignments: only upstream's tie-breaking order gives its del/ins/sub split
             ("ties", ["a b a b", "a a", "x y z", "c b b c a a b"], ["b a b a", "b b b", "z y x", "a a a c b a"])]
    for n in range(50):  # short sequences over 3 tokens: many equal-cost alignments
        refs = [" ".join(rng.choices("abc", k=rng.randint(1, 7))) for _ in range(20)]
        hyps = [" ".join(rng.choices("abc", k=rng.randint(0, 7))) for _ in range(20)]
        cases.append((f"random {n}", refs, hyps))
    return cases


def test_wer_and_its_parts_equal_upstreams(up, capsys):
    for name, refs, hyps in _wer_cases():
        theirs = up.SLRT_metrics.wer_list(references=refs, hypotheses=hyps)
        assert wer(refs, hyps) == theirs, name


# ---------------------------------------------------------------- per task: targets, best checkpoint, prompt


def test_best_checkpoint_direction_per_task():
    slt, islr, cslr = tasks.TASKS["SLT"], tasks.TASKS["ISLR"], tasks.TASKS["CSLR"]
    assert (slt.best_key, islr.best_key, cslr.best_key) == ("bleu4", "top1_acc_pi", "wer")
    assert slt.improves(20.0, 10.0) and not slt.improves(10.0, 20.0) and not slt.improves(10.0, 10.0)
    assert islr.improves(50.0, 25.0) and not islr.improves(25.0, 50.0) and not islr.improves(25.0, 25.0)
    assert cslr.improves(30.0, 40.0) and not cslr.improves(40.0, 30.0) and not cslr.improves(30.0, 30.0)
    for task in (slt, islr, cslr):  # the first epoch always becomes the best, whatever its score
        assert task.improves(0.0 if task.higher_is_better else 1e6, task.no_score_yet)


def test_cslr_targets_are_the_glosses_other_tasks_the_text():
    batch = {"gt_sentence": ["你们好！"], "gt_gloss": ["你们 好"]}
    assert tasks.use_task_targets(dict(batch), "CSLR")["gt_sentence"] == ["你们 好"]
    for task in ("SLT", "ISLR"):
        assert tasks.use_task_targets(dict(batch), task) == batch


def test_scores_per_task():
    assert tasks.score("ISLR", "WLASL", ["go", "who"], ["go", "go"]) == {"top1_acc_pi": 50.0, "top1_acc_pc": 50.0}
    assert tasks.score("CSLR", "CSL_Daily", ["你们 好"], ["你们 好"])["wer"] == 0.0
    # CSLR is not prepared per character (SLT on CSL_Daily is): one wrong gloss of two is 50 %, not 1 of 3 chars.
    assert tasks.score("CSLR", "CSL_Daily", ["你们 好"], ["你 好"])["wer"] == 50.0
    assert set(tasks.score("SLT", "CSL_Daily", ["你们好"], ["你们好"])) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge"}


def _loader_batch(world, dataset, label_file, indices):
    import importlib

    import config
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNISIGN_ROOT", str(world))
        importlib.reload(config)
        ours = datasets.S2T_Dataset(str(world / "data" / dataset / label_file),
                                    parse_args("--dataset", dataset, "--max_length", "16"), "test")
    importlib.reload(config)
    src, tgt = ours.collate_fn([ours[i] for i in indices])
    return {k: v.float() if k in PARTS else v for k, v in src.items()}, tgt


@pytest.mark.parametrize("dataset,task,label_file", [("WLASL", "ISLR", "labels-2000.test"),
                                                     ("CSL_Daily", "CSLR", "labels.test")])
def test_prompt_and_targets_per_task_give_upstreams_loss(up, mini_world, dataset, task, label_file):
    """Upstream's model (its prompt by dataset language) on the targets its loop uses for the task
    (CSLR: gt_gloss copied over gt_sentence), against ours: the same loss, bit for bit."""
    from models import Uni_Sign

    aim_upstream(up, mini_world)
    torch.manual_seed(0)
    theirs = up.models.Uni_Sign(upstream_args(dataset=dataset, task=task)).eval()
    ours = Uni_Sign(parse_args("--dataset", dataset, "--task", task,
                               "--mt5_path", str(mini_world / "pretrained_weight" / "mt5-base"))).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    src, tgt = _loader_batch(mini_world, dataset, label_file, [0, 1, 2])
    up_tgt = dict(tgt, gt_sentence=tgt["gt_gloss"]) if task == "CSLR" else dict(tgt)
    assert up_tgt["gt_sentence"] != ([""] * 3)
    with torch.no_grad():
        loss = ours(dict(src), tasks.use_task_targets(dict(tgt), task))["loss"]
        up_loss = theirs(dict(src), up_tgt)["loss"]
        other_loss = ours(dict(src), tasks.use_task_targets(dict(tgt), "SLT" if task == "CSLR" else "CSLR"))["loss"]
    assert torch.equal(loss, up_loss)
    assert not torch.equal(loss, other_loss)  # the targets matter: a swapped task gives another loss


# ---------------------------------------------------------------- WLASL in the mini-world, read as upstream reads it


MAX_LENGTH = 24


def test_wlasl_items_equal_upstreams_per_split(up, mini_world):
    import importlib

    import config
    import datasets

    aim_upstream(up, mini_world)
    for phase in ("train", "dev", "test"):
        label_path = str(mini_world / "data" / "WLASL" / f"labels-2000.{phase}")
        theirs = up.datasets.S2T_Dataset(path=label_path, args=upstream_args(dataset="WLASL", task="ISLR",
                                                                             max_length=MAX_LENGTH), phase=phase)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("UNISIGN_ROOT", str(mini_world))
            importlib.reload(config)
            # ours in its "train" mode, which draws frames from the global stream as upstream does in every phase
            ours = datasets.S2T_Dataset(label_path, parse_args("--dataset", "WLASL", "--task", "ISLR",
                                                               "--max_length", str(MAX_LENGTH)), "train")
        importlib.reload(config)
        assert ours.names == theirs.list and len(set(e["text"] for e in ours.labels.values())) >= 3
        indices = list(range(len(theirs)))
        for a, b in zip(seeded_items(ours, indices, 3), seeded_items(theirs, indices, 3)):
            assert a[0] == b[0] and a[2] == b[2] and a[3] == b[3], phase
            assert all(torch.equal(a[1][part], b[1][part]) for part in PARTS), (phase, a[0])


# ---------------------------------------------------------------- start-up errors


def test_descriptions_with_recognition_tasks_are_refused_naming_the_fix():
    from uni_sign_ext.cli import check_description_args

    for task in ("ISLR", "CSLR"):
        with pytest.raises(SystemExit, match=f"--use_descriptions works with --task SLT only.*drop "
                                             f"--use_descriptions to run --task {task}"):
            check_description_args(parse_args("--use_descriptions", "--task", task))
    check_description_args(parse_args("--use_descriptions", "--task", "SLT"))


def test_recognition_tasks_are_no_longer_refused():
    from utils import check_supported

    for task in ("SLT", "ISLR", "CSLR"):
        check_supported(parse_args("--task", task))


def test_missing_wlasl_labels_and_pose_split_folders_name_the_file(world_root, tmp_path):
    import datasets
    from uni_sign_ext.labels import LabelFileError

    args = parse_args("--dataset", "WLASL", "--task", "ISLR")
    with pytest.raises(LabelFileError, match=r"data/WLASL/labels-2000\.train: label file not found"):
        datasets.S2T_Dataset(str(tmp_path / "data" / "WLASL" / "labels-2000.train"), args, "train")
    split_folder = world_root / "dataset" / "WLASL" / "pose_format" / "dev"
    split_folder.rename(tmp_path / "moved")
    try:
        with pytest.raises(SystemExit, match=r"pose_format/dev: pose folder not found; WLASL keeps its pose "
                                             r"files in pose_format/<split>/"):
            datasets.S2T_Dataset(str(world_root / "data" / "WLASL" / "labels-2000.dev"), args, "dev")
    finally:
        (tmp_path / "moved").rename(split_folder)


def test_cslr_on_labels_without_glosses_names_the_file(world_root):
    import datasets

    label_path = str(world_root / "data" / "How2Sign" / "labels.train")
    with pytest.raises(SystemExit, match=r"How2Sign/labels\.train: no entry has glosses, but --task CSLR"):
        datasets.S2T_Dataset(label_path, parse_args("--dataset", "How2Sign", "--task", "CSLR"), "train")


# ---------------------------------------------------------------- BLEURT


def test_bleurt_is_wanted_as_upstream_scores_it():
    from uni_sign_ext.bleurt_metric import wanted

    assert parse_args().bleurt_checkpoint == "./BLEURT-20"  # upstream's fixed path
    assert wanted(parse_args("--eval", "--dataset", "How2Sign"))
    assert wanted(parse_args("--eval", "--dataset", "OpenASL"))
    assert not wanted(parse_args("--dataset", "How2Sign"))  # training epochs: too slow, as upstream
    assert not wanted(parse_args("--eval", "--dataset", "CSL_Daily"))
    assert not wanted(parse_args("--eval", "--dataset", "How2Sign", "--task", "ISLR"))


def test_bleurt_without_package_is_skipped_once_with_the_reason(monkeypatch, caplog):
    from uni_sign_ext.bleurt_metric import Bleurt

    monkeypatch.setitem(sys.modules, "bleurt", None)  # as if not installed, even where it is
    with caplog.at_level(logging.WARNING):
        bleurt = Bleurt("./BLEURT-20")
        assert bleurt.mean_score(["a"], ["a"]) is None
        assert bleurt.mean_score(["b"], ["b"]) is None
    skips = [r.getMessage() for r in caplog.records if "BLEURT skipped" in r.getMessage()]
    assert skips == ["BLEURT skipped: the bleurt package is not installed "
                     "(pip install git+https://github.com/google-research/bleurt.git)"]


class FakeScorer:
    """Stands in for bleurt.score.BleurtScorer: records its checkpoint and inputs, scores by length."""
    calls = []

    def __init__(self, checkpoint):
        self.calls.append(("load", checkpoint))

    def score(self, references, candidates):
        self.calls.append(("score", list(references), list(candidates)))
        return [len(c) / 10 for c in candidates]


def fake_bleurt(monkeypatch, scorer):
    score = types.ModuleType("bleurt.score")
    score.BleurtScorer = scorer
    package = types.ModuleType("bleurt")
    package.__spec__ = importlib.machinery.ModuleSpec("bleurt", None)
    package.score = score
    monkeypatch.setitem(sys.modules, "bleurt", package)
    monkeypatch.setitem(sys.modules, "bleurt.score", score)


def test_bleurt_scores_with_the_checkpoint_given(monkeypatch, tmp_path, caplog):
    from uni_sign_ext.bleurt_metric import Bleurt

    fake_bleurt(monkeypatch, FakeScorer)
    FakeScorer.calls = []
    missing = Bleurt(str(tmp_path / "nowhere"))
    assert "no BLEURT checkpoint folder at" in missing.skipped and "--bleurt_checkpoint" in missing.skipped
    assert missing.mean_score(["a"], ["a"]) is None and FakeScorer.calls == []

    bleurt = Bleurt(str(tmp_path))
    assert bleurt.mean_score(["the ref", "r2"], ["abcd", "ab"]) == pytest.approx(0.3)
    assert bleurt.mean_score(["x"], ["abcdef"]) == pytest.approx(0.6)
    assert FakeScorer.calls == [("load", str(tmp_path)), ("score", ["the ref", "r2"], ["abcd", "ab"]),
                                ("score", ["x"], ["abcdef"])]  # loaded once, for both splits


def test_a_failing_bleurt_scorer_is_reported_not_raised(monkeypatch, tmp_path, caplog):
    from uni_sign_ext.bleurt_metric import Bleurt

    class Broken(FakeScorer):
        def score(self, references, candidates):
            raise RuntimeError("tensorflow exploded")

    fake_bleurt(monkeypatch, Broken)
    bleurt = Bleurt(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert bleurt.mean_score(["a"], ["a"]) is None
    assert "BLEURT skipped: the scorer failed (RuntimeError: tensorflow exploded)" in caplog.text


# ---------------------------------------------------------------- the training loop's targets


class RecordingEngine:
    """Stands in for the DeepSpeed engine: records the targets each training step is given."""

    def __init__(self):
        self.targets = []

    def train(self):
        pass

    def __call__(self, src_input, tgt_input):
        self.targets.append(list(tgt_input["gt_sentence"]))
        return {"loss": torch.tensor(1.0, requires_grad=True)}

    def backward(self, loss):
        pass

    def step(self):
        pass

    def get_lr(self):
        return [1e-3]


class OneBatchLoader:
    sampler = None

    def __iter__(self):
        yield ({"name_batch": ["S000000"], "skipped": [], "body": torch.zeros(1, 2, 9, 3)},
               {"gt_sentence": ["你们好！"], "gt_gloss": ["你们 好"]})

    def __len__(self):
        return 1


@pytest.mark.parametrize("task,target", [("SLT", "你们好！"), ("CSLR", "你们 好")])
def test_training_steps_learn_the_tasks_targets(task, target):
    import fine_tuning

    args = parse_args("--task", task, "--dtype", "fp32")
    args.device = torch.device("cpu")
    engine = RecordingEngine()
    fine_tuning.train_one_epoch(engine, OneBatchLoader(), 0, args, provider=None)
    assert engine.targets == [[target]]
