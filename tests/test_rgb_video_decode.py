"""uni_sign_ext/video.py's fast path (packets indexed by timestamp, unneeded non-reference frames dropped, packets
before an unneeded H.264 IDR left out) gives the frames of a plain in-order decode, pixel for pixel.

The clips are made here with PyAV: every frame differs from its neighbours (a frame off by one shows), with
B-frames, several IDR frames (keyint), open GOPs (I-frames that are not IDR) and MPEG-4 Part 2 with and without
B-frames (no IDR test). Against decord itself: tests/test_decord_frames.py (decord is off after a seek
for MPEG-4 Part 2 with B-frames and H.264 open GOPs; our two paths agree on every clip).
"""
import random

import numpy as np
import pytest

from uni_sign_ext import video

av = pytest.importorskip("av")

WIDTH, HEIGHT, FRAMES = 64, 48, 60


def decoded(path, frames):
    """uint8 (K, H, W, 3): the frames read_frames gives, whole."""
    return np.stack(video.read_frames(path, frames))


def write_clip(path, codec, options):
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(FRAMES):
            image = np.stack([(xs * 3 + t * 11) % 256, (ys * 5 + t * 7) % 256, (xs + ys + t * 13) % 256], -1)
            image[(t * 3) % HEIGHT, :] = 255  # a moving line
            for packet in stream.encode(av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


CLIPS = {  # name → (encoder, options, frames between two IDR frames or None)
    "h264_bframes_idr": ("libx264", {"preset": "veryfast", "threads": "1",
                                     "x264-params": "bframes=3:keyint=12:min-keyint=12:scenecut=0"}, 12),
    "h264_open_gop": ("libx264", {"preset": "veryfast", "threads": "1",
                                  "x264-params": "bframes=3:keyint=12:min-keyint=12:scenecut=0:open-gop=1"}, None),
    "h264_no_bframes": ("libx264", {"preset": "veryfast", "threads": "1",
                                    "x264-params": "bframes=0:keyint=20:min-keyint=20:scenecut=0"}, 20),
    "mpeg4": ("mpeg4", {"g": "12"}, None),
    "mpeg4_bframes": ("mpeg4", {"g": "12", "bf": "2"}, None),
}


@pytest.fixture(scope="module", params=sorted(CLIPS))
def clip(request, tmp_path_factory):
    codec, options, _ = CLIPS[request.param]
    path = write_clip(tmp_path_factory.mktemp("clips") / f"{request.param}.mp4", codec, options)
    with av.open(str(path)) as container:
        every = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(every) == FRAMES
    return request.param, path, np.stack(every)


def test_chosen_frames_equal_a_full_decode(clip):
    name, path, every = clip
    rng = random.Random(0)
    subsets = [[0], [FRAMES - 1], [5, 6, 7], list(range(FRAMES)), [13, 40], [25]]
    subsets += [sorted(rng.sample(range(FRAMES), k)) for k in (1, 2, 3, 6, 10, 20) for _ in range(3)]
    for frames in subsets:
        assert video._decode_selected(path, frames) is not None, (name, frames)  # the fast path was taken
        got = decoded(path, frames)
        assert got.shape == (len(frames), HEIGHT, WIDTH, 3) and np.array_equal(got, every[frames]), (name, frames)


def test_packets_before_an_unneeded_idr_are_left_out(clip, monkeypatch):
    name, path, every = clip
    sent = []
    real = video._packets_to_send
    monkeypatch.setattr(video, "_packets_to_send", lambda *a: sent.append(real(*a)) or sent[-1])
    frames = [FRAMES - 3]
    assert np.array_equal(decoded(path, frames), every[frames])
    idr_every = CLIPS[name][2]
    if idr_every:  # from the last IDR frame before the frame on (3 B-frames may come before it in decode order)
        assert len(sent[0]) <= idr_every + 3
    else:  # open GOPs' I-frames are no IDR, MPEG-4 is not tested for IDRs: nothing before the frame is left out
        assert len(sent[0]) >= FRAMES - 3 - 3


def test_unusable_timestamps_fall_back_to_the_in_order_decode(clip, monkeypatch):
    name, path, every = clip
    monkeypatch.setattr(video, "_decode_selected", lambda path, frames: None)
    frames = [1, 30, FRAMES - 1]
    assert np.array_equal(decoded(path, frames), every[frames])


def test_too_few_frames_names_the_count(clip):
    name, path, every = clip
    with pytest.raises(video.VideoFileError, match=f"has {FRAMES} decodable frames"):
        decoded(path, [3, FRAMES])
