"""Pose-guided deformable attention: upstream's `fusion_pose_rgb_DA` (spec §9.1, §9.4), written from the spec.

Pose nodes (one sample's t frames × 21 hand nodes) attend to their hand crop's (4×4) feature map twice:
first with a plain cross-attention over the 16 cells (pose tokens plus a random-Fourier encoding of the
node positions as queries, cells plus a fixed sinusoid table as keys/values), then deformably: each
node, per offset group, samples the map bilinearly at its own position plus a learnt offset, and the
sampled features are attended over with a continuous relative-position bias. Module names and shapes are
upstream's, so RGB-pose checkpoints load as they are.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAP_CELLS = 16  # the backbone's 4×4 map on 112×112 crops; the sinusoid table assumes it
OFFSET_RANGE = 4 / 6  # offsets = tanh(·) × 4/6


class Scale(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


class RelativePositionBias(nn.Module):
    """SwinV2's continuous position bias: MLP(sign(Δ)·log(1 + |Δ|)) for Δ = query point − key point.
    Keys `mlp.0.0`, `mlp.1.0` (Linear+ReLU), `mlp.2` (Linear → heads // groups)."""

    def __init__(self, hidden, heads, groups, depth=2):
        super().__init__()
        self.groups = groups
        layers = [nn.Sequential(nn.Linear(2, hidden), nn.ReLU())]
        layers += [nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()) for _ in range(depth - 1)]
        layers.append(nn.Linear(hidden, heads // groups))
        self.mlp = nn.ModuleList(layers)

    def forward(self, query_points, key_points):
        """points: (b·g, n, 2) → bias (b, g·o, n_q, n_k)."""
        delta = query_points[:, :, None, :] - key_points[:, None, :, :]
        bias = torch.sign(delta) * torch.log(delta.abs() + 1)
        for layer in self.mlp:
            bias = layer(bias)
        bg, i, j, o = bias.shape
        return bias.reshape(bg // self.groups, self.groups, i, j, o).permute(0, 1, 4, 2, 3).reshape(
            bg // self.groups, self.groups * o, i, j)


class PointEncoding(nn.Module):
    """Random-Fourier encoding of points in [0, 1]²: [sin, cos](2π·(2p − 1) @ G), G a persistent (2, F)
    buffer drawn from N(0, 1) at init (so it must come from the checkpoint)."""

    def __init__(self, features):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, features)))

    def forward(self, points):
        coords = (2 * points - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * np.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


def sinusoid_table(positions, dim):
    """(1, positions, dim) float32: sin/cos of p / 10000^(2⌊j/2⌋/dim), computed in float64."""
    table = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(positions)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)


class DeformableAttention2D(nn.Module):
    """Upstream's configuration only: dim 256, 8 heads of 32, offset groups = heads, 1×1 offsets,
    grouped q/k/v, no downsampling, dropout 0."""

    def __init__(self, dim=256, dim_head=32, heads=8, dropout=0.0):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.groups = heads
        self.scale = dim_head ** -0.5
        group_dim = inner // self.groups
        self.to_offsets = nn.Sequential(
            nn.Conv1d(group_dim, group_dim, 1, groups=group_dim),
            nn.GELU(),
            nn.Conv1d(group_dim, 2, 1, bias=False),
            nn.Tanh(),
            Scale(OFFSET_RANGE))
        self.rel_pos_bias = RelativePositionBias(dim // 4, heads, self.groups)
        self.dropout = nn.Dropout(dropout)
        self.to_q = nn.Conv1d(dim, inner, 1, groups=self.groups, bias=False)
        self.to_k = nn.Conv2d(dim, inner, 1, groups=self.groups, bias=False)
        self.to_v = nn.Conv2d(dim, inner, 1, groups=self.groups, bias=False)
        self.to_out = nn.Conv1d(inner, dim, 1)
        self.cross_attn = nn.MultiheadAttention(embed_dim=dim, num_heads=heads, batch_first=True)
        self.pe_layer = PointEncoding(dim // 2)
        # a plain attribute, as upstream: not in the state dict, never moved or cast with the module
        self.pos_embed = sinusoid_table(MAP_CELLS, dim)

    def _grouped(self, x):
        """(b, g·d, ...) → (b·g, d, ...)."""
        return x.reshape(x.shape[0] * self.groups, x.shape[1] // self.groups, *x.shape[2:])

    def forward(self, pose_feat, rgb_feat, pose_init):
        """pose_feat (t, C, n) ST-GCN node features; rgb_feat (t, C, 4, 4) projected crop features;
        pose_init (t, 2, n) node positions in the crop, in [0, 1] (channel 0 = x) → (t, C, n)."""
        t, channels, nodes = pose_feat.shape
        tokens = pose_feat.transpose(1, 2)
        cells = rgb_feat.permute(0, 2, 3, 1).reshape(t, -1, channels)  # row-major cells, contiguous
        encoding = self.pe_layer(pose_init.transpose(1, 2).detach())
        kv = cells + self.pos_embed.expand(t, -1, -1).type_as(cells).to(cells.device).clone().detach()
        attended, _ = self.cross_attn(tokens + encoding, kv, kv)
        q = self.to_q(pose_feat + attended.transpose(1, 2))

        offsets = self.to_offsets(self._grouped(q))                                  # (t·g, 2, n)
        grid = (pose_init[:, None].repeat(1, self.groups, 1, 1) * 2 - 1).reshape(-1, 2, nodes)
        # (x, y) last and contiguous: the bias MLP's bf16 matmuls round by memory layout
        points = (grid + offsets).transpose(1, 2).contiguous()[:, None]               # (t·g, 1, n, 2)
        sampled = F.grid_sample(self._grouped(rgb_feat), points, mode="bilinear", padding_mode="zeros",
                                align_corners=False)                                   # (t·g, d, 1, n)
        sampled = sampled.reshape(t, -1, *sampled.shape[2:])
        k, v = self.to_k(sampled), self.to_v(sampled)

        q = q * self.scale
        q, k, v = (x.reshape(t, self.heads, x.shape[1] // self.heads, -1).transpose(-1, -2) for x in (q, k, v))
        sim = torch.einsum("b h i d, b h j d -> b h i j", q, k)
        sim = sim + self.rel_pos_bias(grid.transpose(1, 2).contiguous(), points[:, 0])
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()
        attn = self.dropout(sim.softmax(dim=-1))
        out = torch.einsum("b h i j, b h j d -> b h i d", attn, v)
        out = out.transpose(-1, -2).reshape(t, -1, nodes)
        return self.to_out(out)

