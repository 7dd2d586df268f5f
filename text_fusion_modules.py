"""The names the user's design documents import; the code lives in uni_sign_ext."""
from uni_sign_ext.fusion import CrossAttentionContext, DescriptionFusion, GatingFusion, LearnableMaskEmbedding
from uni_sign_ext.text_encoder import FrozenTextEncoder as TextEncoder

__all__ = ["TextEncoder", "GatingFusion", "LearnableMaskEmbedding", "CrossAttentionContext", "DescriptionFusion"]
