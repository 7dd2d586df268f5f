"""The frozen mT5 text encoder: one mean-pooled vector per distinct description text.

It is deliberately not a submodule of the trained model, so its weights never reach an optimizer,
a ZeRO partition or a checkpoint. Texts are deduplicated and encoded in batches, never one per frame.
"""
import torch
from transformers import MT5EncoderModel, T5Tokenizer


class FrozenTextEncoder:
    def __init__(self, mt5_path, device="cpu", dtype=torch.float32, max_length=64, batch_size=256):
        self.device = torch.device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = T5Tokenizer.from_pretrained(mt5_path, legacy=False)
        self.model = MT5EncoderModel.from_pretrained(mt5_path).to(device=self.device, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.d_model = self.model.config.d_model

    @torch.inference_mode()
    def encode(self, texts):
        """list of str → (len(texts), d_model) float32 on the CPU, each distinct text encoded once.

        Padding does not change a text's feature, so texts are batched by length to pad less.
        """
        distinct = sorted(dict.fromkeys(texts), key=len)
        chunks = [torch.zeros(0, self.d_model)]
        for start in range(0, len(distinct), self.batch_size):
            tokens = self.tokenizer(distinct[start:start + self.batch_size], padding="longest", truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**tokens).last_hidden_state.float()
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            chunks.append(((hidden * mask).sum(1) / mask.sum(1)).cpu())
        row = {text: i for i, text in enumerate(distinct)}
        return torch.cat(chunks)[[row[t] for t in texts]]
