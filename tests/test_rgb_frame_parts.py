"""uni_sign_ext/video.py's Frame converts only the parts of a frame that are read to RGB: every part must have
the pixels of the same slice of the whole frame's rgb24 conversion (what upstream crops from), for every pixel
format, size, colour space and slice (negative starts, odd edges, empty), and a kind of frame whose parts do not
convert alone must be converted whole."""
import random

import numpy as np
import pytest

from uni_sign_ext import video

av = pytest.importorskip("av")

# Formats whose parts convert alone, and some that are converted whole (4:2:2, semi-planar, 10-bit).
FORMATS = sorted(video.CHROMA_BLOCK) + ["yuv422p", "nv12", "yuv420p10le"]
# 150 and 90 are no multiple of 16 (padded rows in the planes); 151 × 91 splits 4:2:0 chroma samples at the edges
SIZES = [(160, 120), (150, 90), (64, 48), (151, 91)]
BT709 = av.video.reformatter.Colorspace.ITU709.value  # a frame's colorspace tag (untagged: 2, read as BT.601)


def noise_frame(pixel_format, width, height, colorspace=None, seed=0):
    frame = av.VideoFrame(width, height, pixel_format)
    if colorspace is not None:
        frame.colorspace = colorspace
    generator = np.random.default_rng(seed)
    for plane in frame.planes:
        plane.update(generator.integers(0, 256, plane.buffer_size, np.uint8).tobytes())
    return frame


def random_slices(height, width, rng, count=60):
    """Slices as a crop box gives them: any start (negative ones count from the far edge), ends past the frame."""
    for _ in range(count):
        top, left = rng.randrange(-height // 4, height), rng.randrange(-width // 4, width)
        yield slice(top, top + rng.randrange(1, height)), slice(left, left + rng.randrange(1, width))
    yield slice(0, height), slice(0, width)
    yield slice(height - 1, height + 5), slice(width - 1, width + 5)
    yield slice(5, 5), slice(0, width)  # empty


@pytest.mark.parametrize("pixel_format", FORMATS)
@pytest.mark.parametrize("size", SIZES)
def test_every_part_equals_that_slice_of_the_whole_frame(pixel_format, size):
    rng = random.Random(0)
    width, height = size
    for colorspace in (None, BT709):  # untagged (BT.601) and BT.709 frames convert differently
        frame = noise_frame(pixel_format, width, height, colorspace)
        whole = frame.to_ndarray(format="rgb24")
        lazy = video.Frame(frame, av.video.reformatter.VideoReformatter())
        assert lazy.shape == whole.shape == (height, width, 3)
        for rows, cols in random_slices(height, width, rng):
            part = lazy[rows, cols]
            assert part.dtype == np.uint8 and np.array_equal(part, whole[rows, cols]), (pixel_format, rows, cols)
        assert np.array_equal(np.asarray(lazy), whole)


def test_colour_space_changes_the_pixels():
    """So that the colour-space case above can fail: a part converted as BT.601 would differ."""
    frame = noise_frame("yuv420p", 64, 48)
    tagged = noise_frame("yuv420p", 64, 48, BT709)
    assert not np.array_equal(frame.to_ndarray(format="rgb24"), tagged.to_ndarray(format="rgb24"))


@pytest.mark.parametrize("colorspace", [None, BT709])
@pytest.mark.parametrize("pixel_format, part_size", [("yuv420p", (52, 40)), ("yuv444p", (51, 40))])
def test_parts_are_converted_alone_where_the_check_passes(pixel_format, part_size, colorspace, monkeypatch):
    monkeypatch.setattr(video, "_PARTS_CONVERT_ALONE", {})
    frame = video.Frame(noise_frame(pixel_format, 160, 120, colorspace), av.video.reformatter.VideoReformatter())
    converted = []
    real = video._rgb24
    monkeypatch.setattr(video, "_rgb24", lambda c, f: converted.append((f.width, f.height)) or real(c, f))
    frame[10:50, 20:71]
    assert converted[-1] == part_size  # columns 20..71, widened to whole chroma samples (20..72 in 4:2:0)
    assert max(converted[:-1]) == (160, 120)  # the one check on a noise frame of this kind
    converted.clear()
    frame[60:100, 0:30]
    assert converted == [(30, 40)]  # checked once per kind


def test_a_kind_whose_parts_differ_is_converted_whole(monkeypatch):
    """If swscale converted parts differently (another FFmpeg build), the check catches it on a noise frame and
    the frames of that kind are converted whole: the pixels stay upstream's."""
    monkeypatch.setattr(video, "_PARTS_CONVERT_ALONE", {})
    real = video._convert_part
    monkeypatch.setattr(video, "_convert_part", lambda *a: real(*a) ^ 1)  # a part off by one level
    source = noise_frame("yuv420p", 160, 120, seed=3)
    whole = source.to_ndarray(format="rgb24")
    frame = video.Frame(source, av.video.reformatter.VideoReformatter())
    assert np.array_equal(frame[7:61, 33:90], whole[7:61, 33:90])
    assert list(video._PARTS_CONVERT_ALONE.values()) == [False]


def test_decoded_frames_give_the_same_parts(tmp_path):
    """Frames from the decoder (its own plane padding) and their whole rgb24 conversion, through read_frames."""
    width, height, count = 150, 90, 12
    path = tmp_path / "clip.mp4"
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "veryfast", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(count):
            image = np.stack([(xs * 7 + t * 11) % 256, (ys * 5 + xs * t) % 256, (xs * ys + t) % 256], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    rng = random.Random(1)
    chosen = [1, 4, 5, 11]
    for index, frame in zip(chosen, video.read_frames(path, chosen)):
        for rows, cols in random_slices(height, width, rng, count=30):
            assert np.array_equal(frame[rows, cols], every[index][rows, cols]), (index, rows, cols)


def test_a_frame_is_read_in_slices_with_step_one():
    frame = video.Frame(noise_frame("yuv420p", 64, 48), av.video.reformatter.VideoReformatter())
    with pytest.raises(ValueError, match="step 1"):
        frame[::2, :]
