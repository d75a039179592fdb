"""Times ingestion: ExampleGen + StatisticsGen against a plain single-process Python loop.

    python bench/ingest.py [--sizes 10000,100000] [--workdir /tmp/signs-ingest-bench] [--beam-arg ...]

For each size N it writes N synthetic SIGNS-format 64x64 images into one h5 file (streamed, a
chunk at a time), then, each in a fresh process:

- `pipeline`: FileBasedExampleGen (our executor, split 80/20 by image hash) and StatisticsGen,
  run by LocalDagRunner with the Beam arguments a real run would get (`options.LOCAL_BEAM_ARGS`:
  the DirectRunner in-process with a worker thread per core; `--beam-arg` overrides);
- `loop`: one Python loop that reads the same h5 in chunks and writes the same gzip TFRecords
  (PNG image, label, source, split by the same hash), no Beam.

It prints images per second of both, their ratio, the peak memory (the process tree's summed RSS,
sampled every 0.1 s, and the largest single process's max RSS from getrusage) and how time and
memory grow from the smallest size to the largest. Process start-up and imports are not timed.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from components.data.layout import PipelineRoot

POOL = 400  # distinct drawn hands; every image adds its own noise, so all N images differ
CHUNK = 1000  # images generated and written at a time


def write_h5(path: str, n: int, seed: int = 0) -> None:
    """Writes N distinct synthetic images to `path` (keys all_set_x, all_set_y), streaming."""
    import h5py  # pylint: disable=import-outside-toplevel
    from components.data import synthetic  # pylint: disable=import-outside-toplevel

    if os.path.exists(path):
        return
    pool_x, pool_y = synthetic.make_split(POOL, seed)
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        x = f.create_dataset("all_set_x", (n, 64, 64, 3), np.uint8, chunks=(64, 64, 64, 3))
        y = f.create_dataset("all_set_y", (n,), np.int64)
        for start in range(0, n, CHUNK):
            idx = np.arange(start, min(start + CHUNK, n)) % POOL
            noise = rng.integers(-6, 7, (len(idx), 64, 64, 3))
            x[start:start + len(idx)] = np.clip(pool_x[idx].astype(int) + noise, 0, 255).astype(np.uint8)
            y[start:start + len(idx)] = pool_y[idx]
    os.replace(tmp, path)


def run_pipeline(h5_path: str, root: str, beam_args: list) -> dict:
    """ExampleGen + StatisticsGen on the h5 file; returns seconds (total and per component)."""
    from tfx.components.example_gen.component import FileBasedExampleGen  # pylint: disable=import-outside-toplevel
    from tfx.dsl.components.base import executor_spec  # pylint: disable=import-outside-toplevel
    from tfx.orchestration import metadata, pipeline as tfx_pipeline  # pylint: disable=import-outside-toplevel
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=import-outside-toplevel
    from components.data import example_gen, sources  # pylint: disable=import-outside-toplevel
    from components.report import run_summary  # pylint: disable=import-outside-toplevel
    from components.data.example_gen import example_gen_io
    from pipeline.definition import statistics  # pylint: disable=import-outside-toplevel

    input_config, output_config = example_gen_io([("all", os.path.basename(h5_path))], 20)
    gen = FileBasedExampleGen(
        input_base=os.path.dirname(h5_path), input_config=input_config, output_config=output_config,
        custom_config=example_gen.make_custom_config(range(6), sources.H5_FILE),
        custom_executor_spec=executor_spec.BeamExecutorSpec(example_gen.SignsExampleGenExecutor)).with_id("ExampleGen")
    stats = statistics(gen.outputs["examples"])  # the pipeline's own StatisticsGen settings
    db = PipelineRoot(root).metadata
    p = tfx_pipeline.Pipeline(pipeline_name="ingest_bench", pipeline_root=root, components=[gen, stats],
                              enable_cache=False, beam_pipeline_args=beam_args,
                              metadata_connection_config=metadata.sqlite_metadata_connection_config(db))
    start = time.perf_counter()
    LocalDagRunner().run(p)
    total = time.perf_counter() - start
    report = run_summary.latest_run(db, ["ExampleGen", "StatisticsGen"])
    return {"seconds": total, **{c.name: c.seconds for c in report.components}}


def run_loop(h5_path: str, out_dir: str) -> dict:
    """The same records from one plain Python loop: read, encode PNG, hash-split, write gzip."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from components.data import convert, example_gen, sources  # pylint: disable=import-outside-toplevel

    n = sources.check_h5(h5_path, range(6))
    start = time.perf_counter()
    writers = {s: tf.io.TFRecordWriter(os.path.join(out_dir, f"{s}.gz"), "GZIP") for s in ("train", "eval")}
    for i in range(0, n, sources.H5_CHUNK):
        for image, label, source in sources.read_h5_chunk(h5_path, i, min(i + sources.H5_CHUNK, n)):
            example = example_gen.to_example(image, label, source)
            split = convert.split_of(example.features.feature["image"].bytes_list.value[0], 20)
            writers[split].write(example.SerializeToString())
    for w in writers.values():
        w.close()
    return {"seconds": time.perf_counter() - start}


def child(args) -> None:
    """Runs one measurement in this process and prints its result as JSON on the last line."""
    os.makedirs(args.out, exist_ok=True)
    if args.child == "pipeline":
        result = run_pipeline(args.h5, args.out, json.loads(args.beam_args_json))
    else:
        result = run_loop(args.h5, args.out)
    print(json.dumps(result))


def measure(kind: str, h5_path: str, out: str, beam_args: list) -> dict:
    """Runs `kind` in a child process; adds its peak memory (summed tree RSS and max RSS)."""
    import psutil  # pylint: disable=import-outside-toplevel

    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--h5", h5_path, "--out", out,
           "--beam-args-json", json.dumps(beam_args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak, done = [0], threading.Event()

    def sample():
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    lines = proc.stdout.read().strip().splitlines()
    if status != 0 or not lines:
        raise RuntimeError(f"{kind} run failed (status {status}); run it alone to see why: {' '.join(cmd)}")
    result = json.loads(lines[-1])
    result.update(tree_rss_mb=peak[0] / 2**20, max_rss_mb=usage.ru_maxrss / 1024)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000", help="comma-separated image counts (up to 100000)")
    p.add_argument("--workdir", default="/tmp/signs-ingest-bench")
    p.add_argument("--beam-arg", action="append", default=[], dest="beam_args")
    p.add_argument("--child", choices=("pipeline", "loop"), help=argparse.SUPPRESS)
    p.add_argument("--h5", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--beam-args-json", default="[]", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return
    from pipeline import options  # pylint: disable=import-outside-toplevel

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"{os.cpu_count()} CPU cores; sizes {sizes}; workdir {args.workdir}")
    for n in sizes:
        h5_path = os.path.join(args.workdir, f"n{n}", "bench_signs.h5")
        os.makedirs(os.path.dirname(h5_path), exist_ok=True)
        write_h5(h5_path, n)
        beam_args = options.beam_pipeline_args(tuple(args.beam_args))
        stamp = time.strftime("%H%M%S")
        tfx = measure("pipeline", h5_path, os.path.join(args.workdir, f"n{n}", f"tfx-{stamp}"), beam_args)
        loop = measure("loop", h5_path, os.path.join(args.workdir, f"n{n}", f"loop-{stamp}"), [])
        rows.append((n, tfx, loop))
        print(f"N={n}: beam args {' '.join(beam_args)}")
        print(f"  ExampleGen+StatisticsGen {tfx['seconds']:7.1f} s  {n / tfx['seconds']:7.0f} img/s "
              f"(ExampleGen {tfx['ExampleGen']:.1f} s, StatisticsGen {tfx['StatisticsGen']:.1f} s)  "
              f"peak tree RSS {tfx['tree_rss_mb']:.0f} MB, largest process {tfx['max_rss_mb']:.0f} MB")
        print(f"  plain Python loop         {loop['seconds']:7.1f} s  {n / loop['seconds']:7.0f} img/s  "
              f"peak RSS {loop['tree_rss_mb']:.0f} MB")
        print(f"  pipeline / loop time: {tfx['seconds'] / loop['seconds']:.2f}x "
              f"(ExampleGen alone {tfx['ExampleGen'] / loop['seconds']:.2f}x)", flush=True)
    if len(rows) > 1:
        (n0, t0, l0), (n1, t1, l1) = rows[0], rows[-1]
        print(f"growth {n0} -> {n1} images ({n1 / n0:.1f}x): pipeline time {t1['seconds'] / t0['seconds']:.2f}x, "
              f"loop time {l1['seconds'] / l0['seconds']:.2f}x, pipeline peak memory "
              f"{t1['tree_rss_mb'] / t0['tree_rss_mb']:.2f}x, loop peak memory "
              f"{l1['tree_rss_mb'] / l0['tree_rss_mb']:.2f}x")
        per_image = (t1["seconds"] / n1) / (t0["seconds"] / n0)
        print(f"pipeline cost per image at {n1} / at {n0}: {per_image:.2f} (linear if <= 1.3); "
              f"peak memory {t1['tree_rss_mb'] / t0['tree_rss_mb']:.2f}x (<= 1.5); throughput at {n1}: "
              f"{l1['seconds'] / t1['seconds']:.2f}x the plain loop's (>= 1.0)")


if __name__ == "__main__":
    main()
