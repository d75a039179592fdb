"""Training throughput of the seed's ResNet50 on a GPU, through Keras 3 on any backend.

    KERAS_BACKEND=jax PYTHONPATH=. python bench/gpu_train.py [--batch-sizes 64,128,256,512]
        [--precisions float32,mixed_float16,mixed_bfloat16] [--steps 30]

It imports `trainer.resnet` (pure Keras 3) and nothing from TensorFlow, so it runs where only JAX or
PyTorch is installed: the GPU machines have those, and the Trainer's own TensorFlow path is the
same model definition. For each precision and batch size it compiles the model (Adam, sparse
cross-entropy, Keras's default jit_compile for the backend, XLA on JAX), runs a warm-up `fit`,
then times `--steps` steps on device-sized random images and prints images per second and the
fraction of the GPU's peak: the fp32 peak for float32, the dense fp16/bf16 tensor-core peak for
mixed precision (known GPUs below; `--peak-tflops` for others).
"""

import argparse
import json
import sys
import time

GFLOP_PER_IMAGE = 1.85  # forward + backward of one 64x64 image through the seed's ResNet50
# device name fragment -> (fp32 TFLOPS, dense fp16/bf16 tensor TFLOPS), from NVIDIA's data sheets.
PEAKS = {
    "H200": (67.0, 989.0),
    "H100 PCIe": (51.0, 756.0),
    "H100": (67.0, 989.0),  # SXM
    "A100": (19.5, 312.0),
    "L4": (30.3, 121.0),
    "A10": (31.2, 125.0),
    "T4": (8.1, 65.0),
    "V100": (15.7, 125.0),
}


def device_name() -> str:
    """The accelerator's name as the backend reports it, or 'cpu'."""
    import keras  # pylint: disable=import-outside-toplevel

    backend = keras.backend.backend()
    if backend == "jax":
        import jax  # pylint: disable=import-outside-toplevel
        device = jax.devices()[0]
        return getattr(device, "device_kind", str(device)) if device.platform != "cpu" else "cpu"
    if backend == "torch":
        import torch  # pylint: disable=import-outside-toplevel
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"
    return "cpu"


def peak_tflops(name: str, precision: str, override: float = 0.0):
    """The peak this precision can reach on `name`, or None when unknown."""
    if override:
        return override
    for fragment, (fp32, tensor) in PEAKS.items():
        if fragment.lower() in name.lower():
            return fp32 if precision == "float32" else tensor
    return None


def time_config(precision: str, batch_size: int, steps: int) -> float:
    """Images per second of `steps` training steps at this precision and batch size."""
    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    from trainer.resnet import ResNet50  # pylint: disable=import-outside-toplevel

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = ResNet50(classes=6)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch_size * 4, 64, 64, 3), dtype=np.float32)
    y = rng.integers(0, 6, batch_size * 4)
    model.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=4, verbose=0)  # compile + warm up
    repeats = -(-steps // 4)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=repeats, steps_per_epoch=4, verbose=0)
    float(keras.ops.convert_to_numpy(model.weights[0][0, 0, 0, 0]))  # wait for the device
    seconds = time.perf_counter() - start
    keras.config.set_dtype_policy("float32")
    return repeats * 4 * batch_size / seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", default="64,128,256,512", help="comma-separated batch sizes")
    p.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16",
                   help="comma-separated Keras dtype policies")
    p.add_argument("--steps", type=int, default=40, help="timed training steps per configuration")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="the device's peak for every precision (default: from the known-GPU table)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    import keras  # pylint: disable=import-outside-toplevel
    name = device_name()
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, device: {name}", flush=True)
    if name == "cpu":
        print("note: no GPU found; timing the CPU (peak unknown)", flush=True)
    rows = []
    print(f"{'precision':16} {'batch':>6} {'images/s':>10} {'TFLOPS':>8} {'of peak':>8}", flush=True)
    for precision in args.precisions.split(","):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            ips = time_config(precision, batch_size, args.steps)
            tflops = ips * GFLOP_PER_IMAGE / 1000
            peak = peak_tflops(name, precision, args.peak_tflops)
            share = f"{tflops / peak:7.1%}" if peak else "      ?"
            rows.append({"precision": precision, "batch_size": batch_size, "images_per_s": ips,
                         "tflops": tflops, "peak_tflops": peak})
            print(f"{precision:16} {batch_size:6d} {ips:10.0f} {tflops:8.2f} {share:>8}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "backend": keras.backend.backend(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
