"""Mutation check: plant one small bug at a time in the modules where a bug costs users most, run only
that module's tests, and list the bugs no test noticed ("survivors").

    python bench/mutation_check.py                      # 8 seeded mutants in every module: 12–30 s a
                                                        # mutant on 2 busy cores (one module: 2–5 min)
    python bench/mutation_check.py --per-module 0       # every mutant (long)
    python bench/mutation_check.py --module metrics --report bench/results/mutation_score.md

Mutations (on the AST, one per run): flip a comparison, shift an integer constant by one, swap and/or,
swap +/- and * and /, return None, drop a statement that is a bare call. The code is a copy of the
repo's tracked files in a temporary folder, so the working tree is never touched.
"""
import argparse
import ast
import copy
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {  # module → (file, the tests that cover it[, the top-level classes/functions to mutate: default all])
    "alignment": ("uni_sign_ext/alignment.py", ["tests/test_alignment.py"]),
    "fusion": ("uni_sign_ext/fusion.py", ["tests/test_fusion.py", "tests/test_run_machinery.py::"
                                          "test_rng_state_round_trip_includes_the_fusions_text_dropout_stream"]),
    "checkpoint": ("uni_sign_ext/checkpoint.py", ["tests/test_collate_and_checkpoint.py"]),
    "metrics": ("uni_sign_ext/metrics.py", ["tests/test_metrics.py"] + [f"tests/test_tasks.py::{name}" for name in (
        "test_islr_accuracy_by_hand", "test_islr_accuracy_equals_upstreams", "test_wer_by_hand",
        "test_wer_of_long_hypotheses_does_not_overflow", "test_wer_and_its_parts_equal_upstreams",
        "test_scores_per_task")]),  # ISLR accuracy and WER are pinned in test_tasks.py
    "feature_cache": ("uni_sign_ext/feature_cache.py", ["tests/test_feature_cache.py"]),
    "pose": ("uni_sign_ext/pose.py", ["tests/test_pose.py"]),
    # the skip/problem counting of fine_tuning.py (the loops that feed it are pinned by whole runs, too slow here)
    "counting": ("fine_tuning.py", ["tests/test_bad_inputs.py::test_problem_log_reports_counts",
                                    "tests/test_run_machinery.py::test_problems_met_on_two_gloo_ranks_count_once"],
                 ("ProblemLog",)),
    # RGB-pose model side: the numeric references need torchvision (run this script with such a Python)
    "rgb_backbone": ("uni_sign_ext/rgb_backbone.py", ["tests/test_rgb_model.py", "tests/test_rgb_reference.py"]),
    "rgb_fusion": ("uni_sign_ext/rgb_fusion.py", ["tests/test_rgb_model.py", "tests/test_rgb_reference.py"]),
    "deformable_attention": ("uni_sign_ext/deformable_attention.py",
                             ["tests/test_rgb_model.py", "tests/test_rgb_reference.py"]),
}
COMPARE_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
                ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}


def mutation_sites(tree, scope=None):
    """[(node index in ast.walk order, description)] of every mutation this tree allows (only inside the
    top-level classes/functions named in `scope`, when given)."""
    inside = None if scope is None else {id(node) for top in tree.body if getattr(top, "name", None) in scope
                                         for node in ast.walk(top)}
    sites = []
    for index, node in enumerate(ast.walk(tree)):
        if inside is not None and id(node) not in inside:
            continue
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Compare) and type(node.ops[0]) in COMPARE_FLIP:
            sites.append((index, f"line {line}: {type(node.ops[0]).__name__} → "
                                 f"{COMPARE_FLIP[type(node.ops[0])].__name__}"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites.append((index, f"line {line}: constant {node.value} → {node.value + 1}"))
        elif isinstance(node, ast.BoolOp):
            sites.append((index, f"line {line}: {type(node.op).__name__} → "
                                 f"{'Or' if isinstance(node.op, ast.And) else 'And'}"))
        elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
            sites.append((index, f"line {line}: {type(node.op).__name__} → {BINOP_SWAP[type(node.op)].__name__}"))
        elif isinstance(node, ast.Return) and node.value is not None:
            sites.append((index, f"line {line}: return None"))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            sites.append((index, f"line {line}: call dropped"))
    return sites


def mutate(tree, target):
    """A copy of the tree with the node at walk index `target` mutated."""
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[target]
    if isinstance(node, ast.Compare):
        node.ops[0] = COMPARE_FLIP[type(node.ops[0])]()
    elif isinstance(node, ast.Constant):
        node.value += 1
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.BinOp):
        node.op = BINOP_SWAP[type(node.op)]()
    elif isinstance(node, ast.Return):
        node.value = ast.Constant(None)
    elif isinstance(node, ast.Expr):
        node.value = ast.Constant(None)  # the statement stays, as a no-op
    return ast.fix_missing_locations(tree)


def copy_repo(destination):
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in names.splitlines():
        if (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)


def run_tests(workdir, tests, timeout):
    env = dict(os.environ, PYTHONPATH=str(workdir), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("UNISIGN_ROOT", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "passed" if proc.returncode == 0 else "killed"


def check_module(name, workdir, per_module, seed, timeout):
    source_path, tests, *scope = TARGETS[name]
    path = workdir / source_path
    original = path.read_text(encoding="utf-8")
    tree = ast.parse(original)
    sites = mutation_sites(tree, *scope)
    chosen = sites if per_module <= 0 else sorted(random.Random(seed).sample(sites, min(per_module, len(sites))))
    results = []
    try:
        for target, description in chosen:
            path.write_text(ast.unparse(mutate(tree, target)), encoding="utf-8")
            start = time.time()
            outcome = run_tests(workdir, tests, timeout)
            results.append((description, outcome, time.time() - start))
            print(f"{name:14s} {outcome:8s} {description}", flush=True)
    finally:
        path.write_text(original, encoding="utf-8")
    return len(sites), results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", action="append", choices=sorted(TARGETS),
                        help="module(s) to check (default: all)")
    parser.add_argument("--per-module", type=int, default=8, help="mutants per module, seeded sample; 0: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=240, help="seconds per mutant's test run")
    parser.add_argument("--report", help="write a markdown summary here")
    args = parser.parse_args(argv)
    modules = args.module or sorted(TARGETS)
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        copy_repo(workdir)
        for name in modules:
            if run_tests(workdir, TARGETS[name][1], args.timeout) != "passed":
                raise SystemExit(f"the tests of {name} fail without any mutation: fix them first")
            summary[name] = check_module(name, workdir, args.per_module, args.seed, args.timeout)
    lines = ["| module | mutation sites | mutants run | killed | survived |", "|---|---|---|---|---|"]
    survivors = []
    for name, (total, results) in summary.items():
        killed = sum(outcome != "passed" for _, outcome, _ in results)
        lines.append(f"| {name} | {total} | {len(results)} | {killed} | {len(results) - killed} |")
        survivors += [f"- {name}, {description}" for description, outcome, _ in results if outcome == "passed"]
    text = "\n".join(lines + ["", "Survivors:"] + (survivors or ["- none"])) + "\n"
    print(text)
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
