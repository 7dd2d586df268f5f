"""EfficientNet-B0's feature extractor in plain torch: upstream's `rgb_support_backbone` (no torchvision).

Upstream wraps torchvision's `efficientnet_b0().features` as child `0` of a Sequential, so the state-dict
keys are `0.<stage>.<block>...` (tests/data/unisign_rgb_state_dict.json lists them under
`rgb_support_backbone.`). This module rebuilds the same layout from the published B0 recipe (spec §9.1):
stem 3×3/2 conv 3→32, seven MBConv stages, head 1×1 conv 320→1280; every conv bias-free and followed by
BatchNorm2d(eps 1e-5, momentum 0.1) and (except the projection) SiLU; squeeze-excitation with
SiLU/Sigmoid; row-wise stochastic depth p = 0.2·i/16 on blocks that have a residual connection, active
only in train mode. 112×112 crops give (N, 1280, 4, 4).
"""
import torch
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
STOCHASTIC_DEPTH_PROB = 0.2
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# (expand ratio, kernel, stride, in channels, out channels, repeats) of B0's seven MBConv stages.
STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class ConvBNAct(nn.Sequential):
    """conv (no bias, 'same' padding) → BatchNorm2d → optional SiLU; keys `0.weight`, `1.*`."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, activation=True):
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                            groups=groups, bias=False),
                  nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """x · sigmoid(fc2(silu(fc1(mean over H, W of x)))); fc1/fc2 are 1×1 convs with bias."""

    def __init__(self, channels, squeeze_channels):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def drop_rows(x, p, training):
    """Row-wise stochastic depth: each sample's branch is kept with probability 1 − p and rescaled by
    1/(1 − p). One Bernoulli draw per sample from the torch RNG, only in training and when p > 0."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
    noise = noise.bernoulli_(survival)
    if survival > 0.0:
        noise.div_(survival)
    return x * noise


class MBConv(nn.Module):
    """Inverted residual: [1×1 expand] → depthwise k×k → squeeze-excite → 1×1 project (no activation),
    plus the input (after stochastic depth on the branch) when stride is 1 and channels are kept."""

    def __init__(self, expand_ratio, kernel, stride, in_channels, out_channels, drop_prob):
        super().__init__()
        expanded = in_channels * expand_ratio
        layers = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, 1))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded))
        layers.append(SqueezeExcite(expanded, max(1, in_channels // 4)))
        layers.append(ConvBNAct(expanded, out_channels, 1, activation=False))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_prob = drop_prob

    def forward(self, x):
        out = self.block(x)
        if self.residual:
            out = drop_rows(out, self.drop_prob, self.training) + x
        return out


def efficientnet_b0_features():
    """torchvision's `efficientnet_b0().features` layout: Sequential(stem, stage1…stage7, head)."""
    total = sum(stage[-1] for stage in STAGES)
    layers = [ConvBNAct(3, STEM_CHANNELS, 3, stride=2)]
    block_id = 0
    for expand_ratio, kernel, stride, in_channels, out_channels, repeats in STAGES:
        blocks = []
        for i in range(repeats):
            blocks.append(MBConv(expand_ratio, kernel, stride if i == 0 else 1,
                                 in_channels if i == 0 else out_channels, out_channels,
                                 STOCHASTIC_DEPTH_PROB * block_id / total))
            block_id += 1
        layers.append(nn.Sequential(*blocks))
    layers.append(ConvBNAct(STAGES[-1][4], HEAD_CHANNELS, 1))
    features = nn.Sequential(*layers)
    _init(features)
    return features


def _init(module):
    """Fresh weights as torchvision initialises EfficientNet (they are replaced by ImageNet or
    checkpoint weights before any real use; see uni_sign_ext/rgb_weights.py)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rgb_support_backbone():
    """Upstream's `rgb_support_backbone`: the features as the only child `0` (avgpool, classifier dropped)."""
    return nn.Sequential(efficientnet_b0_features())
