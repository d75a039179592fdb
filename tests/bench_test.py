"""The training benchmarks run end to end on tiny settings (their figures are for the README)."""

import ast
import json
import os
import subprocess
import sys

from tests.helpers import REPO


def _run(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def _imported_modules(path, top_level_only=False):
    tree = ast.parse(open(os.path.join(REPO, path)).read())
    names = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_gpu_bench_and_the_model_need_no_tensorflow():
    # gpu_train.py imports TensorFlow only to name the device when Keras's backend is TensorFlow
    assert "tensorflow" not in _imported_modules("bench/gpu_train.py", top_level_only=True)
    assert "tensorflow" not in _imported_modules("trainer/model.py")
    source = open(os.path.join(REPO, "bench/gpu_train.py")).read()
    assert source.count("import tensorflow") == 1
    assert source.index('if backend == "tensorflow":') < source.index("import tensorflow")


def test_gpu_bench_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run("bench/gpu_train.py", "--batch-sizes", "2", "--precisions", "float32,mixed_bfloat16",
                "--steps", "4", "--json", str(out), env={"KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "device: cpu" in proc.stdout
    result = json.load(open(out))
    assert [(r["precision"], r["batch_size"]) for r in result["rows"]] == [("float32", 2), ("mixed_bfloat16", 2)]
    assert all(r["images_per_s"] > 0 for r in result["rows"])


def test_train_throughput_prints_both_arms_and_the_ratio(tmp_path):
    proc = _run("bench/train_throughput.py", "--images", "32", "--epochs", "2", "--batch-size", "16",
                "--workdir", str(tmp_path), "--repeats", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "baseline: fit on NumPy arrays" in proc.stdout and "ratio trainer / baseline:" in proc.stdout
    results = json.load(open(tmp_path / "results.json"))
    assert [r["name"] for r in results] == ["baseline: fit on NumPy arrays", "trainer", "trainer, float32"]
    assert results[2]["devices"]["precision"] == "float32"
    from trainer.task import cpu_has_amx_bf16  # pylint: disable=import-outside-toplevel
    assert results[1]["devices"]["precision"] == ("mixed_bfloat16" if cpu_has_amx_bf16() else "float32")


def test_accuracy_bench_names_a_missing_data_folder(tmp_path):
    proc = _run("bench/accuracy.py", "--data", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert proc.stdout.strip() == f"error: {tmp_path / 'nowhere'}: no such folder (the shared photos are in ../shared/data)"
