"""Description files: formats, hardening, folder layouts, and how malformed files are reported."""
import json
import logging

import pytest

from temporal_alignment import DescriptionLoader
from uni_sign_ext.descriptions import (DescriptionFormatError, find_description_dir, parse_descriptions,
                                       parse_descriptions_with_warnings)

EXPECTED = {0: "person moves hand to left", 2: "hand touches chin", 5: "both hands move down"}


@pytest.mark.parametrize("document, fmt", [
    ({"0": "person moves hand to left", "2": "hand touches chin", "5": "both hands move down"}, "canonical"),
    ({5: "both hands move down", 0: "person moves hand to left", 2: "hand touches chin"}, "canonical"),
    ({"descriptions": {"0": "person moves hand to left", "2": "hand touches chin",
                       "5": "both hands move down"}, "model": "x"}, "wrapper"),
    ([{"frame": 2, "text": "hand touches chin"}, {"frame": 0, "text": "person moves hand to left"},
      {"frame": "5", "text": "both hands move down"}], "frames"),
])
def test_formats(document, fmt):
    descriptions, parsed_fmt, warnings = parse_descriptions_with_warnings(document)
    assert descriptions == EXPECTED and parsed_fmt == fmt and warnings == []
    assert parse_descriptions(document) == EXPECTED


def test_segments_cover_every_frame_inclusive():
    document = [{"start": 0, "end": 1, "text": "a"}, {"start": 3, "end": 5, "text": "b"}]
    descriptions, fmt, warnings = parse_descriptions_with_warnings(document)
    assert descriptions == {0: "a", 1: "a", 3: "b", 4: "b", 5: "b"}
    assert fmt == "segments" and warnings == []


def test_wrapper_around_a_list():
    document = {"descriptions": [{"frame": 1, "text": "a"}], "fps": 25}
    assert parse_descriptions_with_warnings(document)[:2] == ({1: "a"}, "wrapper")


def test_empty_documents_have_no_descriptions():
    assert parse_descriptions({}) == {}
    assert parse_descriptions([]) == {}
    assert parse_descriptions({"descriptions": {}}) == {}


def test_texts_are_stripped_and_empty_ones_dropped():
    descriptions, _, warnings = parse_descriptions_with_warnings({"0": "  a  ", "1": "", "2": "   \n", "3": None})
    assert descriptions == {0: "a"}
    assert len(warnings) == 3 and all("empty" in w for w in warnings)
    assert [w.split(":")[0] for w in warnings] == ["frame 1", "frame 2", "frame 3"]


def test_negative_and_huge_frames_are_dropped():
    document = {"-1": "neg", "0": "ok", "10000000": "last allowed", "10000001": "huge", "9" * 5000: "absurd"}
    descriptions, _, warnings = parse_descriptions_with_warnings(document)
    assert descriptions == {0: "ok", 10_000_000: "last allowed"}
    assert len(warnings) == 3 and all("out of range" in w for w in warnings)


def test_bad_segments_are_dropped_and_reported():
    document = [{"start": -3, "end": 1, "text": "negative"}, {"start": 5, "end": 2, "text": "backwards"},
                {"start": 0, "end": 20_000_000, "text": "huge"}, {"start": 7, "end": 8, "text": " "},
                {"start": 9, "end": 9, "text": "ok"}]
    descriptions, _, warnings = parse_descriptions_with_warnings(document)
    assert descriptions == {9: "ok"}
    assert len(warnings) == 4


def test_duplicate_json_keys_keep_the_first(tmp_path):
    folder = tmp_path / "CSL_Daily"
    folder.mkdir()
    (folder / "s.json").write_text('{"0": "first", "1": "b", "0": "second"}')
    loader = DescriptionLoader(folder)
    assert loader.load("s")[0] == {0: "first", 1: "b"}
    assert len(loader.problems) == 1 and "'0'" in loader.problems[0][1]


def test_same_frame_spelled_twice_keeps_the_first():
    descriptions, _, warnings = parse_descriptions_with_warnings({"1": "first", "01": "second"})
    assert descriptions == {1: "first"} and len(warnings) == 1


def test_duplicate_frame_entries_keep_the_first():
    document = [{"frame": 1, "text": "first"}, {"frame": 1, "text": "second"}, {"frame": 1, "text": "first"}]
    descriptions, _, warnings = parse_descriptions_with_warnings(document)
    assert descriptions == {1: "first"} and len(warnings) == 2


def test_overlapping_segments_keep_the_first_and_are_reported_once():
    document = [{"start": 0, "end": 4, "text": "a"}, {"start": 3, "end": 1000, "text": "b"}]
    descriptions, _, warnings = parse_descriptions_with_warnings(document)
    assert descriptions[3] == descriptions[4] == "a" and descriptions[5] == descriptions[1000] == "b"
    assert len(descriptions) == 1001
    assert len(warnings) == 1 and "2 frames" in warnings[0]
    assert parse_descriptions_with_warnings({"descriptions": document})[2] == warnings


@pytest.mark.parametrize("document", [
    [1, 2, 3],
    "text",
    42,
    None,
    {"zero": "a"},
    {"1.5": "a"},
    {"1_0": "a"},
    {"0": 5},
    {"0": {"text": "a"}},
    [{"frame": 1.0, "text": "a"}],
    [{"frame": True, "text": "a"}],
    [{"frame": 1, "text": "a"}, {"start": 2, "end": 3, "text": "b"}],
    [{"text": "a"}],
    {"descriptions": "a"},
])
def test_other_documents_are_format_errors(document):
    with pytest.raises(DescriptionFormatError):
        parse_descriptions(document)


def test_format_error_names_the_accepted_formats():
    with pytest.raises(DescriptionFormatError, match="expected"):
        parse_descriptions([1, 2])
    with pytest.raises(DescriptionFormatError, match="'zero' is not an integer"):
        parse_descriptions({"zero": "a"})


def write(path, document):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize("layout", ["", "split_data/train", "train"])
def test_layouts(tmp_path, layout):
    folder = tmp_path / "CSL_Daily"
    write(folder / layout / "S000196_P0000_T00.json", {"0": "a", "2": "b"})
    loader = DescriptionLoader(folder, phase="train")
    descriptions, metadata = loader.load("S000196_P0000_T00")
    assert descriptions == {0: "a", 2: "b"}
    assert metadata == {"path": str(folder / layout / "S000196_P0000_T00.json"), "format": "canonical"}
    assert loader.sample_ids() == {"S000196_P0000_T00"}
    assert loader.directory == folder and loader.problems == []


def test_other_splits_and_flat_are_fallbacks(tmp_path):
    folder = tmp_path / "How2Sign"
    write(folder / "split_data" / "dev" / "clip.json", {"0": "dev text"})
    write(folder / "clip.json", {"0": "flat text"})
    write(folder / "test" / "clip.json", {"0": "test text"})
    write(folder / "dev" / "only_in_dev.json", {"1": "dev only"})
    assert DescriptionLoader(folder, phase="dev").load("clip")[0] == {0: "dev text"}
    assert DescriptionLoader(folder, phase="test").load("clip")[0] == {0: "test text"}
    assert DescriptionLoader(folder, phase="train").load("clip")[0] == {0: "flat text"}
    assert DescriptionLoader(folder).load("clip")[0] == {0: "flat text"}
    assert DescriptionLoader(folder, phase="train").load("only_in_dev")[0] == {1: "dev only"}
    assert DescriptionLoader(folder, phase="train").sample_ids() == {"clip", "only_in_dev"}


def test_files_are_indexed_once_at_construction(tmp_path):
    folder = tmp_path / "CSL_Daily"
    write(folder / "a.json", {"0": "a"})
    loader = DescriptionLoader(folder)
    write(folder / "b.json", {"0": "b"})
    assert loader.load("b") == ({}, {})


def test_sample_names_with_suffixes(tmp_path):
    folder = tmp_path / "How2Sign"
    write(folder / "test" / "-fZc293MpJk_0-1-rgb_front.json", {"3": "a"})
    loader = DescriptionLoader(folder, phase="test")
    for name in ["-fZc293MpJk_0-1-rgb_front", "-fZc293MpJk_0-1-rgb_front.mp4",
                 "-fZc293MpJk_0-1-rgb_front.pkl", "-fZc293MpJk_0-1-rgb_front.json"]:
        assert loader.load(name)[0] == {3: "a"}


def test_wrapper_metadata(tmp_path):
    folder = tmp_path / "CSL_Daily"
    write(folder / "s.json", {"descriptions": {"0": "a"}, "model": "qwen", "fps": 25})
    descriptions, metadata = DescriptionLoader(folder).load("s")
    assert descriptions == {0: "a"}
    assert metadata == {"path": str(folder / "s.json"), "format": "wrapper", "model": "qwen", "fps": 25}


@pytest.mark.parametrize("given, existing", [("CSL_Daily", "CSL-Daily"), ("CSL-Daily", "CSL_Daily"),
                                             ("CSL_Daily", "CSL_Daily"), ("CSL_News", "CSL-News")])
def test_find_description_dir_accepts_both_spellings(tmp_path, given, existing):
    (tmp_path / existing).mkdir()
    assert find_description_dir(tmp_path, given) == tmp_path / existing


def test_find_description_dir_prefers_the_exact_name_and_returns_none_when_absent(tmp_path):
    (tmp_path / "CSL-Daily").mkdir()
    (tmp_path / "CSL_Daily").mkdir()
    assert find_description_dir(tmp_path, "CSL-Daily") == tmp_path / "CSL-Daily"
    assert find_description_dir(tmp_path, "CSL_Daily") == tmp_path / "CSL_Daily"
    assert find_description_dir(tmp_path, "How2Sign") is None
    assert find_description_dir(tmp_path / "missing", "CSL_Daily") is None


def test_missing_file_is_no_descriptions(tmp_path, caplog):
    loader = DescriptionLoader(tmp_path / "CSL_Daily", phase="train")  # the folder need not exist
    with caplog.at_level(logging.WARNING):
        assert loader.load("S000001_P0000_T00") == ({}, {})
    assert loader.problems == [] and caplog.records == []


@pytest.mark.parametrize("content, reason", [
    (b'{"0": "a",', "not JSON"),
    (b'{"0": "caf\xe9"}', "not UTF-8"),
    (b"[1, 2, 3]", "expected"),
    (b'{"first": "a"}', "not an integer"),
])
def test_malformed_files_are_reported_not_raised(tmp_path, caplog, content, reason):
    folder = tmp_path / "CSL_Daily"
    folder.mkdir()
    path = folder / "bad.json"
    path.write_bytes(content)
    loader = DescriptionLoader(folder)
    with caplog.at_level(logging.WARNING, logger="uni_sign_ext.descriptions"):
        descriptions, metadata = loader.load("bad")
    assert descriptions == {}
    assert metadata["path"] == str(path) and reason in metadata["error"]
    assert loader.problems == [(str(path), metadata["error"])]
    assert len(caplog.records) == 1
    assert str(path) in caplog.text and reason in caplog.text


def test_problems_are_recorded_once_per_file(tmp_path, caplog):
    folder = tmp_path / "CSL_Daily"
    folder.mkdir()
    (folder / "bad.json").write_text("not json")
    write(folder / "partly.json", {"0": "a", "1": " "})
    loader = DescriptionLoader(folder)
    with caplog.at_level(logging.WARNING, logger="uni_sign_ext.descriptions"):
        for _ in range(3):
            assert loader.load("bad")[1]["error"].startswith("not JSON")  # every load still says so
            assert loader.load("partly")[0] == {0: "a"}
    assert len(caplog.records) == 2
    assert sorted(path for path, _ in loader.problems) == [str(folder / "bad.json"), str(folder / "partly.json")]


def test_dropped_entries_are_recorded_and_logged(tmp_path, caplog):
    folder = tmp_path / "CSL_Daily"
    folder.mkdir()
    path = folder / "s.json"
    path.write_text('{"0": "a", "1": "", "-4": "neg", "0": "again"}')
    loader = DescriptionLoader(folder)
    with caplog.at_level(logging.WARNING, logger="uni_sign_ext.descriptions"):
        descriptions, metadata = loader.load("s")
    assert descriptions == {0: "a"} and "error" not in metadata
    assert len(loader.problems) == 3 and all(p == str(path) for p, _ in loader.problems)
    assert len(caplog.records) == 1 and str(path) in caplog.text


def test_utf8_bom_and_non_ascii_text(tmp_path):
    folder = tmp_path / "CSL_Daily"
    folder.mkdir()
    (folder / "s.json").write_bytes('\ufeff{"0": "右手移到下巴"}'.encode("utf-8"))
    loader = DescriptionLoader(folder)
    assert loader.load("s")[0] == {0: "右手移到下巴"} and loader.problems == []
