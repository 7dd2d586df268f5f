"""Decode chosen frames of a video file with PyAV: one pass, stopping at the last frame needed.

Upstream reads them with decord (`VideoReader(path).get_batch(frames)`); PyAV's `rgb24` frames, decoded in
order, have the same pixels for H.264 (with and without B-frames) and MPEG-4 Part 2 without B-frames
(the RGB spec UNI_SIGN_RGB.md, §3). Frame i is the i-th frame the decoder outputs (presentation order).
"""
import os

import numpy as np


class VideoFileError(ValueError):
    """A video that cannot give the frames a sample needs; the message names the file, the reason, the fix."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def decode_frames(path, frames):
    """uint8 (K, H, W, 3) RGB frames at the given indices (ascending, unique), from one decoding pass.

    Raises VideoFileError for a missing, unreadable or truncated file, for one with fewer frames than
    needed, and for frames whose size changes inside the video.
    """
    import av  # imported here: pose-only runs never need PyAV
    from av.video.reformatter import VideoReformatter

    frames = [int(f) for f in frames]
    if not frames:
        raise ValueError("no frame to decode")
    if frames != sorted(set(frames)) or frames[0] < 0:
        raise ValueError(f"frame indices must be ascending, unique and ≥ 0, got {frames[:8]}…")
    if not os.path.isfile(path):
        raise VideoFileError(path, "video file not found (put the clip there, or check config.rgb_dirs / "
                                   "UNISIGN_ROOT)")
    last = frames[-1]
    wanted = iter(frames)
    target = next(wanted)
    out = []
    seen = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoFileError(path, "no video stream in the file (re-encode the clip, e.g. as H.264 mp4)")
            stream = container.streams.video[0]
            # one converter for the whole video: frame.to_ndarray(format="rgb24") builds a new one per frame
            # (same pixels, ~4x slower on small frames)
            rgb = VideoReformatter()
            for index, frame in enumerate(container.decode(stream)):
                seen = index + 1
                if index == target:
                    out.append(rgb.reformat(frame, format="rgb24").to_ndarray())
                    if index == last:
                        break
                    target = next(wanted)
    except VideoFileError:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, OSError…) for broken files
        raise VideoFileError(path, f"unreadable video ({type(exc).__name__}: {exc}); re-encode or "
                                   "re-download the clip") from None
    if len(out) < len(frames):
        raise VideoFileError(path, f"the video has {seen} decodable frames, but the pose file's sampled "
                                   f"frames need frame {last}: video and pose file do not match (truncated "
                                   "video, or poses of another clip); re-extract one of them")
    shape = out[0].shape
    if any(f.shape != shape for f in out):
        raise VideoFileError(path, "the frame size changes inside the video; re-encode it at one size")
    return np.stack(out)


def count_frames(path):
    """Decode the whole video → (frame count, (H, W)); raises VideoFileError like decode_frames."""
    import av

    if not os.path.isfile(path):
        raise VideoFileError(path, "video file not found (put the clip there, or check config.rgb_dirs / "
                                   "UNISIGN_ROOT)")
    count, size = 0, None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoFileError(path, "no video stream in the file (re-encode the clip, e.g. as H.264 mp4)")
            for frame in container.decode(container.streams.video[0]):
                count += 1
                size = size or (frame.height, frame.width)
    except VideoFileError:
        raise
    except Exception as exc:
        raise VideoFileError(path, f"unreadable video ({type(exc).__name__}: {exc}); re-encode or "
                                   "re-download the clip") from None
    if count == 0:
        raise VideoFileError(path, "the video has no decodable frame; re-encode or re-download the clip")
    return count, size
