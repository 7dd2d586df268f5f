"""Command-line flags and distributed helpers, with upstream Uni-Sign's flag names and defaults."""
import argparse
import os
import random
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import config
from uni_sign_ext.bleurt_metric import add_bleurt_args
from uni_sign_ext.cli import add_description_args, add_run_args
from uni_sign_ext.guards import add_guard_args

DATASETS = ["CSL_News", "CSL_Daily", "WLASL", "How2Sign", "OpenASL"]
TASKS = ["SLT", "ISLR", "CSLR"]


def get_args_parser():
    parser = argparse.ArgumentParser("Uni-Sign scripts", add_help=False)
    parser.add_argument("--batch-size", default=16, type=int)
    parser.add_argument("--gradient-accumulation-steps", default=8, type=int)
    parser.add_argument("--gradient-clipping", default=1.0, type=float)
    parser.add_argument("--epochs", default=20, type=int)
    parser.add_argument("--world_size", default=1, type=int)
    parser.add_argument("--dist_url", default="env://")
    parser.add_argument("--local_rank", "--local-rank", default=0, type=int)
    parser.add_argument("--hidden_dim", default=256, type=int)
    parser.add_argument("--finetune", default="", help="checkpoint {'model': state_dict} to start from")
    parser.add_argument("--opt", default="adamw", type=str)
    parser.add_argument("--opt-eps", default=1.0e-09, type=float)
    parser.add_argument("--opt-betas", default=None, type=float, nargs="+")
    parser.add_argument("--clip-grad", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0001)
    parser.add_argument("--sched", default="cosine", type=str)
    parser.add_argument("--lr", type=float, default=1.0e-3)
    parser.add_argument("--min-lr", type=float, default=1.0e-08)
    parser.add_argument("--warmup-epochs", type=float, default=0)
    parser.add_argument("--output_dir", default="")
    parser.add_argument("--seed", default=42, type=int)
    parser.add_argument("--eval", action="store_true")
    parser.add_argument("--num_workers", default=8, type=int)
    parser.add_argument("--pin-mem", action="store_true")
    parser.add_argument("--no-pin-mem", action="store_false", dest="pin_mem")
    parser.set_defaults(pin_mem=True)
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--dtype", default="bf16", type=str, choices=["fp16", "bf16", "fp32"])  # fp32: new, for CPUs
    parser.add_argument("--zero_stage", default=2, type=int)
    parser.add_argument("--compute_fp32_loss", action="store_true")
    parser.add_argument("--quick_break", default=0, type=int,
                        help="stop each training epoch after this many steps (0: never)")
    parser.add_argument("--rgb_support", action="store_true")
    # New: EfficientNet-B0 ImageNet weights for --rgb_support without --finetune (nothing is downloaded).
    parser.add_argument("--rgb_backbone_weights", default="", type=str,
                        help="EfficientNet-B0 weights file for the RGB backbone (torchvision's "
                             "efficientnet_b0_rwightman-7f5810bc.pth); default: the --finetune checkpoint's, "
                             "else torchvision's cache file, else the run stops")
    parser.add_argument("--max_length", default=256, type=int)
    parser.add_argument("--dataset", default="CSL_Daily", choices=DATASETS)
    parser.add_argument("--task", default="SLT", choices=TASKS)
    parser.add_argument("--label_smoothing", default=0.2, type=float)
    parser.add_argument("--online_video", default="", type=str)
    # New: where the translation mT5 (and its tokenizer) is loaded from.
    parser.add_argument("--mt5_path", default=config.mt5_path,
                        help="Hugging Face mT5 folder (config, weights, spiece.model)")
    add_bleurt_args(parser)
    add_description_args(parser, config.description_root, config.feature_cache_dir)
    add_run_args(parser)
    add_guard_args(parser)
    return parser


def check_supported(args):
    """Flags that parse for compatibility but whose code paths this fork has not written yet."""
    if args.online_video:
        raise SystemExit("--online_video is not supported yet in this fork; drop the flag.")
    if args.zero_stage not in (0, 1, 2, 3):
        raise SystemExit(f"--zero_stage {args.zero_stage} does not exist; use 0, 1, 2 or 3 (default 2).")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def init_distributed_mode(args):
    """Join the process group the launcher (deepspeed/torchrun) set up; a plain `python` run is rank 0 of 1."""
    import deepspeed

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT") or _free_port())
    args.rank = int(os.environ["RANK"])
    args.world_size = int(os.environ["WORLD_SIZE"])
    args.local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank))
    args.distributed = args.world_size > 1
    if torch.cuda.is_available():
        torch.cuda.set_device(args.local_rank)
        args.device = torch.device("cuda", args.local_rank)
        backend = "nccl"
    else:
        args.device = torch.device("cpu")
        backend = "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    if backend == "gloo":
        _unlink_deepspeed_shm_buffer(args.rank)


def deepspeed_shm_buffer(rank, master_addr, master_port):
    """The /dev/shm file DeepSpeed's CPU backend creates for `rank` (named in its shm.cpp)."""
    return Path("/dev/shm") / f"deepspeed_allreduce_buffer_{os.getuid()}_{master_addr}_{master_port}_{rank}"


def _unlink_deepspeed_shm_buffer(rank):
    """DeepSpeed's CPU backend gives each launched rank a 66 MB shared-memory buffer and never unlinks it: every
    run leaked 66 MB of RAM per rank in /dev/shm, until a test suite's training runs were killed for memory.
    init_distributed returns once this rank has mapped all its peers' buffers, so after a barrier the names can
    go; the mappings live on until the process exits."""
    dist.barrier()
    deepspeed_shm_buffer(rank, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]).unlink(missing_ok=True)


def leave_distributed():
    """After a finished run: wait for every rank, then close the process group (left open, gloo's
    threads can abort the interpreter's exit: "terminate called without an active exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def seeded(seed):
    """Run a block under a fixed seed, then restore the random streams the caller had."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    set_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
