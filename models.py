"""Uni-Sign's translator: four-part ST-GCN → pose_proj → mT5, plus optional description fusion and, with
`--rgb_support`, upstream's RGB-pose path (hand crops → EfficientNet-B0 → pose-guided fusion into the hand
features before the temporal ST-GCN; uni_sign_ext/rgb_backbone.py, deformable_attention.py, rgb_fusion.py).

Module names and shapes follow upstream exactly (tests/data/unisign_pose_state_dict.json, and
tests/data/unisign_rgb_state_dict.json for the RGB keys), so released checkpoints load with strict=True.
Fusion weights, when enabled, live under `text_fusion.`.
"""
import torch
from torch import nn
from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

from uni_sign_ext.deformable_attention import DeformableAttention2D
from uni_sign_ext.fusion import DescriptionFusion
from uni_sign_ext.graph import part_adjacency
from uni_sign_ext.pose import PARTS
from uni_sign_ext.rgb_backbone import HEAD_CHANNELS, rgb_support_backbone
from uni_sign_ext.rgb_fusion import HANDS, fuse_hand, fusion_gate, support_keys
from uni_sign_ext.stgcn import spatial_chain, temporal_chain

POSE_IN_CHANNELS = 3
PROJ_CHANNELS = 64
TARGET_MAX_LENGTH = 50
# Body node whose (detached) spatial feature each other part adds: left wrist, right wrist, nose.
BODY_ANCHOR_NODE = {"left": -2, "right": -1, "face_all": 0}
FUSION_PREFIX = "text_fusion."


def prompt_for(dataset):
    language = "Chinese" if "CSL" in dataset else "English"
    return f"Translate sign language video to {language}: "


class Uni_Sign(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.modes = list(PARTS)
        self.proj_linear = nn.ModuleDict()
        self.gcn_modules = nn.ModuleDict()
        self.fusion_gcn_modules = nn.ModuleDict()
        for part in ("body", "left", "face_all"):
            adjacency = part_adjacency(part)
            self.proj_linear[part] = nn.Linear(POSE_IN_CHANNELS, PROJ_CHANNELS)
            self.gcn_modules[part] = spatial_chain(adjacency, args.hidden_dim)
            self.fusion_gcn_modules[part] = temporal_chain(adjacency, args.hidden_dim)
        # Both hands share one set of modules; the state dict lists them under both names.
        self.proj_linear["right"] = self.proj_linear["left"]
        self.gcn_modules["right"] = self.gcn_modules["left"]
        self.fusion_gcn_modules["right"] = self.fusion_gcn_modules["left"]
        self.part_para = nn.Parameter(torch.zeros(args.hidden_dim * len(self.modes)))
        d_model = MT5Config.from_pretrained(args.mt5_path).d_model  # 768 for mt5-base
        self.pose_proj = nn.Linear(args.hidden_dim * len(self.modes), d_model)
        self.apply(self._init_weights)
        self.rgb_support = bool(getattr(args, "rgb_support", False))
        if self.rgb_support and args.hidden_dim != 256:
            raise ValueError(f"--rgb_support needs --hidden_dim 256 (upstream's fusion is built for it), "
                             f"not {args.hidden_dim}")
        if self.rgb_support:  # after the trunc-normal init, as upstream: these keep PyTorch's defaults
            self.rgb_support_backbone = rgb_support_backbone()
            self.rgb_proj = nn.Conv2d(HEAD_CHANNELS, args.hidden_dim, kernel_size=1)
            self.fusion_pose_rgb_linear = nn.Linear(args.hidden_dim, args.hidden_dim)  # upstream: never used
            self.fusion_pose_rgb_DA = DeformableAttention2D(dim=args.hidden_dim, dim_head=32, heads=8)
            self.fusion_gate = fusion_gate(args.hidden_dim)

        self.mt5_model = MT5ForConditionalGeneration.from_pretrained(args.mt5_path)
        self.mt5_tokenizer = T5Tokenizer.from_pretrained(args.mt5_path, legacy=False)
        self.lang = prompt_for(args.dataset)
        # The prompt is the same for every sample: tokenise it once, not every step.
        self.prompt_ids = self.mt5_tokenizer([self.lang], return_tensors="pt")["input_ids"]
        self.loss_fct = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing, ignore_index=-100)

        self.text_fusion = None
        if getattr(args, "use_descriptions", False):
            text_dim = MT5Config.from_pretrained(args.mt5_model or args.mt5_path).d_model
            self.text_fusion = DescriptionFusion(d_model, text_dim, args.text_fusion_type,
                                                 args.text_dropout_p)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode_crops(self, src_input):
        """Each hand's crops through the backbone, left then right (one batch each, as upstream)."""
        return {hand: self.rgb_support_backbone(src_input[support_keys(hand)[0]]) for hand in HANDS}

    def fuse_rgb(self, hand, x, crops, src_input):
        _, indices, skeletons, lengths = support_keys(hand)
        return fuse_hand(x, crops[hand], src_input[indices], src_input[lengths], src_input[skeletons],
                         self.rgb_proj, self.fusion_pose_rgb_DA, self.fusion_gate)

    def encode_pose(self, src_input):
        """Four keypoint parts (and, with --rgb_support, the hand crops) → (B, T, d_model) pose features."""
        crops = self.encode_crops(src_input) if self.rgb_support else None
        features = []
        body_feat = None
        for part in self.modes:
            x = self.proj_linear[part](src_input[part]).permute(0, 3, 1, 2)  # (B, C, T, V)
            x = self.gcn_modules[part](x)
            if part == "body":
                body_feat = x
            else:
                if crops is not None and part in HANDS:
                    x = self.fuse_rgb(part, x, crops, src_input)
                x = x + body_feat[..., BODY_ANCHOR_NODE[part]].unsqueeze(-1).detach()
            x = self.fusion_gcn_modules[part](x)
            features.append(x.mean(-1).transpose(1, 2))  # (B, T, C)
        return self.pose_proj(torch.cat(features, dim=-1) + self.part_para)

    def embed_prompt(self, batch_size, device):
        """The prompt's token embeddings and mask, repeated over the batch (identical prompts need no padding)."""
        ids = self.prompt_ids.to(device).expand(batch_size, -1)
        return self.mt5_model.encoder.embed_tokens(ids), torch.ones_like(ids)

    def tokenize_targets(self, sentences, device):
        labels = self.mt5_tokenizer(sentences, padding="longest", truncation=True,
                                    max_length=TARGET_MAX_LENGTH, return_tensors="pt")["input_ids"]
        labels[labels == self.mt5_tokenizer.pad_token_id] = -100
        return labels.to(device)

    def forward(self, src_input, tgt_input):
        pose_embeds = self.encode_pose(src_input)
        out = {}
        if self.text_fusion is not None:
            pose_embeds, out["gate"], out["has_description"] = self.text_fusion(pose_embeds, src_input)
        device = pose_embeds.device
        prefix_embeds, prefix_mask = self.embed_prompt(len(pose_embeds), device)
        inputs_embeds = torch.cat([prefix_embeds, pose_embeds], dim=1)
        attention_mask = torch.cat([prefix_mask, src_input["attention_mask"].to(device)], dim=1)
        labels = self.tokenize_targets(tgt_input["gt_sentence"], device)
        logits = self.mt5_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                decoder_input_ids=self.mt5_model._shift_right(labels)).logits
        if self.args.compute_fp32_loss:
            logits = logits.float()
        out.update(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                   loss=self.loss_fct(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)))
        return out

    @torch.no_grad()
    def generate(self, out, max_new_tokens=100, num_beams=4, synced_gpus=False):
        return self.mt5_model.generate(inputs_embeds=out["inputs_embeds"],
                                       attention_mask=out["attention_mask"],
                                       max_new_tokens=max_new_tokens, num_beams=num_beams,
                                       synced_gpus=synced_gpus)
