"""What the patches (uni_sign_ext/patches/*.patch) call inside an unmodified upstream Uni-Sign checkout.

Each hunk of those patches is one call into this module, so a patched checkout runs the same
description machinery as this fork. Without --use_descriptions every call returns at once and
touches nothing: no module, parameter, random draw or batch field is added.
"""
import functools

import torch

# Upstream's config.py keeps every path relative to the checkout; the description folders follow suit.
DESCRIPTION_ROOT = "./description"
FEATURE_CACHE_DIR = "./feature_cache"


def add_flags(parser):
    """utils.get_args_parser(): the description flags (all off by default)."""
    from uni_sign_ext.cli import add_description_args

    add_description_args(parser, DESCRIPTION_ROOT, FEATURE_CACHE_DIR)


def init_dataset(dataset, args, phase):
    """S2T_Dataset.__init__: open the split's descriptions and map each video path to its sample name."""
    if not getattr(args, "use_descriptions", False):
        return
    from uni_sign_ext.descriptions import open_description_loader

    dataset.description_loader = open_description_loader(args.desc_dir, args.dataset, phase)
    dataset.description_names = {sample["video_path"]: sample["name"] for sample in dataset.raw_data.values()}


def add_descriptions(dataset, support_rgb_dict, video_path, frames):
    """S2T_Dataset.load_pose: align the sample's descriptions to the original frames it sampled.

    They travel in the item's last element (a dict upstream only reads RGB keys from).
    """
    names = getattr(dataset, "description_names", None)
    if names is None:
        return
    from uni_sign_ext.alignment import aligned_sample_descriptions

    support_rgb_dict["descriptions"] = aligned_sample_descriptions(dataset.description_loader,
                                                                   names[video_path], frames)


def collate_batch_descriptions(src_input, batch):
    """Base_Dataset.collate_fn: the batch's description plan under src_input['descriptions'].

    A nested dict, because upstream's training loop casts every top-level tensor to bf16, which
    would round the text indices.
    """
    extras = [item[-1] for item in batch]
    if not extras or "descriptions" not in extras[0]:
        return
    from uni_sign_ext.alignment import collate_descriptions

    max_len = src_input["attention_mask"].shape[1]
    src_input["descriptions"] = collate_descriptions([extra["descriptions"] for extra in extras], max_len)


def attach_fusion(model, args, mt5_path):
    """Uni_Sign.__init__: the fusion module (under `text_fusion.`) and the frozen text-feature provider."""
    from uni_sign_ext.cli import check_description_args

    check_description_args(args)
    if not args.use_descriptions:
        return
    from transformers import MT5Config

    from uni_sign_ext.feature_cache import TextFeatureProvider
    from uni_sign_ext.fusion import DescriptionFusion

    text_path = args.mt5_model or mt5_path
    model.text_fusion = DescriptionFusion(model.mt5_model.config.d_model, MT5Config.from_pretrained(text_path).d_model,
                                          args.text_fusion_type, args.text_dropout_p)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    # A plain attribute, not a module: the frozen encoder is never in the model, its optimizer or checkpoints.
    model.text_features = TextFeatureProvider(text_path, cache_dir=args.feature_cache_dir or None,
                                              dataset=args.dataset, device=device)


def fuse(model, pose_embeds, src_input):
    """Uni_Sign.forward, after pose_proj: → (fused pose features, entries for stack_out)."""
    fusion = getattr(model, "text_fusion", None)
    if fusion is None:
        return pose_embeds, {}
    plan = dict(src_input["descriptions"], attention_mask=src_input["attention_mask"],
                text_features=model.text_features(src_input["descriptions"]["desc_texts"]))
    fused, gate, has_description = fusion(pose_embeds, plan)
    return fused, {"gate": gate, "has_description": has_description}


def load_finetune(model, state_dict, args):
    """fine_tuning.main, --finetune: upstream's strict load; with descriptions, fusion keys may be
    missing (fresh, identity at step 0), then --fusion_checkpoint's fusion weights are loaded."""
    if getattr(model, "text_fusion", None) is None:
        return model.load_state_dict(state_dict, strict=True)
    from uni_sign_ext.checkpoint import load_fusion_checkpoint, load_model_state

    missing = load_model_state(model, state_dict, args.finetune)
    if args.fusion_checkpoint:
        load_fusion_checkpoint(model, args.fusion_checkpoint)
    return torch.nn.modules.module._IncompatibleKeys(missing, [])


def description_reports(evaluate):
    """Wraps fine_tuning.evaluate: with descriptions, a split is evaluated with every description withheld
    first (the ablation), then as usual while the mean gate on described / undescribed frames is recorded.
    The returned stats gain gate_described, gate_undescribed and withheld_<metric>."""

    @functools.wraps(evaluate)
    def wrapped(args, data_loader, model, model_without_ddp, phase):
        fusion = getattr(model_without_ddp, "text_fusion", None)
        if fusion is None:
            return evaluate(args, data_loader, model, model_without_ddp, phase)
        from uni_sign_ext.fusion import GateStats, withhold_descriptions

        handle = fusion.register_forward_pre_hook(lambda m, inputs: (inputs[0], withhold_descriptions(inputs[1])))
        try:
            withheld = evaluate(args, data_loader, model, model_without_ddp, phase)
        finally:
            handle.remove()
        gates = GateStats()
        handle = fusion.register_forward_hook(
            lambda m, inputs, out: gates.add({"gate": out[1], "has_description": out[2]}, inputs[1]["attention_mask"]))
        try:
            stats = evaluate(args, data_loader, model, model_without_ddp, phase)
        finally:
            handle.remove()
        model_without_ddp.text_features.save()  # new texts' features are kept for the next run
        stats.update(gates.means())
        stats.update({f"withheld_{key}": value for key, value in withheld.items()})
        print(f"[{phase}] mean gate: described {stats['gate_described']:.4f}, "
              f"undescribed {stats['gate_undescribed']:.4f}; with descriptions withheld: "
              + ", ".join(f"{key} {value:.2f}" for key, value in withheld.items() if key != "loss"))
        return stats

    return wrapped
