"""Learned fusion of description features into the pose features; why this form, below.

    fused = pose + gate · rms(pose) · bounded(proj(LN(text))),   per frame,
    gate  = σ(B · tanh(MLP([LN(pose), LN(text), has_description]) / B))

Why this form (each piece answers a measured failure of pose + σ(MLP([pose, proj(text), has]))·proj(text),
issue 8; the informative mini-world and bench/fusion_study.py measure the result):
- The gate reads *normalised* pose and text. Raw pose features have a norm near 100 per frame, so an
  MLP on them ran to logits of ±22 within a few steps: σ′ ≈ 3e-10, below Adam's eps; it never moved again.
- The gate logit is bounded (±GATE_LOGIT_BOUND through tanh), so even a runaway MLP (raw logit ±25) leaves
  gradients of ~1e-6, which Adam rescales: the gate can open fully where text decides the output (≈ 0.997 on
  described frames of the informative world) and still learn back; it cannot lock open or shut.
- The text is added on the pose's scale (the frame's pose rms, not learned), so a projected text of
  unit size moves the fused features as much as the pose itself, whatever the pose encoder's scale.
  Before, proj(text) was ~1.5 % of the pose and withholding it changed nothing.
- proj starts at zero: a fresh fusion is an exact identity for any gate value, so an upstream
  checkpoint gives the same outputs at step 0; proj gets gradient through the gate from step 1.
- bounded(p) = p / sqrt(1 + mean(p²)) caps the projected text at unit rms. gate · proj is otherwise
  scale-symmetric (g·p = (g/c)·(c·p)), and the gate's value would say nothing about how much text is
  used; with the cap, using more text than rms(pose) · bounded(p) means opening the gate.
"""
import math

import torch
from torch import nn

GATE_LOGIT_INIT = -2.0  # the gate starts at σ(−2) ≈ 0.12 on every frame
GATE_LOGIT_BOUND = 6.0
GATE_HIDDEN = 512
CROSS_ATTN_HEADS = 8


def rms(x):
    return x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()


def bounded(x):
    """x for small x, rms ≤ 1 for large: x / sqrt(1 + mean(x²))."""
    return x * torch.rsqrt(1 + x.pow(2).mean(-1, keepdim=True))


class LearnableMaskEmbedding(nn.Module):
    """The text feature used where a frame has no description (or its text was dropped)."""

    def __init__(self, hidden_dim=768):
        super().__init__()
        self.mask = nn.Parameter(torch.randn(1, hidden_dim) * 0.01)

    def forward(self):
        return self.mask


class GatingFusion(nn.Module):
    """Per-frame gated residual on the pose's scale: returns (fused (B,T,F), gate (B,T,1))."""

    def __init__(self, feature_dim=768, text_dim=768):
        super().__init__()
        self.pose_norm = nn.LayerNorm(feature_dim)
        self.text_norm = nn.LayerNorm(text_dim)
        self.text_proj = nn.Linear(text_dim, feature_dim)
        self.gate_mlp = nn.Sequential(nn.Linear(feature_dim + text_dim + 1, GATE_HIDDEN), nn.GELU(),
                                      nn.Linear(GATE_HIDDEN, 1))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.zeros_(self.text_proj.weight)
        nn.init.zeros_(self.text_proj.bias)
        nn.init.xavier_uniform_(self.gate_mlp[0].weight)
        nn.init.zeros_(self.gate_mlp[0].bias)
        nn.init.zeros_(self.gate_mlp[2].weight)
        nn.init.constant_(self.gate_mlp[2].bias, GATE_LOGIT_BOUND * math.atanh(GATE_LOGIT_INIT / GATE_LOGIT_BOUND))

    def forward(self, pose_feat, text_feat, has_description):
        text = self.text_norm(text_feat)
        gate_in = torch.cat([self.pose_norm(pose_feat), text, has_description.unsqueeze(-1).to(pose_feat.dtype)],
                            dim=-1)
        gate = torch.sigmoid(GATE_LOGIT_BOUND * torch.tanh(self.gate_mlp(gate_in) / GATE_LOGIT_BOUND))
        return pose_feat + gate * rms(pose_feat).detach() * bounded(self.text_proj(text)), gate


class CrossAttentionContext(nn.Module):
    """Each frame attends over its video's description features (and the mask embedding).

    Queries and keys are layer-normalised for the same reason as the gate's inputs: the raw pose
    scale would otherwise make the attention one-hot from the first steps.
    """

    def __init__(self, feature_dim=768, text_dim=768):
        super().__init__()
        self.query_norm = nn.LayerNorm(feature_dim)
        self.key_norm = nn.LayerNorm(text_dim)
        self.attn = nn.MultiheadAttention(feature_dim, CROSS_ATTN_HEADS, kdim=text_dim, vdim=text_dim,
                                          batch_first=True)

    def forward(self, pose_feat, text_table, video_texts):
        """text_table: (U+1, D) with the mask embedding last; video_texts: (B, U_max) indices, -1 = pad."""
        mask_row = text_table.shape[0] - 1
        keys_idx = torch.cat([video_texts, torch.full_like(video_texts[:, :1], -1)], dim=1)
        keys_idx = torch.where(keys_idx < 0, mask_row, keys_idx)
        padding = torch.zeros_like(keys_idx, dtype=torch.bool)
        padding[:, :-1] = video_texts < 0  # the trailing mask key is always attendable
        keys = self.key_norm(text_table[keys_idx])
        context, _ = self.attn(self.query_norm(pose_feat), keys, keys, key_padding_mask=padding,
                               need_weights=False)
        return context

    def mask_context(self, mask):
        """(1, 1, F): what a frame gets when the mask embedding is its only key (a dropped frame)."""
        key = self.key_norm(mask).unsqueeze(0)
        query = torch.zeros(1, 1, self.attn.embed_dim, dtype=mask.dtype, device=mask.device)
        return self.attn(query, key, key, need_weights=False)[0]


class DescriptionFusion(nn.Module):
    """Turns a batch's description plan and unique-text features into fused pose features."""

    def __init__(self, feature_dim, text_dim, fusion_type="gating", text_dropout_p=0.1):
        """The fusion draws its init and its text dropout from streams of its own (derived from the run's
        seed), so a run with descriptions sees the same pose-model init, batch order and dropout as the
        pose-only run of the same seed: the comparison measures the text, not a reshuffled run."""
        super().__init__()
        self.fusion_type = fusion_type
        self.text_dropout_p = text_dropout_p
        self.dropout_seed = (torch.initial_seed() + 2) % 2 ** 63  # an unseeded run's seed may be near 2⁶⁴
        self.dropout_generator = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((torch.initial_seed() + 1) % 2 ** 63)
            self.mask_embedding = LearnableMaskEmbedding(text_dim)
            if fusion_type == "cross_attn":
                self.cross_attn = CrossAttentionContext(feature_dim, text_dim)
                self.gating = GatingFusion(feature_dim, feature_dim)
            else:
                self.gating = GatingFusion(feature_dim, text_dim)

    def dropped_frames(self, has):
        """(B, T) bool: frames whose text is dropped this step, from the fusion's own stream."""
        if self.dropout_generator is None or self.dropout_generator.device != has.device:
            self.dropout_generator = torch.Generator(device=has.device).manual_seed(self.dropout_seed)
        return torch.rand(has.shape, device=has.device, generator=self.dropout_generator) < self.text_dropout_p

    def get_rng_state(self):
        """The text-dropout stream where it stands (None before its first draw), for --resume."""
        gen = self.dropout_generator
        return None if gen is None else (str(gen.device), gen.get_state())

    def set_rng_state(self, state):
        self.dropout_generator = None if state is None else torch.Generator(device=state[0]).set_state(state[1])

    def aligned_text(self, text_table, left, right, weight):
        """Per-frame (1 − w)·f[left] + w·f[right]; index −1 selects the mask embedding (last row)."""
        mask_row = text_table.shape[0] - 1
        left = torch.where(left < 0, mask_row, left)
        right = torch.where(right < 0, mask_row, right)
        w = weight.unsqueeze(-1).to(text_table.dtype)
        return (1 - w) * text_table[left] + w * text_table[right]

    def forward(self, pose_feat, src_input):
        """Returns (fused (B,T,F), gate (B,T,1), has_description (B,T) as used)."""
        features = src_input["text_features"].to(device=pose_feat.device, dtype=pose_feat.dtype)
        mask = self.mask_embedding().to(pose_feat.dtype)
        text_table = torch.cat([features, mask], dim=0)
        has = src_input["has_description"].to(pose_feat.device)
        if self.fusion_type == "cross_attn":
            text = self.cross_attn(pose_feat, text_table, src_input["desc_video_texts"].to(pose_feat.device))
        else:
            text = self.aligned_text(text_table, src_input["desc_left"].to(pose_feat.device),
                                     src_input["desc_right"].to(pose_feat.device),
                                     src_input["desc_weight"].to(pose_feat.device))
        if self.training and self.text_dropout_p > 0:
            dropped = self.dropped_frames(has)
            if self.fusion_type == "cross_attn":  # the context (feature_dim) a frame with no text gets
                mask = self.cross_attn.mask_context(mask)
            text = torch.where(dropped.unsqueeze(-1), mask, text)
            has = has * ~dropped
        fused, gate = self.gating(pose_feat, text, has)
        return fused, gate, has


def withhold_descriptions(src_input):
    """A copy of the batch with every frame's text removed (for the description ablation)."""
    withheld = dict(src_input)
    withheld["desc_left"] = torch.full_like(src_input["desc_left"], -1)
    withheld["desc_right"] = torch.full_like(src_input["desc_right"], -1)
    withheld["desc_weight"] = torch.zeros_like(src_input["desc_weight"])
    withheld["has_description"] = torch.zeros_like(src_input["has_description"])
    withheld["desc_video_texts"] = torch.full_like(src_input["desc_video_texts"], -1)
    return withheld


def format_gate(mean):
    """A gate mean for the console: n/a where no frame of that kind was seen."""
    return "n/a" if mean is None else f"{mean:.4f}"


class GateStats:
    """Mean gate on described vs undescribed real frames (None for a kind no frame was of)."""

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

    def means(self, sharded=False):
        """sharded: each rank saw a disjoint share of the samples, so the sums are added over ranks."""
        from uni_sign_ext.distributed_eval import sum_over_ranks

        sums, counts = sum_over_ranks(self.sums, sharded), sum_over_ranks(self.counts, sharded)
        means = [s / c if c > 0 else None for s, c in zip(sums.tolist(), counts.tolist())]
        return {"gate_described": means[0], "gate_undescribed": means[1]}
