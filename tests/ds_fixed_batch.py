"""Launched by tests under `deepspeed`: train K steps on one fixed batch and record what happened.

Takes fine_tuning.py's flags plus --steps and --result (a JSON file written by rank 0).
"""
import argparse
import json
import sys
from pathlib import Path

import deepspeed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fine_tuning  # noqa: E402
import utils  # noqa: E402
from models import Uni_Sign  # noqa: E402
from uni_sign_ext.deepspeed_setup import build_optimizer, deepspeed_config  # noqa: E402


def main():
    parser = argparse.ArgumentParser(parents=[utils.get_args_parser()])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    utils.init_distributed_mode(args)
    utils.set_seed(args.seed)
    src_input, tgt_input = next(iter(fine_tuning.build_loader(args, "train")))
    model = Uni_Sign(args)
    provider = fine_tuning.text_feature_provider(args) if args.use_descriptions else None
    fine_tuning.match_cpu_dtype(model, args)
    optimizer = build_optimizer(model, args)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=deepspeed_config(args))
    batch = fine_tuning.prepare_batch(src_input, args, provider)
    losses, gates = [], []
    for _ in range(args.steps):
        out = engine(dict(batch), tgt_input)
        engine.backward(out["loss"])
        engine.step()
        losses.append(out["loss"].item())
        if "gate" in out:
            gates.append(out["gate"].float().mean().item())
    encoder = getattr(provider, "encoder", None)
    result = {
        "losses": losses,
        "gates": gates,
        "optimizer_is_model_trainables": optimized == trainable,
        "state_dict_has_encoder": any("text_encoder" in k for k in model.state_dict()),
        "encoder_loaded": bool(provider is not None and provider.encoder_loaded),
        "encoder_requires_grad": any(p.requires_grad for p in encoder.model.parameters()) if encoder else False,
        "encoder_grads": any(p.grad is not None for p in encoder.model.parameters()) if encoder else False,
        "world_size": args.world_size,
    }
    if utils.is_main_process():
        Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
