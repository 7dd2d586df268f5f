"""Train and evaluate Uni-Sign (pose → mT5 text) under DeepSpeed, optionally with descriptions: translation
(--task SLT), isolated (ISLR, WLASL) or continuous (CSLR, CSL-Daily glosses) sign recognition.

    deepspeed --include localhost:0,1 fine_tuning.py --dataset CSL_Daily --finetune stage2.pth ...
    deepspeed fine_tuning.py --dataset WLASL --task ISLR --max_length 64 --finetune stage2.pth ...
    deepspeed fine_tuning.py --use_descriptions --finetune out/stage2/best_checkpoint.pth ...
    python fine_tuning.py --eval --finetune out/stage3/best_checkpoint.pth ...
"""
import argparse
import logging
import time
from pathlib import Path

import deepspeed
import torch
from torch.utils.data import DataLoader, DistributedSampler

import config
import utils
from datasets import make_dataset
from models import Uni_Sign
from uni_sign_ext import resume, run_log, tasks
from uni_sign_ext.checkpoint import (checkpoint_record, load_fusion_checkpoint, load_model_state,
                                     read_state_dict)
from uni_sign_ext.atomic_io import atomic_torch_save, check_writable_dir
from uni_sign_ext.bleurt_metric import Bleurt, wanted as bleurt_wanted
from uni_sign_ext.cli import check_description_args, check_run_args
from uni_sign_ext.deepspeed_setup import build_optimizer, cosine_schedule, deepspeed_config, sync_batchnorm
from uni_sign_ext.distributed_eval import ShardedBatchSampler, broadcast_buffers, gather_ordered, union_over_ranks
from uni_sign_ext.fusion import GateStats, format_gate, withhold_descriptions
from uni_sign_ext.guards import (check_numeric_flags, exit_on_user_error, loss_is_usable,
                                 refuse_nonfinite_model)
from uni_sign_ext.results import write_metrics
from uni_sign_ext.rgb_weights import backbone_weights_source, load_backbone_weights

logger = logging.getLogger("fine_tuning")
PRINT_EVERY = 10
PROBLEMS_SHOWN = 5
GENERATE_MAX_NEW_TOKENS = 100
GENERATE_NUM_BEAMS = 4


def log(message, *fmt):
    if utils.is_main_process():
        print(message % fmt if fmt else message, flush=True)


def build_loader(args, phase):
    """Training: shuffled, split over ranks. Evaluation: each rank gets its share of the batches."""
    label_paths = {"train": config.train_label_paths, "dev": config.dev_label_paths,
                   "test": config.test_label_paths}[phase]
    dataset = make_dataset(label_paths[args.dataset], args, phase)
    common = dict(num_workers=args.num_workers, collate_fn=dataset.collate_fn,
                  pin_memory=args.pin_mem and torch.cuda.is_available())
    if phase != "train":
        # Under ZeRO-3 every rank must run every forward pass (the weights are gathered collectively).
        shards = 1 if args.zero_stage == 3 else args.world_size
        return DataLoader(dataset, batch_sampler=ShardedBatchSampler(len(dataset), args.batch_size, args.rank,
                                                                     shards), **common)
    # As upstream: training shuffles with a DistributedSampler (its own seed, 0) on any number of
    # ranks and keeps full batches only.
    return DataLoader(dataset, batch_size=args.batch_size, sampler=DistributedSampler(dataset, shuffle=True),
                      drop_last=True, **common)


def epoch_steps(loader, args):
    """Training steps (batches) per epoch: the loader's, or at most --quick_break of them."""
    return min(len(loader), args.quick_break) if args.quick_break else len(loader)


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


def build_model(args, finetune_state=None, backbone_weights=None):
    """Uni_Sign with the weights the flags name (RGB backbone, --finetune, --fusion_checkpoint), as upstream
    trains it: SyncBatchNorm over several CUDA ranks, and on CPU in the run's dtype."""
    model = Uni_Sign(args)
    if backbone_weights:
        load_backbone_weights(model.rgb_support_backbone, backbone_weights)
        log("RGB backbone weights from %s", backbone_weights)
    if args.finetune:
        load_model_state(model, finetune_state, args.finetune)
        log("loaded %s", args.finetune)
    if args.fusion_checkpoint:
        load_fusion_checkpoint(model, args.fusion_checkpoint)
    model = sync_batchnorm(model, args)
    match_cpu_dtype(model, args)
    return model


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
    """Samples skipped for bad pose files, malformed description files, and warnings about usable samples
    (NaN keypoints, descriptions beyond the clip, empty targets…), each counted once however many ranks
    (or replacement chains, or padded repeats of the sampler) met it."""

    def __init__(self):
        self.skipped, self.descriptions, self.warnings = {}, {}, {}

    def add(self, src_input):
        self.skipped.update((sample.name, sample) for sample in src_input["skipped"])
        self.descriptions.update(src_input.get("desc_problems", []))
        self.warnings.update(((w.name, w.reason), w) for w in src_input.get("warnings", []))

    def report(self, what):
        """Log the totals over all ranks (and this rank's first cases); returns the three totals."""
        totals = [len(union_over_ranks(found)) for found in (self.skipped, self.descriptions, self.warnings)]
        for sample in list(self.skipped.values())[:PROBLEMS_SHOWN]:
            logger.warning("skipped %s: %s (%s)", sample.name, sample.path, sample.reason)
        for path, reason in list(self.descriptions.items())[:PROBLEMS_SHOWN]:
            logger.warning("malformed description file %s: %s (used as 'no descriptions')", path, reason)
        for warning in list(self.warnings.values())[:PROBLEMS_SHOWN]:
            logger.warning("sample %s: %s", warning.name, warning.reason)
        if any(totals):
            log("%s: %d samples skipped for unusable pose files, %d malformed description files, "
                "%d warnings about usable samples", what, *totals)
        return tuple(totals)


def train_one_epoch(engine, loader, epoch, args, provider):
    """One epoch (at most --quick_break steps); returns upstream's training stats (mean loss and lr over
    steps), the skip count and the steps taken."""
    engine.train()
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    problems, losses, lrs, start, nonfinite, done = ProblemLog(), [], [], time.time(), 0, 0
    steps = epoch_steps(loader, args)
    for step, (src_input, tgt_input) in enumerate(loader):
        problems.add(src_input)
        done += 1
        out = engine(prepare_batch(src_input, args, provider), tasks.use_task_targets(tgt_input, args.task))
        if not loss_is_usable(out["loss"], src_input["name_batch"], epoch, step, args):
            nonfinite += 1
            continue
        engine.backward(out["loss"])
        engine.step()
        losses.append(out["loss"].item())
        lrs.append(engine.get_lr()[0])
        if (step + 1) % PRINT_EVERY == 0 or step + 1 == steps:
            log("epoch %d [%d/%d] loss %.4f lr %.2e %.1fs", epoch, step + 1, steps,
                sum(losses[-PRINT_EVERY:]) / len(losses[-PRINT_EVERY:]),
                engine.get_lr()[0], time.time() - start)
        if step + 1 >= steps:
            break
    skipped, _, _ = problems.report(f"epoch {epoch}")
    if nonfinite:
        log("epoch %d: %d steps skipped for a NaN/inf loss (--nonfinite_loss skip)", epoch, nonfinite)
    return {"loss": sum(losses) / max(1, len(losses)), "lr": sum(lrs) / max(1, len(lrs)),
            "skipped_pose_files": skipped, "steps": done}


@torch.no_grad()
def evaluate(engine, loader, args, phase, provider, withhold=False, bleurt=None):
    """Generate a split's texts, each rank its share of the batches; returns metrics (upstream's for the
    task, the mean loss, the skip count and, with descriptions, the mean gates), the same on every rank
    (BLEURT, when scored, on rank 0 only).

    Runs under a fixed seed without disturbing the training streams (creating a loader draws from them).
    """
    with utils.seeded(args.seed):
        return _evaluate(engine, loader, args, phase, provider, withhold, bleurt)


def _evaluate(engine, loader, args, phase, provider, withhold, bleurt):
    engine.eval()
    model = engine.module
    broadcast_buffers(model)
    synced = args.zero_stage == 3 and args.world_size > 1
    sampler = loader.batch_sampler
    batches, problems, gates = {}, ProblemLog(), GateStats()
    for step, (src_input, tgt_input) in enumerate(loader):
        problems.add(src_input)
        if not src_input["name_batch"]:
            continue
        src_input = prepare_batch(src_input, args, provider)
        if withhold:
            src_input = withhold_descriptions(src_input)
        tgt_input = tasks.use_task_targets(tgt_input, args.task)
        out = engine(src_input, tgt_input)
        if "gate" in out:
            gates.add(out, src_input["attention_mask"])
        tokens = model.generate(out, max_new_tokens=GENERATE_MAX_NEW_TOKENS,
                                num_beams=GENERATE_NUM_BEAMS, synced_gpus=synced)
        batches[sampler.global_index(step)] = (
            src_input["name_batch"], model.mt5_tokenizer.batch_decode(tokens, skip_special_tokens=True),
            tgt_input["gt_sentence"], out["loss"].item())
    # The withheld pass meets the same samples: their problems were reported by the normal pass.
    skipped = None if withhold else problems.report(f"{phase} evaluation")[0]
    batches = gather_ordered(batches)
    names, predictions, references = ([x for batch in batches for x in batch[i]] for i in range(3))
    if not names:
        raise SystemExit(f"no usable {phase} samples to evaluate (see the skips reported above)")
    metrics = tasks.score(args.task, args.dataset, references, predictions)
    metrics.update(loss=sum(batch[3] for batch in batches) / len(batches), skipped_pose_files=skipped)
    if bleurt is not None and utils.is_main_process():
        metrics["bleurt"] = bleurt.mean_score(references, predictions)
    if provider is not None:
        metrics.update(gates.means(sharded=sampler.shards > 1))
    if utils.is_main_process() and args.output_dir and not withhold:
        write_predictions(Path(args.output_dir), phase, names, predictions, references)
    return metrics


def write_predictions(output_dir, phase, names, predictions, references):
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / f"{phase}_tmp_pres.txt", "w", encoding="utf-8") as f:
        f.writelines(f"sample: {n}, prediction: {p}\n" for n, p in zip(names, predictions))
    with open(output_dir / f"{phase}_tmp_refs.txt", "w", encoding="utf-8") as f:
        f.writelines(f"sample: {n}, ground-truth: {r}\n" for n, r in zip(names, references))


def format_metrics(metrics, task="SLT"):
    text = tasks.format_scores(task, metrics)
    if metrics.get("bleurt") is not None:
        text += f" BLEURT {metrics['bleurt']:.4f}"
    if "gate_described" in metrics:
        text += (f" | mean gate: described {format_gate(metrics['gate_described'])}, "
                 f"undescribed {format_gate(metrics['gate_undescribed'])}")
    return text


def evaluate_and_report(engine, loader, args, phase, provider, ablation, bleurt=None):
    """Metrics of a split (with `bleurt`, also its BLEURT); with descriptions and `ablation`, also those with
    descriptions withheld (keys prefixed `withheld_`): beam search runs twice, so epochs skip it unless asked."""
    start = time.time()
    metrics = evaluate(engine, loader, args, phase, provider, bleurt=bleurt)
    metrics["seconds"] = time.time() - start
    log("[%s] %s (%.1fs)", phase, format_metrics(metrics, args.task), metrics["seconds"])
    if provider is not None:
        if ablation:
            withheld = evaluate(engine, loader, args, phase, provider, withhold=True)
            log("[%s, descriptions withheld] %s", phase, format_metrics(withheld, args.task))
            metrics.update((f"withheld_{k}", v) for k, v in withheld.items()
                           if k not in ("seconds", "skipped_pose_files"))
        if utils.is_main_process():
            provider.save()  # new texts' features are kept for the next epoch and the next run
    if utils.is_main_process():
        write_metrics(args.output_dir, phase, metrics)
    return metrics


def save_checkpoint(engine, args, path, epoch):
    """{'model': state_dict, 'args', 'epoch'} written once, by rank 0 (ZeRO-3 gathers the weights on
    every rank first)."""
    if args.zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict()
    if utils.is_main_process():
        refuse_nonfinite_model(state, path, args.output_dir)
        atomic_torch_save(checkpoint_record(state, args, epoch), path)
        log("saved %s", path)


def main(args):
    utils.check_supported(args)
    check_description_args(args)
    check_run_args(args)
    check_numeric_flags(args)
    finetune_state = read_state_dict(args.finetune) if args.finetune else None
    backbone_weights = backbone_weights_source(args, finetune_state)  # before any work: never a random backbone
    if args.sched != "cosine":
        raise SystemExit(f"--sched {args.sched} is not supported in this fork; use --sched cosine.")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    utils.init_distributed_mode(args)
    utils.set_seed(args.seed)  # the same seed on every rank, as upstream
    if args.output_dir:
        check_writable_dir(args.output_dir, "--output_dir")
    if args.use_descriptions and args.feature_cache_dir:
        check_writable_dir(args.feature_cache_dir, "--feature_cache_dir")

    train_loader = None if args.eval else build_loader(args, "train")
    if train_loader is not None and len(train_loader) == 0:
        raise SystemExit(f"{len(train_loader.dataset)} training samples over {args.world_size} rank(s) fill no "
                         f"batch of --batch-size {args.batch_size} (partial batches are dropped): lower --batch-size.")
    dev_loader = build_loader(args, "dev")
    test_loader = build_loader(args, "test")
    model = build_model(args, finetune_state, backbone_weights)
    del finetune_state
    provider = text_feature_provider(args) if args.use_descriptions else None
    optimizer = build_optimizer(model, args)
    schedule = cosine_schedule(optimizer, args, epoch_steps(train_loader, args) if train_loader else 0)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=deepspeed_config(args),
                                           lr_scheduler=schedule)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log("model: %.2fM trainable parameters; ZeRO-%d, %s, %d rank(s)", n_trainable / 1e6,
        args.zero_stage, args.dtype, args.world_size)

    if args.eval:
        bleurt = Bleurt(args.bleurt_checkpoint) if bleurt_wanted(args) and utils.is_main_process() else None
        if args.dataset != "How2Sign" and args.task != "ISLR":  # upstream's --eval skips these dev splits
            evaluate_and_report(engine, dev_loader, args, "dev", provider, ablation=True, bleurt=bleurt)
        evaluate_and_report(engine, test_loader, args, "test", provider, ablation=True, bleurt=bleurt)
        return

    task = tasks.TASKS[args.task]
    start_epoch, best_score, best_epoch = resume_point(engine, args)
    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        train = train_one_epoch(engine, train_loader, epoch, args, provider)
        log("epoch %d: mean training loss %.4f", epoch, train["loss"])
        if args.output_dir:
            save_checkpoint(engine, args, Path(args.output_dir) / f"checkpoint_{epoch}.pth", epoch)
        dev = evaluate_and_report(engine, dev_loader, args, "dev", provider, ablation=args.ablation_every_epoch)
        if task.improves(dev[task.best_key], best_score):
            best_score, best_epoch = dev[task.best_key], epoch
            if args.output_dir:
                save_checkpoint(engine, args, Path(args.output_dir) / "best_checkpoint.pth", epoch)
        if args.output_dir:
            if utils.is_main_process():
                dev_seconds = dev.pop("seconds")
                run_log.append(args.output_dir, run_log.epoch_record(
                    epoch, train, dev, n_trainable, dev_seconds=dev_seconds, seconds=time.time() - started))
                run_log.plot_run(args.output_dir)
            resume.save(engine, args.output_dir, epoch, best_score, best_epoch)
    final_test(engine, test_loader, args, provider, best_epoch)


def final_test(engine, loader, args, provider, best_epoch):
    """Test the best-dev weights (what best_checkpoint.pth and its --eval give) as split "test"; when a
    later epoch's weights are loaded, test those first as "test_last_epoch" (without the ablation), so both
    are printed, labelled."""
    last = args.epochs - 1
    best = Path(args.output_dir) / "best_checkpoint.pth" if args.output_dir else None
    if best is None or not best.is_file() or best_epoch in (None, last):
        if best_epoch == last:
            why = "the best dev epoch"
        elif args.output_dir:
            why = "no epoch was trained"
        else:
            why = "without --output_dir no best_checkpoint.pth is kept"
        log("final test on the last epoch's weights (%s)", why)
        return evaluate_and_report(engine, loader, args, "test", provider, ablation=True)
    log("final test on the last epoch's (%d) weights, reported as [test_last_epoch]", last)
    evaluate_and_report(engine, loader, args, "test_last_epoch", provider, ablation=False)
    log("final test on the best dev epoch's (%d) weights, reported as [test]", best_epoch)
    load_engine_weights(engine, args, best)
    return evaluate_and_report(engine, loader, args, "test", provider, ablation=True)


def load_engine_weights(engine, args, path):
    """Put a {'model': state_dict} file's weights into the trained engine (every rank reads the file;
    under ZeRO-3 the partitioned parameters are gathered, set on rank 0 and partitioned again)."""
    state = read_state_dict(str(path))
    model = engine.module
    if args.zero_stage == 3:
        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0):
            if utils.is_main_process():
                model.load_state_dict(state)
    else:
        model.load_state_dict(state)


def resume_point(engine, args):
    """(first epoch to train, best dev score so far (the task's: BLEU-4, accuracy, WER), its epoch): where
    --resume picks the run up."""
    task = tasks.TASKS[args.task]
    if not args.resume:
        return 0, task.no_score_yet, None
    resumed = resume.load(engine, args.output_dir)
    if resumed is None:
        log("--resume: %s holds no checkpoint yet; starting from epoch 0", args.output_dir)
        return 0, task.no_score_yet, None
    start_epoch, best_score, _ = resumed
    log("--resume: continuing %s at epoch %d (best dev %s so far %.2f)", args.output_dir, start_epoch,
        task.best_name, best_score)
    if utils.is_main_process():
        run_log.keep_epochs_before(args.output_dir, resumed[0])
    return resumed


if __name__ == "__main__":
    parser = argparse.ArgumentParser("Uni-Sign fine-tuning", parents=[utils.get_args_parser()])
    with exit_on_user_error():
        main(parser.parse_args())
    utils.leave_distributed()
