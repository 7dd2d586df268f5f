"""Train and evaluate Uni-Sign (pose → mT5 translation) under DeepSpeed, optionally with descriptions.

    deepspeed --include localhost:0,1 fine_tuning.py --dataset CSL_Daily --finetune stage2.pth ...
    deepspeed fine_tuning.py --use_descriptions --finetune out/stage2/best_checkpoint.pth ...
    python fine_tuning.py --eval --finetune out/stage3/best_checkpoint.pth ...
"""
import argparse
import logging
import math
import time
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

import config
import utils
from datasets import S2T_Dataset
from models import Uni_Sign
from uni_sign_ext.checkpoint import load_fusion_checkpoint, load_model_checkpoint
from uni_sign_ext.cli import check_description_args
from uni_sign_ext.deepspeed_setup import build_optimizer, cosine_schedule, deepspeed_config
from uni_sign_ext.fusion import withhold_descriptions
from uni_sign_ext.metrics import evaluate_translations
from uni_sign_ext.results import write_metrics

logger = logging.getLogger("fine_tuning")
PRINT_EVERY = 10
PROBLEMS_SHOWN = 5
GENERATE_MAX_NEW_TOKENS = 100
GENERATE_NUM_BEAMS = 4


def log(message, *fmt):
    if utils.is_main_process():
        print(message % fmt if fmt else message, flush=True)


def build_loader(args, phase):
    label_paths = {"train": config.train_label_paths, "dev": config.dev_label_paths,
                   "test": config.test_label_paths}[phase]
    dataset = S2T_Dataset(label_paths[args.dataset], args, phase)
    if phase == "train" and args.distributed:
        sampler = DistributedSampler(dataset, shuffle=True, seed=args.seed)
    elif phase == "train":
        sampler = torch.utils.data.RandomSampler(dataset)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
                      collate_fn=dataset.collate_fn, pin_memory=args.pin_mem and torch.cuda.is_available(),
                      drop_last=False)


def text_feature_provider(args):
    from uni_sign_ext.feature_cache import TextFeatureProvider

    return TextFeatureProvider(args.mt5_model or args.mt5_path, cache_dir=args.feature_cache_dir or None,
                               dataset=args.dataset, device=args.device)


def model_dtype(args):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.dtype, torch.float32)


def match_cpu_dtype(model, args):
    """DeepSpeed casts parameters only; CPU batch_norm also needs its running statistics in the
    input's dtype (on GPU they stay fp32, as upstream runs)."""
    if args.device.type == "cpu" and args.dtype != "fp32":
        model.to(model_dtype(args))


def prepare_batch(src_input, args, provider):
    """Move the batch to the device, cast poses like upstream (bf16/fp16), attach text features."""
    dtype = model_dtype(args)
    for key, value in src_input.items():
        if torch.is_tensor(value):
            value = value.to(args.device)
            src_input[key] = value.to(dtype) if value.is_floating_point() else value
    if provider is not None:
        src_input["text_features"] = provider(src_input["desc_texts"])
    return src_input


class ProblemLog:
    """Counts samples skipped for bad pose files and malformed description files, and reports them."""

    def __init__(self):
        self.skipped, self.descriptions = [], []

    def add(self, src_input):
        self.skipped.extend(src_input["skipped"])
        self.descriptions.extend(src_input.get("desc_problems", []))

    def report(self, what):
        totals = torch.tensor([len(self.skipped), len(self.descriptions)])
        if dist.is_initialized():
            dist.all_reduce(totals)
        for sample in self.skipped[:PROBLEMS_SHOWN]:
            logger.warning("skipped %s: %s (%s)", sample.name, sample.path, sample.reason)
        for path, reason in self.descriptions[:PROBLEMS_SHOWN]:
            logger.warning("malformed description file %s: %s (trained as 'no descriptions')", path, reason)
        if totals.sum() > 0:
            log("%s: %d samples skipped for unusable pose files, %d loads of malformed description "
                "files (summed over ranks)", what, totals[0], totals[1])


def train_one_epoch(engine, loader, epoch, args, provider):
    engine.train()
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    problems, losses, start = ProblemLog(), [], time.time()
    steps = len(loader) if not args.quick_break else min(len(loader), args.quick_break)
    for step, (src_input, tgt_input) in enumerate(loader):
        problems.add(src_input)
        out = engine(prepare_batch(src_input, args, provider), tgt_input)
        engine.backward(out["loss"])
        engine.step()
        losses.append(out["loss"].item())
        if (step + 1) % PRINT_EVERY == 0 or step + 1 == steps:
            log("epoch %d [%d/%d] loss %.4f lr %.2e %.1fs", epoch, step + 1, steps,
                sum(losses[-PRINT_EVERY:]) / len(losses[-PRINT_EVERY:]),
                engine.get_lr()[0], time.time() - start)
        if step + 1 >= steps:
            break
    problems.report(f"epoch {epoch}")
    return sum(losses) / max(1, len(losses))


class GateStats:
    """Mean gate on described vs undescribed real frames."""

    def __init__(self):
        self.sums = torch.zeros(2, dtype=torch.float64)
        self.counts = torch.zeros(2, dtype=torch.float64)

    def add(self, out, attention_mask):
        gate = out["gate"].squeeze(-1).double().cpu()
        has = out["has_description"].double().cpu()
        real = attention_mask.bool().cpu()
        for i, selected in enumerate([(has > 0.5) & real, (has <= 0.5) & real]):
            self.sums[i] += gate[selected].sum()
            self.counts[i] += selected.sum()

    def means(self):
        described, undescribed = (self.sums / self.counts.clamp(min=1)).tolist()
        return {"gate_described": described, "gate_undescribed": undescribed}


@torch.no_grad()
def evaluate(engine, loader, args, phase, provider, withhold=False):
    """Translate a split; returns metrics (and, with descriptions, the mean gates).

    Long videos' frames are sampled at random, so evaluation runs under a fixed seed (repeatable,
    and the same as a later --eval run) without disturbing the training streams.
    """
    with utils.seeded(args.seed):
        return _evaluate(engine, loader, args, phase, provider, withhold)


def _evaluate(engine, loader, args, phase, provider, withhold):
    engine.eval()
    model = engine.module
    synced = args.zero_stage == 3 and args.world_size > 1
    names, predictions, references = [], [], []
    problems, gates = ProblemLog(), GateStats()
    for step, (src_input, tgt_input) in enumerate(loader):
        problems.add(src_input)
        if not src_input["name_batch"]:
            continue
        src_input = prepare_batch(src_input, args, provider)
        if withhold:
            src_input = withhold_descriptions(src_input)
        out = engine(src_input, tgt_input)
        if "gate" in out:
            gates.add(out, src_input["attention_mask"])
        tokens = model.generate(out, max_new_tokens=GENERATE_MAX_NEW_TOKENS,
                                num_beams=GENERATE_NUM_BEAMS, synced_gpus=synced)
        predictions += model.mt5_tokenizer.batch_decode(tokens, skip_special_tokens=True)
        references += tgt_input["gt_sentence"]
        names += src_input["name_batch"]
    problems.report(f"{phase} evaluation")
    if not names:
        raise SystemExit(f"no usable {phase} samples to evaluate (see the skips reported above)")
    metrics = evaluate_translations(args.dataset, references, predictions)
    if provider is not None:
        metrics.update(gates.means())
    if utils.is_main_process() and args.output_dir and not withhold:
        write_predictions(Path(args.output_dir), phase, names, predictions, references)
    return metrics


def write_predictions(output_dir, phase, names, predictions, references):
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / f"{phase}_tmp_pres.txt", "w", encoding="utf-8") as f:
        f.writelines(f"sample: {n}, prediction: {p}\n" for n, p in zip(names, predictions))
    with open(output_dir / f"{phase}_tmp_refs.txt", "w", encoding="utf-8") as f:
        f.writelines(f"sample: {n}, ground-truth: {r}\n" for n, r in zip(names, references))


def format_metrics(metrics):
    text = " ".join(f"BLEU-{n} {metrics[f'bleu{n}']:.2f}" for n in range(1, 5))
    text += f" ROUGE-L {metrics['rouge']:.2f}"
    if "gate_described" in metrics:
        text += (f" | mean gate: described {metrics['gate_described']:.4f}, "
                 f"undescribed {metrics['gate_undescribed']:.4f}")
    return text


def evaluate_and_report(engine, loader, args, phase, provider):
    metrics = evaluate(engine, loader, args, phase, provider)
    log("[%s] %s", phase, format_metrics(metrics))
    if provider is not None:
        withheld = evaluate(engine, loader, args, phase, provider, withhold=True)
        log("[%s, descriptions withheld] %s", phase, format_metrics(withheld))
        metrics["withheld"] = withheld
        if utils.is_main_process():
            provider.save()  # new texts' features are kept for the next epoch and the next run
    if utils.is_main_process():
        write_metrics(args.output_dir, phase, metrics)
    return metrics


def save_checkpoint(engine, args, path):
    """{'model': state_dict} written once, by rank 0 (ZeRO-3 gathers the weights on every rank first)."""
    if args.zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict()
    if utils.is_main_process():
        torch.save({"model": state}, path)
        log("saved %s", path)


def main(args):
    utils.check_supported(args)
    check_description_args(args)
    if args.sched != "cosine":
        raise SystemExit(f"--sched {args.sched} is not supported in this fork; use --sched cosine.")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    utils.init_distributed_mode(args)
    utils.set_seed(args.seed + args.rank)
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)

    train_loader = None if args.eval else build_loader(args, "train")
    dev_loader = build_loader(args, "dev")
    test_loader = build_loader(args, "test")
    model = Uni_Sign(args)
    if args.finetune:
        load_model_checkpoint(model, args.finetune)
        log("loaded %s", args.finetune)
    if args.fusion_checkpoint:
        load_fusion_checkpoint(model, args.fusion_checkpoint)
    provider = text_feature_provider(args) if args.use_descriptions else None
    match_cpu_dtype(model, args)
    optimizer = build_optimizer(model, args)
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps) if train_loader else 1
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=deepspeed_config(args),
                                           lr_scheduler=cosine_schedule(optimizer, args, steps_per_epoch))
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log("model: %.2fM trainable parameters; ZeRO-%d, %s, %d rank(s)", n_trainable / 1e6,
        args.zero_stage, args.dtype, args.world_size)

    if args.eval:
        if args.dataset != "How2Sign":
            evaluate_and_report(engine, dev_loader, args, "dev", provider)
        evaluate_and_report(engine, test_loader, args, "test", provider)
        return

    best_bleu = -1.0
    for epoch in range(args.epochs):
        loss = train_one_epoch(engine, train_loader, epoch, args, provider)
        log("epoch %d: mean training loss %.4f", epoch, loss)
        if args.output_dir:
            save_checkpoint(engine, args, Path(args.output_dir) / f"checkpoint_{epoch}.pth")
        metrics = evaluate_and_report(engine, dev_loader, args, "dev", provider)
        if metrics["bleu4"] > best_bleu:
            best_bleu = metrics["bleu4"]
            if args.output_dir:
                save_checkpoint(engine, args, Path(args.output_dir) / "best_checkpoint.pth")
    evaluate_and_report(engine, test_loader, args, "test", provider)


if __name__ == "__main__":
    parser = argparse.ArgumentParser("Uni-Sign fine-tuning", parents=[utils.get_args_parser()])
    main(parser.parse_args())
