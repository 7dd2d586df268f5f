"""Descriptions demonstrably help (issue 8), through the real CLI (DeepSpeed ZeRO-2, 1 rank, fp32).

In the informative world, sentence pairs share one pose recording and only the descriptions tell them apart;
in the noise world (each sentence its own motion, the same translator) the descriptions are random and must be
shut out. Same seed, steps and flags for every run; the recipe is uni_sign_ext/study.py's, as in the demo and
bench/fusion_study.py.
"""
from concurrent.futures import ThreadPoolExecutor

import pytest

from uni_sign_ext.study import INITIAL_GATE, train_and_test, world


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion_acceptance")
    informative, noise = world(root / "worlds", "informative"), world(root / "worlds", "noise")
    runs = {"pose_only": (informative, None), "informative": (informative, "gating"), "noise": (noise, "gating")}
    with ThreadPoolExecutor(len(runs)) as pool:  # one process per run: they share the cores
        done = {name: pool.submit(train_and_test, w, root / name, fusion) for name, (w, fusion) in runs.items()}
    return {name: future.result() for name, future in done.items()}


def test_descriptions_beat_pose_only_by_15_bleu4(runs):
    assert runs["informative"]["bleu4"] >= runs["pose_only"]["bleu4"] + 15, runs


def test_withholding_the_descriptions_costs_10_bleu4(runs):
    assert runs["informative"]["withheld"]["bleu4"] <= runs["informative"]["bleu4"] - 10, runs["informative"]


def test_gate_rises_on_described_frames(runs):
    assert runs["informative"]["gate_described"] > INITIAL_GATE + 0.1, runs["informative"]


def test_noise_descriptions_are_shut_out(runs):
    # Where the text is noise the gate shuts and the trained model ignores it: withholding it changes nothing.
    # Not asserted: "no worse than pose-only" — it fails today (the noise world's runs end below pose-only;
    # bench/results/fusion_study.md, the open limit of issue 8).
    noise = runs["noise"]
    assert noise["gate_described"] < 0.05, noise
    assert abs(noise["bleu4"] - noise["withheld"]["bleu4"]) <= 1, noise
