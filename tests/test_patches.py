"""patches/: check, apply, revert on copies of upstream; a patched upstream equals the original without
--use_descriptions, and trains and evaluates with it."""
import shutil
import subprocess
import sys

import pytest
import torch

from upstream import CpuEngine, REPO, load_upstream, point_at, require_upstream, seeded_items, upstream_args
from uni_sign_ext import patches

PATCHED_FILES = ("utils.py", "datasets.py", "models.py", "fine_tuning.py")
PARTS = ("body", "left", "right", "face_all")


def copy_upstream(destination):
    if shutil.which("patch") is None:
        pytest.skip("GNU patch is not installed (the command then fails with a clear message, tested below)")
    shutil.copytree(require_upstream(), destination, ignore=shutil.ignore_patterns("out", "demo", "__pycache__"))
    return destination


def snapshot(checkout):
    return {name: (checkout / name).read_bytes() for name in PATCHED_FILES}


def cli(*argv):
    return subprocess.run([sys.executable, "-m", "uni_sign_ext.patches", *map(str, argv)], cwd=REPO,
                          capture_output=True, text=True)


def test_check_apply_is_idempotent_and_revert_is_byte_identical(tmp_path):
    checkout = copy_upstream(tmp_path / "Uni-Sign")
    original = snapshot(checkout)
    assert len(patches.PATCHES) == 4
    assert patches.check(checkout).status == "applicable"
    assert snapshot(checkout) == original  # check is a dry run

    result = cli("apply", checkout)
    assert result.returncode == 0 and "applied" in result.stdout, result.stderr
    patched = snapshot(checkout)
    assert all(patched[name] != original[name] for name in PATCHED_FILES)
    assert b"upstream_hooks" in patched["models.py"]
    assert patches.check(checkout).status == "applied"
    assert patches.apply(checkout) == "already applied" and snapshot(checkout) == patched

    result = cli("revert", checkout)
    assert result.returncode == 0 and "reverted" in result.stdout, result.stderr
    assert snapshot(checkout) == original
    assert sorted(p.name for p in checkout.iterdir()) == sorted(p.name for p in require_upstream().iterdir()
                                                                if p.name not in ("out", "demo"))  # no .orig/.rej
    assert patches.revert(checkout) == "not applied"


def test_a_drifted_checkout_is_refused_naming_the_hunk_and_nothing_changes(tmp_path):
    checkout = copy_upstream(tmp_path / "Uni-Sign")
    models = checkout / "models.py"
    models.write_text(models.read_text().replace("inputs_embeds = self.pose_proj(inputs_embeds)",
                                                 "inputs_embeds = self.pose_proj(inputs_embeds) * 1.0"))
    before = snapshot(checkout)
    result = cli("apply", checkout)
    assert result.returncode == 1
    assert "models.py: hunk 3 (upstream line 265) does not apply" in result.stderr and "apply refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(checkout) == before  # all or nothing: the other three files were not patched either
    assert cli("check", checkout).returncode == 1


def test_moved_lines_still_apply(tmp_path):
    """A checkout with other edits above the hunks (lines shifted, context intact) is patched and reverted."""
    checkout = copy_upstream(tmp_path / "Uni-Sign")
    models = checkout / "models.py"
    models.write_text("# local change\n# another\n" + models.read_text())
    before = snapshot(checkout)
    assert patches.apply(checkout) == "applied"
    assert patches.revert(checkout) == "reverted" and snapshot(checkout) == before


def test_a_partly_patched_checkout_is_refused(tmp_path):
    checkout = copy_upstream(tmp_path / "Uni-Sign")
    subprocess.run(["patch", "-p1", "-d", str(checkout), "-i", str(patches.PATCH_DIR / "models.patch")],
                   check=True, capture_output=True)
    with pytest.raises(patches.PatchError, match="partly patched: applied models.patch"):
        patches.apply(checkout)
    with pytest.raises(patches.PatchError, match="revert refused"):
        patches.revert(checkout)


def test_a_folder_that_is_no_checkout_is_named(tmp_path):
    (tmp_path / "models.py").write_text("")
    result = cli("check", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"utils.py: not found (is {tmp_path} the root of a Uni-Sign checkout?)" in result.stderr
    assert "models.py: hunk 1 (upstream line 12) does not apply" in result.stderr
    result = cli("apply", tmp_path / "missing")
    assert result.returncode == 1 and "missing: no such folder" in result.stderr


def test_missing_gnu_patch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(patches.shutil, "which", lambda name: None)
    with pytest.raises(patches.PatchError, match=r"GNU patch not found on PATH: install it"):
        patches.check(tmp_path)


# ---------------------------------------------------------------- a patched upstream, run


@pytest.fixture(scope="module")
def original_and_patched(mini_world, tmp_path_factory):
    checkout = copy_upstream(tmp_path_factory.mktemp("patched") / "Uni-Sign")
    assert patches.apply(checkout) == "applied"
    pair = load_upstream(require_upstream()), load_upstream(checkout)
    for up in pair:
        point_at(up, mini_world / "pretrained_weight" / "mt5-base",
                 {"CSL_Daily": str(mini_world / "dataset" / "CSL_Daily" / "pose_format")})
    return pair


def build(up, world, phase, *argv):
    args = upstream_args(up, argv, max_length=24)
    dataset = up.datasets.S2T_Dataset(path=str(world / "data" / "CSL_Daily" / f"labels.{phase}"), args=args,
                                      phase=phase)
    torch.manual_seed(0)
    return args, dataset, up.models.Uni_Sign(args)


def test_patched_without_the_flag_equals_the_original(original_and_patched, mini_world):
    runs = []
    for up in original_and_patched:
        args, dataset, model = build(up, mini_world, "train")
        assert not hasattr(model, "text_fusion")
        src, tgt = dataset.collate_fn(seeded_items(dataset, [0, 2, 5, 7], 4))
        model.eval()
        out = model(src, tgt)
        tokens = model.generate(out, max_new_tokens=100, num_beams=4)
        model.train()
        torch.manual_seed(1)
        train_loss = model(src, tgt)["loss"]
        runs.append((src, tgt, model.state_dict(), out, tokens, train_loss))
    (src, tgt, state, out, tokens, train_loss), theirs = runs
    assert set(src) == set(theirs[0]) and tgt == theirs[1]
    for part in PARTS + ("attention_mask",):
        assert torch.equal(src[part], theirs[0][part]), part
    assert list(state) == list(theirs[2]) and all(torch.equal(v, theirs[2][k]) for k, v in state.items())
    assert set(out) == set(theirs[3])
    for key in ("inputs_embeds", "attention_mask", "loss"):
        assert torch.equal(out[key], theirs[3][key]), key
    assert torch.equal(tokens, theirs[4])
    assert torch.equal(train_loss, theirs[5])


def test_patched_with_descriptions_trains_and_evaluates(original_and_patched, mini_world, monkeypatch, capsys):
    up = original_and_patched[1]
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)  # upstream's evaluate pads on CUDA
    flags = ["--use_descriptions", "--desc_dir", str(mini_world / "description"), "--feature_cache_dir", "",
             "--batch-size", "4"]
    args, train_data, model = build(up, mini_world, "train", *flags)
    assert model.text_fusion is not None
    keys = list(model.state_dict())
    assert any(k.startswith("text_fusion.") for k in keys)
    assert all(k.startswith(("text_fusion.", "mt5_model.")) or "encoder" not in k for k in keys)  # no text encoder
    _, dev_data, _ = build(up, mini_world, "dev", *flags)
    loader = torch.utils.data.DataLoader(train_data, batch_size=4, collate_fn=train_data.collate_fn)
    src, _ = next(iter(loader))
    assert src["descriptions"]["has_description"].sum() > 0

    gate_before = {k: v.clone() for k, v in model.text_fusion.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine = CpuEngine(model, optimizer)
    torch.manual_seed(0)
    stats = up.fine_tuning.train_one_epoch(args, engine, loader, optimizer, epoch=0)
    assert torch.isfinite(torch.tensor(stats["loss"]))
    assert any(not torch.equal(v, gate_before[k]) for k, v in model.text_fusion.state_dict().items())

    dev_loader = torch.utils.data.DataLoader(dev_data, batch_size=6, collate_fn=dev_data.collate_fn)
    result = up.fine_tuning.evaluate(args, dev_loader, engine, model, phase="dev")
    for key in ("bleu4", "rouge", "withheld_bleu4", "withheld_rouge", "gate_described", "gate_undescribed"):
        assert key in result, key
    assert 0 < result["gate_described"] < 1 and 0 < result["gate_undescribed"] < 1
    assert "[dev] mean gate: described" in capsys.readouterr().out


def test_patched_finetune_loads_an_upstream_checkpoint_into_the_fusion_model(original_and_patched, mini_world):
    original, patched = original_and_patched
    _, _, plain = build(original, mini_world, "train")
    args, _, model = build(patched, mini_world, "train", "--use_descriptions", "--feature_cache_dir", "")
    args.finetune = "stage2.pth"
    ret = patched.fine_tuning.upstream_hooks.load_finetune(model, plain.state_dict(), args)
    assert ret.missing_keys and all(k.startswith("text_fusion.") for k in ret.missing_keys)
    assert torch.equal(model.pose_proj.weight, plain.pose_proj.weight)
    _, _, unfused = build(patched, mini_world, "train")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        patched.fine_tuning.upstream_hooks.load_finetune(unfused, model.state_dict(), args)


def test_patched_with_descriptions_equals_this_fork_with_descriptions(original_and_patched, mini_world):
    """The hooks run this fork's machinery: same aligned plan, fused features, gate and loss."""
    import importlib

    import config
    import datasets
    from conftest import parse_args
    from models import Uni_Sign
    from uni_sign_ext.feature_cache import TextFeatureProvider
    from uni_sign_ext.fusion import withhold_descriptions

    flags = ["--use_descriptions", "--desc_dir", str(mini_world / "description"), "--feature_cache_dir", ""]
    args, theirs_data, theirs = build(original_and_patched[1], mini_world, "train", *flags)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNISIGN_ROOT", str(mini_world))
        importlib.reload(config)
        ours_args = parse_args("--max_length", "24", "--mt5_path", str(mini_world / "pretrained_weight" / "mt5-base"),
                               *flags)
        ours_data = datasets.S2T_Dataset(str(mini_world / "data" / "CSL_Daily" / "labels.train"), ours_args, "train")
    importlib.reload(config)
    ours = Uni_Sign(ours_args)
    torch.manual_seed(2)
    with torch.no_grad():  # a fresh fusion is an identity; trained-like weights make the text count
        for param in theirs.text_fusion.parameters():
            param.normal_(0, 0.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    indices = [0, 1, 3, 6]
    src, tgt = ours_data.collate_fn(seeded_items(ours_data, indices, 9))
    up_src, up_tgt = theirs_data.collate_fn(seeded_items(theirs_data, indices, 9))
    plan = up_src["descriptions"]
    assert plan["desc_texts"] == src["desc_texts"] and plan["has_description"].sum() > 0
    for key in ("desc_left", "desc_right", "desc_weight", "has_description", "desc_video_texts"):
        assert torch.equal(plan[key], src[key]), key
    src["text_features"] = TextFeatureProvider(ours_args.mt5_path)(src["desc_texts"])
    ours.eval(), theirs.eval()
    out, up_out = ours(src, tgt), theirs(up_src, up_tgt)
    for key in ("inputs_embeds", "gate", "has_description", "loss"):
        assert torch.equal(out[key], up_out[key]), key
    withheld = theirs(dict(up_src, descriptions=withhold_descriptions(plan)), up_tgt)
    assert not torch.equal(withheld["inputs_embeds"], up_out["inputs_embeds"])  # the descriptions mattered


def test_patched_parser_has_this_forks_description_flags(original_and_patched):
    from conftest import parse_args

    parse_args()  # reloads config and utils
    import utils

    def description_actions(parser):
        return {a.dest: (a.option_strings, a.default, a.type, a.choices, type(a)) for a in parser._actions
                if a.container.title == "action descriptions (new in this fork)"}

    original, patched = original_and_patched
    ours = description_actions(utils.get_args_parser())
    assert len(ours) == 8 and ours == description_actions(patched.utils.get_args_parser())
    assert not description_actions(original.utils.get_args_parser())
