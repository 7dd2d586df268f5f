"""Pose-guided fusion (PGF) of hand-crop features into one hand's spatial ST-GCN features (spec §9.3).

For every sample whose hand has crops, the sampled frames' node features are replaced by
g·DA(nodes, crops, node positions) + (1 − g)·nodes, with g = fusion_gate(...) ∈ [0, 1) per (frame, node).
The gate ends in Tanh → ReLU and both of its convs start at zero (upstream's init), so a fresh gate is
exactly 0 and, ReLU'(0) being 0, no gradient ever reaches the gate, the deformable attention, `rgb_proj`
or the backbone from that init: the RGB branch acts only through a checkpoint whose gate is not zero.
"""
import contextlib

import torch
from torch import nn

# The support dict's keys per hand (data side: spec §6-§7), all concatenated over the batch.
HANDS = ("left", "right")
ABSENT_INDEX = -1


def support_keys(hand):
    """{hand}_hands (N, 3, 112, 112) crops, {hand}_sampled_indices (N,) frame positions (−1: no crop),
    {hand}_skeletons_norm (N, 21, 2) node positions in the crop, {hand}_rgb_len list of per-sample counts."""
    return (f"{hand}_hands", f"{hand}_sampled_indices", f"{hand}_skeletons_norm", f"{hand}_rgb_len")


def fusion_gate(hidden_dim, zero_init=True):
    """Conv1d(2C → C) → GELU → Conv1d(C → 1) → Tanh → ReLU; both convs zeroed as upstream."""
    gate = nn.Sequential(nn.Conv1d(hidden_dim * 2, hidden_dim, 1), nn.GELU(), nn.Conv1d(hidden_dim, 1, 1),
                         nn.Tanh(), nn.ReLU())
    if zero_init:
        for layer in gate:
            if isinstance(layer, nn.Conv1d):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
    return gate


def fp32_autocast():
    """Upstream runs the deformable attention under CUDA autocast with fast dtype float32 (bf16 inputs
    and weights go up to fp32 inside it); on CPU it changes nothing."""
    if torch.cuda.is_available():
        return torch.autocast("cuda", dtype=torch.float32)
    return contextlib.nullcontext()


def fuse_hand(gcn_feat, crop_feat, indices, rgb_len, skeletons, rgb_proj, attention, gate):
    """gcn_feat (B, C, T, V) one hand's spatial features; crop_feat (N, 1280, 4, 4) backbone output;
    indices (N,), skeletons (N, V, 2), rgb_len B counts summing to N → gcn_feat with the sampled frames
    of each sample replaced by their gated fusion (a sample with the single index −1 is left alone)."""
    batch = gcn_feat.shape[0]
    if crop_feat.shape[0] != indices.shape[0]:
        raise ValueError(f"{crop_feat.shape[0]} crops but {indices.shape[0]} sampled indices")
    if len(rgb_len) != batch:
        raise ValueError(f"rgb_len has {len(rgb_len)} entries for a batch of {batch}")
    crop_feat = rgb_proj(crop_feat)
    if skeletons.dtype == torch.float64:
        # the data side's dtype; upstream raises on it unless fine_tuning.py has cast the batch to the
        # model's dtype: we cast it so here (float32 in an fp32 run)
        skeletons = skeletons.to(attention.pe_layer.positional_encoding_gaussian_matrix.dtype)
    start = 0
    for b, count in enumerate(int(n) for n in rgb_len):
        stop = start + count
        index = indices[start:stop].to(torch.long)
        if count == 1 and bool((index == ABSENT_INDEX).any()):
            start = stop
            continue
        nodes = gcn_feat[b][:, index].transpose(0, 1)                   # (t, C, V)
        points = skeletons[start:stop].transpose(1, 2)                  # (t, 2, V)
        with fp32_autocast():
            fused = attention(pose_feat=nodes, rgb_feat=crop_feat[start:stop], pose_init=points)
        fused = fused.to(gcn_feat.dtype)
        g = gate(torch.cat([fused, nodes], dim=1))                      # (t, 1, V)
        mixed = g * fused + (1 - g) * nodes
        gcn_feat = gcn_feat.clone()
        gcn_feat[b, :, index] = mixed.transpose(0, 1)
        start = stop
    if start != crop_feat.shape[0]:
        raise ValueError(f"rgb_len sums to {start}, but there are {crop_feat.shape[0]} crops")
    return gcn_feat
