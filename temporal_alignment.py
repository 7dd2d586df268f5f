"""The names the user's design documents import; the code lives in uni_sign_ext."""
from uni_sign_ext.alignment import AlignedDescriptions, TemporalAligner, align_descriptions
from uni_sign_ext.descriptions import DescriptionLoader, find_description_dir

__all__ = ["DescriptionLoader", "TemporalAligner", "AlignedDescriptions", "align_descriptions",
           "find_description_dir"]
