"""ST-GCN blocks with upstream Uni-Sign's module layout (and therefore its state-dict keys)."""
from collections import OrderedDict

import torch
from torch import nn

SPATIAL_CHANNELS = [64, 64, 128]  # then hidden_dim (256 upstream)
TEMPORAL_DEPTH = 3


class GraphConv(nn.Module):
    """1x1 conv to K·C_out channels, mixed over nodes by the trainable adjacency A, then BN + ReLU."""

    def __init__(self, in_channels, out_channels, adjacency):
        super().__init__()
        self.kernel_size = adjacency.shape[0]
        self.A = nn.Parameter(torch.as_tensor(adjacency).clone())
        self.conv = nn.Conv2d(in_channels, out_channels * self.kernel_size, kernel_size=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.conv(x)
        n, kc, t, v = x.shape
        x = x.view(n, self.kernel_size, kc // self.kernel_size, t, v)
        x = torch.einsum("nkctv,kvw->nctw", x, self.A)
        return self.relu(self.bn(x.contiguous()))


class STGCNBlock(nn.Module):
    """Graph conv, optional temporal conv, residual, ReLU."""

    def __init__(self, in_channels, out_channels, adjacency, temporal_kernel):
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, adjacency)
        if temporal_kernel == 1:
            self.tcn = nn.Identity()
        else:
            self.tcn = nn.Sequential(
                nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1),
                          padding=((temporal_kernel - 1) // 2, 0)),
                nn.BatchNorm2d(out_channels),
                nn.Dropout(0.0),
            )
        if in_channels == out_channels:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1),
                                          nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.tcn(self.gcn(x)) + self.residual(x))


def spatial_chain(adjacency, hidden_dim=256):
    """64→64→128→hidden graph convolutions without temporal mixing (blocks layer0_0, layer1_0, layer2_0)."""
    channels = SPATIAL_CHANNELS + [hidden_dim]
    blocks = OrderedDict(
        (f"layer{i}_0", STGCNBlock(c_in, c_out, adjacency, temporal_kernel=1))
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])))
    return nn.Sequential(blocks)


def temporal_chain(adjacency, hidden_dim=256):
    """hidden→hidden blocks with temporal kernel 5 (blocks layer0_0, layer0_1, layer0_2)."""
    blocks = OrderedDict(
        (f"layer0_{i}", STGCNBlock(hidden_dim, hidden_dim, adjacency, temporal_kernel=5))
        for i in range(TEMPORAL_DEPTH))
    return nn.Sequential(blocks)
