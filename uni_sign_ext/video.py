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
Every frame that is decoded therefore has the same pixels as in a full decode. Of the needed frames only the
parts that are read (the hand boxes) are converted to rgb24 (Frame), with the pixels of the whole frame's
conversion. Where this indexing could disagree with counting decoded frames (a packet without a
timestamp, two with the same one, a packet flagged discard or corrupt, a needed frame the decoder does not
give), the file is decoded again in order, every frame, and the i-th output frame is frame i.
"""
import contextlib
import os

import numpy as np


class VideoFileError(ValueError):
    """A video that cannot give the frames a sample needs; the message names the file, the reason, the fix."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def read_frames(path, frames):
    """K Frames (RGB where read; np.stack of them: uint8 (K, H, W, 3)) at the given frame indices (ascending,
    unique), from one decoding pass.

    Raises VideoFileError for a missing, unreadable or truncated file, for one with fewer frames than
    needed, and for frames whose size changes inside the video.
    """
    frames = [int(f) for f in frames]
    if not frames:
        raise ValueError("no frame to decode")
    if frames != sorted(set(frames)) or frames[0] < 0:
        raise ValueError(f"frame indices must be ascending, unique and ≥ 0, got {frames[:8]}…")
    out = _decode_selected(path, frames)
    if out is None:
        out = _decode_in_order(path, frames)
    return out.frames


def require_file(path):
    """A missing video is a VideoFileError that says where to put it."""
    if not os.path.isfile(path):
        raise VideoFileError(path, "video file not found (put the clip there, or check config.rgb_dirs / "
                                   "UNISIGN_ROOT)")


@contextlib.contextmanager
def _opened(path):
    """(container, its first video stream); a missing file, or PyAV's error on a broken one (it raises many
    types: InvalidDataError, OSError…), becomes a VideoFileError that names the file and the fix.

    The stream is decoded in this thread: the default, a slice-thread pool per video, costs ~0.3 ms a video to
    start, and these files have one slice per frame."""
    import av

    require_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoFileError(path, "no video stream in the file (re-encode the clip, e.g. as H.264 mp4)")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            yield container, stream
    except VideoFileError:
        raise
    except Exception as exc:
        raise VideoFileError(path, f"unreadable video ({type(exc).__name__}: {exc}); re-encode or "
                                   "re-download the clip") from None


# Planar 8-bit YUV formats → (columns, rows) that one chroma sample covers: a part of such a frame whose edges
# fall on whole chroma samples converts to rgb24 on its own, pixel for pixel as in the whole frame (checked once
# per kind of frame: _parts_convert_alone). Not 4:2:2: swscale interpolates its chroma across the part's edges.
CHROMA_BLOCK = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv444p": (1, 1), "yuvj444p": (1, 1)}
_PARTS_CONVERT_ALONE = {}  # (format, width, height, colour space, range) → what the check found, per process


class Frame:
    """One decoded frame, converted to RGB only where it is read: a sample crops two hand boxes out of it, and
    converting whole frames took an eighth of a sample's time at 512×512 (bench/results/rgb_data.md).

    frame[rows, cols] (two slices, numpy's rules: a negative start counts from the far edge) → uint8 (h, w, 3),
    the same pixels as that slice of frame.to_ndarray(format="rgb24"). np.asarray(frame) is the whole (H, W, 3)
    frame. shape is (H, W, 3), like the array's.
    """

    def __init__(self, frame, converter):
        self.frame, self.converter, self.shape, self._whole = frame, converter, (frame.height, frame.width, 3), None

    def __getitem__(self, index):
        rows, cols = (range(n)[s] for n, s in zip(self.shape, index))
        if rows.step != 1 or cols.step != 1:
            raise ValueError("a Frame is read in slices with step 1")
        if not rows or not cols:
            return np.zeros((len(rows), len(cols), 3), np.uint8)
        if self._whole is None and _parts_convert_alone(self.frame, self.converter):
            return _convert_part(self.frame, self.converter, rows.start, rows.stop, cols.start, cols.stop)
        return self.whole()[rows.start:rows.stop, cols.start:cols.stop]

    def whole(self):
        if self._whole is None:
            self._whole = _rgb24(self.converter, self.frame)
        return self._whole

    def __array__(self, dtype=None, copy=None):
        whole = self.whole()
        return whole.astype(dtype or whole.dtype, copy=bool(copy))


def _rows(plane, row_bytes):
    """A frame plane as a (height, row_bytes) uint8 view (its rows lie line_size bytes apart)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :row_bytes]


def _rgb24(converter, frame):
    """uint8 (H, W, 3) view of the frame converted to rgb24, in this thread (PyAV's default threads=0 starts
    a thread pool per converter: no faster on these frames, and a DataLoader worker should keep to its core)."""
    rgb = converter.reformat(frame, format="rgb24", threads=1)
    return _rows(rgb.planes[0], rgb.width * 3).reshape(rgb.height, rgb.width, 3)


def _convert_part(frame, converter, top, bottom, left, right):
    """uint8 (bottom - top, right - left, 3): rows top:bottom, columns left:right of `frame` in rgb24, from a
    copy of the YUV planes widened to whole chroma samples."""
    import av

    block_w, block_h = CHROMA_BLOCK[frame.format.name]
    y0, x0 = top - top % block_h, left - left % block_w
    y1 = min(-(-bottom // block_h) * block_h, frame.height)
    x1 = min(-(-right // block_w) * block_w, frame.width)
    part = av.VideoFrame(x1 - x0, y1 - y0, frame.format.name)
    part.colorspace, part.color_range = frame.colorspace, frame.color_range
    for index, (source, target) in enumerate(zip(frame.planes, part.planes)):
        per_w, per_h = (1, 1) if index == 0 else (block_w, block_h)
        _rows(target, target.width)[:] = _rows(source, source.width)[
            y0 // per_h:y0 // per_h + target.height, x0 // per_w:x0 // per_w + target.width]
    return _rgb24(converter, part)[top - y0:bottom - y0, left - x0:right - x0]


def _parts_convert_alone(frame, converter):
    """Whether parts of this kind of frame convert to the same pixels as the whole frame does: swscale
    converts each chroma block on its own for these formats, which is checked once per process and kind on a
    noise frame (an odd part, one at the edges, one inside); a kind where a part differs is converted whole."""
    if frame.format.name not in CHROMA_BLOCK:
        return False
    kind = (frame.format.name, frame.width, frame.height, frame.colorspace, frame.color_range)
    if kind not in _PARTS_CONVERT_ALONE:
        import av

        noise = av.VideoFrame(frame.width, frame.height, frame.format.name)
        noise.colorspace, noise.color_range = frame.colorspace, frame.color_range
        generator = np.random.default_rng(0)
        for plane in noise.planes:
            _rows(plane, plane.width)[:] = generator.integers(0, 256, (plane.height, plane.width), np.uint8)
        whole, (height, width) = _rgb24(converter, noise), (frame.height, frame.width)
        parts = [(1, height, 0, width), (0, height - 1, 1, width - 1),
                 (height // 3 + 1, height // 2 + 3, width // 3 + 1, width // 2 + 3)]
        _PARTS_CONVERT_ALONE[kind] = all(
            np.array_equal(_convert_part(noise, converter, *p), whole[p[0]:p[1], p[2]:p[3]])
            for p in parts if p[0] < p[1] and p[2] < p[3])
    return _PARTS_CONVERT_ALONE[kind]


class _Frames:
    """The K frames asked for, as they come out of the decoder (in any order); all of one size."""

    def __init__(self, path, count):
        from av.video.reformatter import VideoReformatter

        self.path, self.frames, self.size = path, [None] * count, None
        self.converter = VideoReformatter()  # one per video: it keeps its swscale context between frames

    def put(self, row, frame):
        if self.size is None:
            self.size = (frame.height, frame.width)
        elif self.size != (frame.height, frame.width):
            raise VideoFileError(self.path, "the frame size changes inside the video; re-encode it at one size")
        self.frames[row] = Frame(frame, self.converter)

    def filled(self, row):
        return self.frames[row] is not None

    def complete(self):
        return all(f is not None for f in self.frames)


def _too_short(path, count, last):
    return VideoFileError(path, f"the video has {count} decodable frames, but the pose file's sampled frames "
                                f"need frame {last}: video and pose file do not match (truncated video, or poses "
                                "of another clip); re-extract one of them")


def _decode_selected(path, frames):
    """The fast path (module docstring): `frames` as _Frames, or None where the packets' timestamps cannot
    index the frames (then _decode_in_order decides)."""
    with _opened(path) as (container, stream):
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
                if i is not None and not out.filled(i):
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
    last = frames[-1]
    wanted = iter(frames)
    target = next(wanted)
    out = _Frames(path, len(frames))
    seen = found = 0
    with _opened(path) as (container, stream):
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
    """Decode the whole video → (frame count, (H, W)); raises VideoFileError like read_frames."""
    count, size = 0, None
    with _opened(path) as (container, stream):
        for frame in container.decode(stream):
            count += 1
            size = size or (frame.height, frame.width)
    if count == 0:
        raise VideoFileError(path, "the video has no decodable frame; re-encode or re-download the clip")
    return count, size
