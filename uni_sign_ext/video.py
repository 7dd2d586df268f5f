"""Decode chosen frames of a video file with PyAV: one pass, stopping at the last frame needed.

Upstream reads them with decord (`VideoReader(path).get_batch(frames)`); PyAV's `rgb24` frames, decoded in
order, have the same pixels for H.264 (with and without B-frames) and MPEG-4 Part 2 without B-frames
(tests/test_decord_frames.py runs decord 0.6.0 beside us). Where they differ, decord is the one off by a frame
after a seek: MPEG-4 Part 2 with B-frames and H.264 with open GOPs. Frame i is the i-th frame in presentation
order.

Speed (a sample needs ~10-30 of a clip's frames, spread over it): the packets are read first (no decoding),
frame i is the packet with the i-th smallest timestamp, and only what the needed frames depend on is decoded:
- a non-reference frame that no crop needs is dropped by the decoder (`skip_frame = NONREF`, set per packet):
  no other frame is predicted from it;
- in H.264, an IDR frame starts afresh (no later frame refers to one before it), so the packets before an IDR
  are not sent at all when no needed frame comes between them and it (in decode order), and decoding stops at
  the last needed packet.
Every frame that is decoded therefore has the same pixels as in a full decode, and only the needed frames are
converted to rgb24. Where this indexing could disagree with counting decoded frames (a packet without a
timestamp, two with the same one, a packet flagged discard or corrupt, a needed frame the decoder does not
give), the file is decoded again in order, every frame, and the i-th output frame is frame i.
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
    frames = [int(f) for f in frames]
    if not frames:
        raise ValueError("no frame to decode")
    if frames != sorted(set(frames)) or frames[0] < 0:
        raise ValueError(f"frame indices must be ascending, unique and ≥ 0, got {frames[:8]}…")
    if not os.path.isfile(path):
        raise VideoFileError(path, "video file not found (put the clip there, or check config.rgb_dirs / "
                                   "UNISIGN_ROOT)")
    try:
        out = _decode_selected(path, frames)
        if out is None:
            out = _decode_in_order(path, frames)
    except VideoFileError:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, OSError…) for broken files
        raise VideoFileError(path, f"unreadable video ({type(exc).__name__}: {exc}); re-encode or "
                                   "re-download the clip") from None
    return out.array


def _open_video(container, path):
    if not container.streams.video:
        raise VideoFileError(path, "no video stream in the file (re-encode the clip, e.g. as H.264 mp4)")
    return container.streams.video[0]


class _Frames:
    """The result (K, H, W, 3) uint8, filled row by row with frame.to_ndarray(format="rgb24")'s pixels: one
    reused converter, run in this thread (PyAV's default threads=0 starts a thread pool per converter: no faster
    on these frames, and a DataLoader worker should not take more than its one core), and one copy per frame,
    straight from the converted frame's buffer into the result (to_ndarray then np.stack copied twice)."""

    def __init__(self, path, count):
        from av.video.reformatter import VideoReformatter

        self.path, self.count, self.array, self.filled = path, count, None, [False] * count
        self.converter = VideoReformatter()

    def put(self, row, frame):
        rgb = self.converter.reformat(frame, format="rgb24", threads=1)
        height, width = rgb.height, rgb.width
        if self.array is None:
            self.array = np.empty((self.count, height, width, 3), np.uint8)
        elif self.array.shape[1:3] != (height, width):
            raise VideoFileError(self.path, "the frame size changes inside the video; re-encode it at one size")
        plane = rgb.planes[0]
        pixels = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width * 3]
        self.array[row] = pixels.reshape(height, width, 3)
        self.filled[row] = True

    def complete(self):
        return all(self.filled)


def _too_short(path, count, last):
    return VideoFileError(path, f"the video has {count} decodable frames, but the pose file's sampled frames "
                                f"need frame {last}: video and pose file do not match (truncated video, or poses "
                                "of another clip); re-extract one of them")


def _decode_selected(path, frames):
    """The fast path (module docstring): rgb24 arrays of `frames`, or None where the packets' timestamps cannot
    index the frames (then _decode_in_order decides)."""
    import av

    with av.open(str(path)) as container:
        stream = _open_video(container, path)
        packets = [p for p in container.demux(stream) if p.size]  # decode order; the empty one ends the stream
        stamps = [p.pts for p in packets]
        if (not packets or None in stamps or len(set(stamps)) != len(stamps)
                or any(p.is_discard or p.is_corrupt for p in packets)):  # e.g. frames an edit list cuts
            return None
        if frames[-1] >= len(packets):
            raise _too_short(path, len(packets), frames[-1])
        order = sorted(stamps)
        row = {order[f]: i for i, f in enumerate(frames)}  # timestamp → row of the result
        last = max(i for i, p in enumerate(packets) if p.pts in row)
        codec = stream.codec_context
        out = _Frames(path, len(frames))

        def keep(decoded):
            for frame in decoded:
                i = row.get(frame.pts)
                if i is not None and not out.filled[i]:
                    out.put(i, frame)

        for packet in _packets_to_send(packets[:last + 1], row, codec):
            codec.skip_frame = "DEFAULT" if packet.pts in row else "NONREF"
            keep(codec.decode(packet))
        codec.skip_frame = "DEFAULT"
        keep(codec.decode(None))  # the frames the decoder still holds (B-frame reordering)
    return out if out.complete() else None


def _packets_to_send(packets, needed, codec):
    """The packets (decode order, ending with the last needed one) minus those before an H.264 IDR frame with no
    needed frame (timestamps in `needed`) between them and it."""
    is_idr = _idr_test(codec)
    if is_idr is None:
        return packets
    send = [False] * len(packets)
    needed_later = False
    for i in range(len(packets) - 1, -1, -1):
        packet = packets[i]
        needed_later = needed_later or packet.pts in needed
        send[i] = needed_later
        if packet.is_keyframe and is_idr(bytes(packet)):
            needed_later = False  # nothing from here on refers to a frame before this one
    return [p for p, s in zip(packets, send) if s]


def _idr_test(codec):
    """For H.264 in length-prefixed form (mp4, mkv: extradata is an avcC record), a test "does this packet hold
    an IDR slice (NAL unit type 5)"; None for anything else (then no packet is left out)."""
    extradata = codec.extradata or b""
    if codec.name != "h264" or len(extradata) < 7 or extradata[0] != 1:
        return None
    length_size = (extradata[4] & 3) + 1

    def is_idr(data):
        position = 0
        while position + length_size < len(data):
            size = int.from_bytes(data[position:position + length_size], "big")
            kind = data[position + length_size] & 0x1F
            if kind == 5:
                return True
            if kind == 1:  # a non-IDR slice
                return False
            position += length_size + size
        return False

    return is_idr


def _decode_in_order(path, frames):
    """Every frame in order up to the last needed; frame i = the i-th frame the decoder outputs."""
    import av

    last = frames[-1]
    wanted = iter(frames)
    target = next(wanted)
    out = _Frames(path, len(frames))
    seen = found = 0
    with av.open(str(path)) as container:
        stream = _open_video(container, path)
        for index, frame in enumerate(container.decode(stream)):
            seen = index + 1
            if index == target:
                out.put(found, frame)
                found += 1
                if index == last:
                    break
                target = next(wanted)
    if found < len(frames):
        raise _too_short(path, seen, last)
    return out


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
