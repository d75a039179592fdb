"""The benchmarks run end to end on tiny settings (their figures are for bench/README.md)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _run(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


# `python watch.py REPO RECORD MODULE ARGS...` runs MODULE ARGS as `python -m MODULE ARGS` would and writes to
# RECORD each `import tensorflow...` statement that a file of REPO (not of its .venv) executed, as
# "path:function", sorted.
WATCH_TENSORFLOW_IMPORTS = r'''
import builtins, json, os, runpy, sys
repo, record, module = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3]
venv = os.path.realpath(sys.prefix)
seen, real_import = set(), builtins.__import__


def watching(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and name.split(".")[0] == "tensorflow":
        where = os.path.realpath((globals or {}).get("__file__") or "")
        if where.startswith(repo + os.sep) and not where.startswith(venv + os.sep):
            seen.add(os.path.relpath(where, repo) + ":" + sys._getframe(1).f_code.co_name)
    return real_import(name, globals, locals, fromlist, level)


builtins.__import__ = watching
sys.argv = [module] + sys.argv[4:]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    with open(record, "w") as f:
        json.dump(sorted(seen), f)
'''


@pytest.mark.slow
def test_gpu_bench_runs_on_the_cpu_and_only_names_the_device_through_tensorflow(tmp_path):
    watch, imports, out = tmp_path / "watch.py", tmp_path / "imports.json", tmp_path / "gpu.json"
    watch.write_text(WATCH_TENSORFLOW_IMPORTS)
    proc = _run(str(watch), REPO, str(imports), "bench.gpu_train", "--batch-sizes", "2",
                "--precisions", "float32,mixed_bfloat16", "--steps", "4", "--json", str(out),
                env={"KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "device: cpu" in proc.stdout
    result = json.load(open(out))
    assert [(r["precision"], r["batch_size"]) for r in result["rows"]] == [("float32", 2), ("mixed_bfloat16", 2)]
    from bench.gpu_train import GFLOP_PER_IMAGE  # pylint: disable=import-outside-toplevel
    for row in result["rows"]:  # a CPU trains the ResNet at 1 to a few hundred images a second
        assert 0.5 < row["images_per_s"] < 2000 and row["tflops"] == pytest.approx(row["images_per_s"] * GFLOP_PER_IMAGE / 1000)
        assert f"{row['batch_size']:6d} {row['images_per_s']:10.0f}" in proc.stdout  # the table shows the JSON's figures
    # The bench and trainer/resnet.py (which it builds and trains) import TensorFlow nowhere but where
    # Keras's backend is TensorFlow (here it is): where the device is named, and in the batch norm's
    # fused path. On the JAX/PyTorch GPU machines neither runs, and there is no TensorFlow.
    assert json.load(open(imports)) == ["bench/gpu_train.py:device_name", "trainer/resnet.py:call"]


@pytest.mark.slow
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
    assert results[1]["onednn"] and results[2]["onednn"]  # the Trainer's arms run oneDNN's kernels on any CPU


def test_train_throughput_as_avx2_gives_each_arm_what_an_avx2_cpu_gives_it():
    """Baseline: TF's own kernels (TF turns oneDNN on by itself only on newer ISAs); Trainer: oneDNN held
    to AVX2, in float32 (the Trainer picks bfloat16 only with AMX). Without --as-avx2 nothing is pinned."""
    from bench import train_throughput  # pylint: disable=import-outside-toplevel
    arms = {name: (arm, env, changes) for name, arm, env, changes in train_throughput.plan_arms(
        sweep=True, only="batch 64", as_avx2=True)}
    assert list(arms) == ["baseline: fit on NumPy arrays", "trainer", "trainer, batch 64"]
    assert arms["baseline: fit on NumPy arrays"] == (
        "baseline", {"ONEDNN_MAX_CPU_ISA": "AVX2", "TF_ENABLE_ONEDNN_OPTS": "0"}, {})
    assert arms["trainer"] == ("trainer", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"precision": "float32"})
    assert arms["trainer, batch 64"][2] == {"precision": "float32", "batch_size": 64}
    plain = train_throughput.plan_arms(sweep=False)
    assert [(name, env) for name, _, env, _ in plain] == [
        ("baseline: fit on NumPy arrays", {}), ("trainer", {}), ("trainer, float32", {})]


@pytest.mark.slow
def test_profile_step_lists_the_convolutions_by_op_type(tmp_path):
    out = tmp_path / "profile.json"
    proc = _run("bench/profile_step.py", "--steps", "1", "--warmup", "1", "--batch-size", "4", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "oneDNN kernels on" in proc.stdout and "by group:" in proc.stdout
    profile = json.load(open(out))
    for group in ("convolution, forward", "convolution, backward (input)", "convolution, backward (filter)",
                  "optimizer"):
        assert profile["groups_ms"].get(group, 0) > 0, (group, profile["groups_ms"])
    assert profile["ops_ms"].get("ResourceApplyAdam", 0) > 0  # the Trainer's fused Adam


def test_make_run_bench_reads_the_run_summary():
    from bench import make_run  # pylint: disable=import-outside-toplevel
    from components.report import run_summary  # pylint: disable=import-outside-toplevel

    report = run_summary.RunReport(run_id="r1", components=[
        run_summary.ComponentRun("ExampleGen", "complete", 8.4, {}, None),
        run_summary.ComponentRun("Trainer", "complete", 363.2, {}, None),
        run_summary.ComponentRun("Pusher", "cached", 0.0, {}, None)], accuracy=0.96, example_count=300, blessed=True,
        pushed_to="/x/serving_model/1", training="5 epochs in 350 s, stopped for time",
        shifted={"evaluated": 120, "accuracy": {"as they are": 0.95, "background": 0.5, "all": 0.25}})
    lines = ("noise\n" + run_summary.summary_text(report, 470.0, "synthetic", "/x")).splitlines()
    components, facts = make_run.parse_summary(lines)
    assert components == [("ExampleGen", "complete", 8), ("Trainer", "complete", 363)]
    assert facts["eval accuracy"] == "0.9600 on 300 eval examples" and facts["blessed"] == "YES"
    assert facts["pushed model"] == "/x/serving_model/1" and facts["training"].endswith("stopped for time")
    assert facts["shifted eval"] == ("as they are 0.95, background 0.50, all 0.25 (120 eval images; "
                                     "see the review report)")


def test_accuracy_bench_names_a_missing_data_folder(tmp_path):
    proc = _run("bench/accuracy.py", "--data", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert proc.stdout.strip() == f"error: {tmp_path / 'nowhere'}: no such folder (the shared photos are in ../shared/data)"


def _accuracy_json(path, label, in_domain, phone):
    held_out = {name: {"correct": c, "n": 232, "accuracy": c / 232, "low": c / 232 - 0.05, "high": c / 232 + 0.04}
                for name, c in (("in-domain", in_domain), ("phone proxy: phone", phone))}
    path.write_text(json.dumps({"label": label, "split": "dev", "validation": 0.95, "held_out": held_out,
                                "people": {"dev": 43, "test": 41, "train": 132}, "epochs": 30,
                                "exported_epoch": 28}))
    return str(path)


def test_accuracy_bench_sets_runs_side_by_side_with_what_each_moved(tmp_path):
    before = _accuracy_json(tmp_path / "a.json", "defaults", 200, 45)
    after = _accuracy_json(tmp_path / "b.json", "+ turns", 210, 90)
    proc = _run("bench/accuracy.py", "--table", before, after)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "| measure (95 % interval) | defaults | + turns |"
    assert lines[3] == "| phone proxy: phone | 0.194 (0.14-0.23) | 0.388 (0.34-0.43) +0.194 |"
    assert "| epochs run (exported) | 30 (28) | 30 (28) |" in lines


@pytest.mark.slow
def test_serve_bench_prints_every_level_beside_the_in_process_limit(tmp_path):
    out = tmp_path / "serve.json"
    proc = _run("bench/serve_load.py", "--concurrency", "1,4", "--requests", "8", "--seconds", "20", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("CPU: ") and "batched / in-process" in proc.stdout
    results = json.load(open(out))
    assert set(results["server"]) == {"batched/1", "batched/4", "unbatched/1", "unbatched/4"}
    for name, level in results["server"].items():
        clients = int(name.split("/")[1])
        assert level["requests"] == 8 and level["failures"] == 0 and 1 < level["p50_ms"] <= level["p99_ms"]
        # Closed-loop clients (Little's law): answers per second x latency ~ clients in flight. Fails on
        # a rate or latency in the wrong unit, or computed over the wrong time.
        assert 0.4 * clients < level["per_s"] * level["p50_ms"] / 1000 < 2.5 * clients, (name, level)
    assert set(results["in_process"]) == {"1", "4"}


@pytest.mark.slow
def test_serve_abuse_bench_prints_both_runs_and_how_the_abuse_was_answered(tmp_path):
    """On a small model and a few seconds: the figures are for bench/README.md, not for this test."""
    import keras  # pylint: disable=import-outside-toplevel
    from trainer import export  # pylint: disable=import-outside-toplevel
    model = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(6, activation="softmax")])
    export.export_serving_model(model, str(tmp_path / "serving" / "1"))
    out = tmp_path / "abuse.json"
    proc = _run("bench/serve_abuse.py", "--serving-dir", str(tmp_path / "serving"), "--clients", "2", "--seconds", "4",
                "--skip-unlimited", "--bomb-mib", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("CPU: ") and "p99 / alone" in proc.stdout
    runs = json.load(open(out))["runs"]
    assert set(runs) == {"alone", "beside an abusive client"}
    for run in runs.values():
        assert run["answers"] > 0 and 0 < run["p50_ms"] <= run["p99_ms"]
    answered = runs["beside an abusive client"]["answered"]
    assert answered.get("8000 rows: 400", 0) > 0 and answered.get("32 x 36 MP: 413", 0) > 0, answered
    assert not [k for k in answered if k.startswith(("8000 rows", "32 x 36 MP")) and not k.endswith(("400", "413"))]
    # inflated within the body limit, parsed in a worker: refused for its rows (or its size)
    assert [k for k in answered if k.startswith("gzip") and k.endswith((": 400", ": 413"))], answered


@pytest.mark.slow
def test_short_training_prints_both_eval_figures_every_few_steps_and_the_confusion():
    proc = _run("-m", "bench.short_training", "--epochs", "1", "--every", "1", "--train", "64", "--eval", "12",
                "--set", "augment=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [l for l in proc.stdout.splitlines() if l.startswith("step ")]
    assert [l.split(":")[0] for l in steps] == ["step    1", "step    2"]  # 64 images, batch 32: 2 steps
    assert all("(moving statistics)" in l and "(measured)" in l for l in steps)
    assert "confusion (rows: true class, columns: predicted):" in proc.stdout
    assert "synthetic set v2" in proc.stdout
