"""DeepSpeed config, optimizer and learning-rate schedule from upstream's flags."""
import torch


def deepspeed_config(args):
    zero = {"stage": args.zero_stage}
    if args.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if args.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": args.batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "gradient_clipping": args.gradient_clipping,
        "zero_optimization": zero,
        "zero_force_ds_cpu_optimizer": False,  # we bring torch's AdamW, which runs on any device
        "bf16": {"enabled": args.dtype == "bf16"},
        "fp16": {"enabled": args.dtype == "fp16", "loss_scale_window": 100},  # upstream's loss scaling
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }


def build_optimizer(model, args):
    """AdamW over trainable parameters; no weight decay on biases, norms and other 1-d tensors."""
    if args.opt.lower() != "adamw":
        raise SystemExit(f"--opt {args.opt} is not supported in this fork; use --opt adamw.")
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    betas = tuple(args.opt_betas) if args.opt_betas else (0.9, 0.999)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, eps=args.opt_eps, betas=betas)


def cosine_schedule(optimizer, args, batches_per_epoch):
    """Upstream's schedule: transformers' cosine with linear warm-up over int(epochs × batches /
    accumulation) optimizer steps, decaying to 0 (upstream parses --min-lr but never uses it)."""
    from transformers import get_scheduler

    steps_per_epoch = batches_per_epoch / args.gradient_accumulation_steps
    return get_scheduler("cosine", optimizer, num_warmup_steps=int(args.warmup_epochs * steps_per_epoch),
                         num_training_steps=int(args.epochs * steps_per_epoch))


def wants_sync_batchnorm(args):
    """Upstream converts BatchNorm to SyncBatchNorm when several ranks train, so the statistics span the
    global batch. torch has SyncBatchNorm kernels for CUDA only: CPU (gloo) runs keep BatchNorm."""
    return args.distributed and args.device.type == "cuda"


def sync_batchnorm(model, args):
    """The model with SyncBatchNorm where upstream would use it (same parameters, buffers and keys)."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if wants_sync_batchnorm(args) else model
