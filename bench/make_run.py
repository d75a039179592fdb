"""Times `make run` from a fresh clone, as a new user runs it: set-up, then each component.

    python bench/make_run.py [--workdir DIR] [--keep] [--as-avx2] [--busy N] [--runs K] [-- runner flags ...]

It clones this repository's committed HEAD into a new directory, runs `make setup` (the virtual
environment; uv's download cache is whatever this machine has), then `make run` with the flags
after `--` (none: the defaults a user gets), and reads the run summary `make run` prints at its
end. It prints the CPU model, the set-up time, each component's time from the summary, the Trainer's
epochs, the eval accuracy, the blessing and the push, and the total from `git clone` to the end.

`--busy N` starts N busy programs (`python -c 'while True: pass'`) before the clone and stops them
after the run, as a user's machine with other work on it. `--runs K` repeats the whole thing K
times, each from a fresh clone, and ends with one line per run.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from bench.machine import cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENT_LINE = re.compile(r"^  (\w+)\s+(complete|cached|failed|running|\w+)\s+(\d+) s$")


def timed(cmd, cwd, log) -> float:
    """Runs `cmd`, copying its output to `log` and to stdout; returns its wall time. Exits on failure."""
    start = time.perf_counter()
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log.append(line.rstrip("\n"))
            print("  | " + line, end="", flush=True)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}) in {cwd}")
    return time.perf_counter() - start


def parse_summary(lines):
    """The component times and the result lines of the run summary at the end of `lines`."""
    start = max((i for i, l in enumerate(lines) if l == "signs-pipeline run summary"), default=None)
    if start is None:
        return [], {}
    components, facts = [], {}
    for line in lines[start:]:
        m = COMPONENT_LINE.match(line)
        if m:
            components.append((m.group(1), m.group(2), int(m.group(3))))
        for key in ("eval accuracy", "blessed", "pushed model", "training", "shifted eval"):
            if line.startswith(key + ":"):
                facts[key] = line.split(":", 1)[1].strip()
    return components, facts


def start_busy(n: int):
    """N processes that each keep a core busy, as other programs on a user's machine do."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    runner_args = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=None, help="where the clone goes (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    p.add_argument("--as-avx2", action="store_true",
                   help="on a CPU with AVX-512 or AMX, run as a CPU with AVX2 alone runs: oneDNN held to "
                        "its AVX2 code (ONEDNN_MAX_CPU_ISA=AVX2) and the Trainer in float32 (--precision "
                        "float32, its choice on a CPU without AMX)")
    p.add_argument("--busy", type=int, default=0, help="busy programs to run beside it (one core each)")
    p.add_argument("--runs", type=int, default=1, help="fresh clones to run, one after the other")
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.runs < 1 or args.busy < 0:
        p.error("--runs must be 1 or more and --busy 0 or more")
    if args.as_avx2:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # every process make starts inherits it
        runner_args = ["--precision", "float32", *runner_args]

    results = []
    for run in range(args.runs):
        if args.runs > 1:
            print(f"\n--- run {run + 1} of {args.runs} ---", flush=True)
        busy = start_busy(args.busy)
        try:
            results.append(one_run(args, runner_args, run))
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
    if args.runs > 1:
        print(f"\n{args.runs} runs, CPU: {cpu_model()}, {os.cpu_count()} cores, busy programs beside it: {args.busy}"
              f"{'; as an AVX2 CPU (ONEDNN_MAX_CPU_ISA=AVX2, float32)' if args.as_avx2 else ''}")
        for n, (total_s, facts) in enumerate(results, 1):
            print(f"run {n}: {total_s / 60:.1f} min; training: {facts.get('training', '?')}; eval accuracy "
                  f"{facts.get('eval accuracy', '?')}; blessed {facts.get('blessed', '?')}")
    return 0 if all(facts.get("blessed") == "YES" for _, facts in results) else 1


def one_run(args, runner_args, run: int):
    """One fresh clone, `make setup` and `make run`; returns (seconds from the clone, the summary's facts)."""
    workdir = os.path.join(args.workdir, f"run-{run + 1}") if args.workdir else tempfile.mkdtemp(prefix="signs-make-run-")
    clone = os.path.join(workdir, "signs-pipeline")
    if os.path.exists(clone):
        sys.exit(f"error: {clone} exists; name an empty --workdir")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores"
          f"{'; as an AVX2 CPU (ONEDNN_MAX_CPU_ISA=AVX2, float32)' if args.as_avx2 else ''}"
          f"; busy programs beside it: {args.busy}", flush=True)
    started = time.perf_counter()
    log = []
    subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout.strip()
    print(f"cloned {commit} into {clone}; make setup ...", flush=True)
    setup_s = timed(["make", "setup"], clone, log)
    make_args = ["make", "run"] + ([f"ARGS={' '.join(runner_args)}"] if runner_args else [])
    print(f"{' '.join(make_args)} ...", flush=True)
    log.clear()
    run_s = timed(make_args, clone, log)
    total_s = time.perf_counter() - started

    components, facts = parse_summary(log)
    epochs = [l for l in log if re.match(r"^Epoch \d+/\d+", l)]
    print(f"\n`make run` from a fresh clone of {commit}, flags: {' '.join(runner_args) or '(defaults)'}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores")
    print(f"{'step':<22}{'time':>8}")
    print(f"{'git clone + make setup':<22}{setup_s:>7.0f}s")
    for name, state, seconds in components:
        print(f"{name:<22}{seconds:>7d}s  {state if state != 'complete' else ''}")
    print(f"{'make run (all of it)':<22}{run_s:>7.0f}s")
    print(f"{'total':<22}{total_s:>7.0f}s  ({total_s / 60:.1f} min)")
    if epochs:
        print(f"Trainer epochs run: {epochs[-1].split()[1]}")
    for key in ("training", "eval accuracy", "shifted eval", "blessed", "pushed model"):
        print(f"{key}: {facts.get(key, '(not in the summary)')}")
    if not args.keep:
        shutil.rmtree(workdir if not args.workdir else clone, ignore_errors=True)
    return total_s, facts


if __name__ == "__main__":
    sys.exit(main())
