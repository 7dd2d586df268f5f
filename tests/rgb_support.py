"""A synthetic RGB support dict in the collated layout the model consumes (spec §6-§7), and a pose batch.

Per hand (left first): `{hand}_sampled_indices` (N,) int64 sorted positions per sample, [-1] for an absent
hand; `{hand}_skeletons_norm` (N, 21, 2) in [0, 1]; `{hand}_hands` (N, 3, 112, 112) float32;
`{hand}_rgb_len` a Python list of per-sample counts (1 for an absent hand). N = sum(rgb_len).
"""
import torch

NODES = {"body": 9, "left": 21, "right": 21, "face_all": 18}
CROP = 112


def pose_batch(batch=3, frames=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = {part: torch.rand(batch, frames, v, 3, generator=g) * 2 - 1 for part, v in NODES.items()}
    src["attention_mask"] = torch.ones(batch, frames, dtype=torch.long)
    src["attention_mask"][batch - 1, frames - 3:] = 0
    sentences = ["你们好！", "我们在这里。", "今天星期五。", "好的。"]
    return src, {"gt_sentence": sentences[:batch], "gt_gloss": [""] * batch}


def support(batch=3, frames=10, seed=0, absent=(("right", 1), ("left", 2)), skeleton_dtype=torch.float32):
    """Every hand present with 1-3 sampled frames, except the (hand, sample) pairs in `absent`."""
    g = torch.Generator().manual_seed(1000 + seed)
    out = {}
    for hand in ("left", "right"):
        indices, skeletons, crops, lengths = [], [], [], []
        for b in range(batch):
            valid = frames - 3 if b == batch - 1 else frames
            if (hand, b) in absent:
                indices.append(torch.tensor([-1]))
                skeletons.append(torch.zeros(1, 21, 2))
                crops.append(torch.zeros(1, 3, CROP, CROP))
                lengths.append(1)
                continue
            k = 1 + int(torch.randint(3, (1,), generator=g))
            indices.append(torch.randperm(valid, generator=g)[:k].sort().values)
            skeletons.append(torch.rand(k, 21, 2, generator=g, dtype=torch.float64).to(skeleton_dtype))
            crops.append(torch.randn(k, 3, CROP, CROP, generator=g))
            lengths.append(k)
        out[f"{hand}_sampled_indices"] = torch.cat(indices)
        out[f"{hand}_skeletons_norm"] = torch.cat(skeletons)
        out[f"{hand}_hands"] = torch.cat(crops)
        out[f"{hand}_rgb_len"] = lengths
    return out


def rgb_batch(batch=3, frames=10, seed=0, **kwargs):
    src, tgt = pose_batch(batch, frames, seed)
    src.update(support(batch, frames, seed, **kwargs))
    return src, tgt


def open_gate(model, seed=0):
    """Random (non-zero) gate weights, so the RGB branch acts, as it does from a trained checkpoint."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.fusion_gate.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        model.fusion_gate[2].bias.fill_(0.5)


def calibrate_batchnorm(backbone, seed=0, batch=8):
    """Running statistics measured on random crops (cumulative average over one train-mode pass), and
    non-trivial BN affines: a fresh backbone in eval mode (running mean 0, var 1) shrinks its output to
    ~1e-13, which would make every comparison of RGB features vacuous."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            m.reset_running_stats()
            m.momentum = None
        was_training = backbone.training
        backbone.train()
        state = torch.get_rng_state()
        backbone(torch.randn(batch, 3, CROP, CROP, generator=g))
        torch.set_rng_state(state)
        backbone.train(was_training)
        for m in bns:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
