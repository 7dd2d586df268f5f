"""Learned fusion of description features into the pose features (DESIGN.md "Fusion").

fused = pose + gate ⊙ proj(text), gate = σ(MLP([pose, proj(text), has_description])), per frame.
`proj` starts at zero, so a fresh fusion module leaves a pretrained model's outputs unchanged
until it learns; the gate starts closed-ish (σ(GATE_BIAS_INIT)) and opens where text helps.
"""
import torch
from torch import nn

GATE_BIAS_INIT = -2.0
GATE_HIDDEN = 512
CROSS_ATTN_HEADS = 8


class LearnableMaskEmbedding(nn.Module):
    """The text feature used where a frame has no description (or its text was dropped)."""

    def __init__(self, hidden_dim=768):
        super().__init__()
        self.mask = nn.Parameter(torch.randn(1, hidden_dim) * 0.01)

    def forward(self):
        return self.mask


class GatingFusion(nn.Module):
    """Per-frame gated residual: returns (fused (B,T,F), gate (B,T,1))."""

    def __init__(self, feature_dim=768, text_dim=768):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, feature_dim)
        self.gate_mlp = nn.Sequential(nn.Linear(2 * feature_dim + 1, GATE_HIDDEN), nn.GELU(),
                                      nn.Linear(GATE_HIDDEN, 1))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.zeros_(self.text_proj.weight)
        nn.init.zeros_(self.text_proj.bias)
        nn.init.xavier_uniform_(self.gate_mlp[0].weight)
        nn.init.zeros_(self.gate_mlp[0].bias)
        nn.init.zeros_(self.gate_mlp[2].weight)
        nn.init.constant_(self.gate_mlp[2].bias, GATE_BIAS_INIT)

    def forward(self, pose_feat, text_feat, has_description):
        text = self.text_proj(text_feat)
        gate_in = torch.cat([pose_feat, text, has_description.unsqueeze(-1).to(pose_feat.dtype)], dim=-1)
        gate = torch.sigmoid(self.gate_mlp(gate_in))
        return pose_feat + gate * text, gate


class CrossAttentionContext(nn.Module):
    """Each frame attends over its video's description features (and the mask embedding)."""

    def __init__(self, feature_dim=768, text_dim=768):
        super().__init__()
        self.attn = nn.MultiheadAttention(feature_dim, CROSS_ATTN_HEADS, kdim=text_dim, vdim=text_dim,
                                          batch_first=True)

    def forward(self, pose_feat, text_table, video_texts):
        """text_table: (U+1, D) with the mask embedding last; video_texts: (B, U_max) indices, -1 = pad."""
        mask_row = text_table.shape[0] - 1
        keys_idx = torch.cat([video_texts, torch.full_like(video_texts[:, :1], -1)], dim=1)
        keys_idx = torch.where(keys_idx < 0, mask_row, keys_idx)
        padding = torch.zeros_like(keys_idx, dtype=torch.bool)
        padding[:, :-1] = video_texts < 0  # the trailing mask key is always attendable
        keys = text_table[keys_idx]
        context, _ = self.attn(pose_feat, keys, keys, key_padding_mask=padding, need_weights=False)
        return context


class DescriptionFusion(nn.Module):
    """Turns a batch's description plan and unique-text features into fused pose features."""

    def __init__(self, feature_dim, text_dim, fusion_type="gating", text_dropout_p=0.1):
        super().__init__()
        self.fusion_type = fusion_type
        self.text_dropout_p = text_dropout_p
        self.mask_embedding = LearnableMaskEmbedding(text_dim)
        if fusion_type == "cross_attn":
            self.cross_attn = CrossAttentionContext(feature_dim, text_dim)
            self.gating = GatingFusion(feature_dim, feature_dim)
        else:
            self.gating = GatingFusion(feature_dim, text_dim)

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
            dropped = torch.rand(has.shape, device=has.device) < self.text_dropout_p
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
