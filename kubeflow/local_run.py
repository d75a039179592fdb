"""Runs a compiled package (PipelineSpec YAML) on this machine, task by task, as the KFP v2
launcher would in a cluster: same executor input, same container command and arguments.

For each task, in dependency order: resolve its parameters (constants, pipeline parameters) and
input artifacts (upstream outputs), allocate its output artifacts under the work dir, write the
ExecutorInput JSON into the container's `{{$}}` argument, run the container's command here (its
`python` is this interpreter), then read the task's ExecutorOutput for the artifacts' metadata.
Only container executors are supported, as on open-source KFP; a lifecycle hook (FileBasedExampleGen's
driver) is not run, as open-source KFP does not run it.
"""

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List

from kubeflow import compile as kfp_compile


class PackageError(Exception):
    """The package asks for something the open-source KFP backend (and so this runner) cannot do."""


def task_order(tasks: Dict[str, Any]) -> List[str]:
    """The tasks in an order where each comes after its dependencies (stable, by name)."""
    order, done = [], set()
    pending = dict(sorted(tasks.items()))
    while pending:
        ready = [n for n, t in pending.items() if set(t.get("dependentTasks", [])) <= done]
        if not ready:
            raise PackageError(f"the tasks {sorted(pending)} depend on each other in a cycle")
        for name in ready:
            order.append(name)
            done.add(name)
            del pending[name]
    return order


def _artifact_type(definition: Dict[str, Any]) -> Dict[str, Any]:
    return definition.get("artifactType", {})


def executor_input(task_name: str, task: Dict[str, Any], component: Dict[str, Any],
                   params: Dict[str, Any], produced: Dict[str, Dict[str, Any]], task_dir: str) -> Dict[str, Any]:
    """Builds the ExecutorInput (as JSON-ready dict) the KFP launcher would give this task."""
    inputs = task.get("inputs", {})
    parameter_values = {}
    for name, source in inputs.get("parameters", {}).items():
        if "componentInputParameter" in source:
            parameter_values[name] = params[source["componentInputParameter"]]
        elif "runtimeValue" in source:
            value = source["runtimeValue"]
            parameter_values[name] = value["constant"] if "constant" in value else next(iter(value["constantValue"].values()))
        else:
            raise PackageError(f"task {task_name}: parameter {name} has an unsupported source {sorted(source)}")
    artifacts = {}
    for name, source in inputs.get("artifacts", {}).items():
        upstream = source.get("taskOutputArtifact")
        if upstream is None:
            raise PackageError(f"task {task_name}: input artifact {name} is not a task output ({sorted(source)})")
        artifacts[name] = {"artifacts": produced[upstream["producerTask"]][upstream["outputArtifactKey"]]}
    outputs = {}
    for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        outputs[name] = {"artifacts": [{
            "name": f"{task_name}.{name}", "uri": os.path.join(task_dir, name),
            "type": _artifact_type(definition), "metadata": {}}]}
    return {"inputs": {"parameterValues": parameter_values, "artifacts": artifacts},
            "outputs": {"artifacts": outputs, "outputFile": os.path.join(task_dir, "executor_output.json")}}


def _command(container: Dict[str, Any], payload: str) -> List[str]:
    command = [sys.executable if c == "python" else c for c in container.get("command", [])]
    return command + [a.replace("{{$}}", payload) for a in container.get("args", [])]


def _outputs(executor_in: Dict[str, Any], output_file: str) -> Dict[str, List[Dict[str, Any]]]:
    """Output artifacts as the ExecutorOutput reports them (with metadata), else as allocated."""
    produced = {k: v["artifacts"] for k, v in executor_in["outputs"]["artifacts"].items()}
    if os.path.exists(output_file):
        with open(output_file) as f:
            reported = json.load(f).get("artifacts", {})
        for key, value in reported.items():
            for allocated, artifact in zip(produced.get(key, []), value.get("artifacts", [])):
                allocated["metadata"] = artifact.get("metadata", {})
                allocated["uri"] = artifact.get("uri", allocated["uri"])
    return produced


def run(package: str, overrides: Dict[str, str], work_dir: str) -> int:
    """`kubeflow/runner.py run-local`: runs every task; returns the exit code."""
    if not os.path.exists(package):
        print(f"error: {package}: no such package; run `python kubeflow/runner.py compile` first")
        return 1
    spec = kfp_compile.load(package)
    try:
        params = kfp_compile.parameter_values(spec, overrides)
        tasks = spec["root"]["dag"]["tasks"]
        order = task_order(tasks)
    except (ValueError, PackageError) as e:
        print(f"error: {e}")
        return 1
    run_id = time.strftime("run-%Y%m%d-%H%M%S")
    run_dir = os.path.abspath(os.path.join(work_dir, run_id))
    os.makedirs(run_dir)
    print(f"run-local {package}: {len(order)} tasks, parameters {params}")
    print(f"task outputs and logs: {run_dir}", flush=True)
    produced: Dict[str, Dict[str, Any]] = {}
    started = time.time()
    for name in order:
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "container" not in executor:
            print(f"error: task {name}: executor {sorted(executor)} is not a container; open-source KFP runs only containers")
            return 1
        task_dir = os.path.join(run_dir, name)
        os.makedirs(task_dir)
        executor_in = executor_input(name, task, component, params, produced, task_dir)
        with open(os.path.join(task_dir, "executor_input.json"), "w") as f:
            json.dump(executor_in, f, indent=1)
        command = _command(executor["container"], json.dumps(executor_in))
        print(f"[{time.time() - started:5.0f}s] {name} ...", flush=True)
        task_start = time.time()
        with open(os.path.join(task_dir, "log.txt"), "w") as log:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            print(f"error: task {name} failed (exit {proc.returncode}); its log: {os.path.join(task_dir, 'log.txt')}")
            with open(os.path.join(task_dir, "log.txt")) as log:
                tail = [l.rstrip() for l in log.readlines()[-3:]]
            for line in tail:
                print(f"  {line}")
            return 1
        produced[name] = _outputs(executor_in, executor_in["outputs"]["outputFile"])
        print(f"[{time.time() - started:5.0f}s] {name} done ({time.time() - task_start:.0f} s)", flush=True)
    _summary(produced, time.time() - started)
    return 0


def _custom(artifact: Dict[str, Any], key: str):
    return artifact.get("metadata", {}).get(key)


def _summary(produced: Dict[str, Dict[str, Any]], seconds: float) -> None:
    print(f"\nall tasks succeeded in {seconds:.0f} s")
    blessing = produced.get("Evaluator", {}).get("blessing", [{}])[0]
    print(f"blessed:       {'YES' if _custom(blessing, 'blessed') in (1, 1.0) else 'NO'}")
    pushed = produced.get("Pusher", {}).get("pushed_model", [{}])[0]
    if _custom(pushed, "pushed") in (1, 1.0):
        print(f"pushed model:  {_custom(pushed, 'pushed_destination')}")
    else:
        print("pushed model:  none")
    report = produced.get("Review", {}).get("report", [{}])[0]
    if _custom(report, "report_path"):
        print(f"review report: {_custom(report, 'report_path')}")
