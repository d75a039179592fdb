"""Tests of the Trainer's device, precision and learning-rate decisions."""

import keras
import pytest

from trainer import task
from components.training.train_config import TrainConfig


def test_cpu_defaults_without_xla_and_bfloat16_only_with_amx():
    devices = task.resolve_devices(TrainConfig(), gpus=0, amx_bf16=False)
    assert (devices.precision, devices.jit_compile, devices.replicas) == ("float32", False, 1)
    assert not devices.input_autotune
    assert task.resolve_devices(TrainConfig(), gpus=0, amx_bf16=True).precision == "mixed_bfloat16"
    assert task.resolve_devices(TrainConfig(precision="float32"), gpus=0, amx_bf16=True).precision == "float32"


# The "flags" line of a Sapphire Rapids Xeon (Platinum 8480+), as Linux 6.x prints it.
SAPPHIRE_RAPIDS_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse "
    "sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl "
    "xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est "
    "tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes "
    "xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 cat_l2 cdp_l3 invpcid_single "
    "intel_ppin cdp_l2 ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad "
    "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap "
    "avx512ifma clflushopt clwb intel_pt avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves "
    "cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local split_lock_detect avx_vnni avx512_bf16 wbnoinvd "
    "dtherm ida arat pln pts hwp hwp_act_window hwp_epp hwp_pkg_req vnmi avx512vbmi umip pku ospke waitpkg "
    "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid "
    "bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear serialize tsxldtrk pconfig arch_lbr ibt "
    "amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities")
# The same CPU in a VM whose hypervisor hides AMX: bfloat16 in AVX-512 only.
NO_AMX_FLAGS = SAPPHIRE_RAPIDS_FLAGS.replace(" amx_bf16", "").replace(" amx_tile amx_int8", "")
# This repository's 2-core AMD EPYC (Zen 3): no bfloat16 at all.
EPYC_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
    "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
    "extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
    "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a "
    "misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep "
    "bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero "
    "xsaveerptr wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid fsrm")


def _cpuinfo(tmp_path, model_name, flags, processors=2):
    """A /proc/cpuinfo with `processors` entries, each with its flags, vmx flags and bugs lines."""
    vendor = "AuthenticAMD" if "AMD" in model_name else "GenuineIntel"
    entries = [
        f"processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: 6\nmodel\t\t: 143\n"
        f"model name\t: {model_name}\nstepping\t: 8\ncpu MHz\t\t: 2000.000\ncache size\t: 107520 KB\n"
        f"core id\t\t: {n}\ncpu cores\t: {processors}\nfpu\t\t: yes\ncpuid level\t: 32\nwp\t\t: yes\n"
        f"flags\t\t: {flags}\n"
        f"vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb tsc_offset\n"
        f"bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass swapgs eibrs_pbrsb\nbogomips\t: 4000.00\n"
        f"address sizes\t: 46 bits physical, 57 bits virtual\npower management:\n"
        for n in range(processors)]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(entries))
    return str(path)


def test_amx_bf16_is_found_in_a_sapphire_rapids_cpuinfo(tmp_path):
    path = _cpuinfo(tmp_path, "Intel(R) Xeon(R) Platinum 8480+", SAPPHIRE_RAPIDS_FLAGS)
    assert task.cpu_has_amx_bf16(path) is True


@pytest.mark.parametrize("name, flags", [("Intel(R) Xeon(R) Platinum 8480+", NO_AMX_FLAGS), ("AMD EPYC", EPYC_FLAGS)])
def test_no_amx_bf16_without_the_flag(tmp_path, name, flags):
    # avx512_bf16 (AVX-512 bfloat16, no AMX tiles) is not amx_bf16
    assert task.cpu_has_amx_bf16(_cpuinfo(tmp_path, name, flags)) is False


def test_no_cpuinfo_means_no_amx(tmp_path):
    assert task.cpu_has_amx_bf16(str(tmp_path / "no-such-cpuinfo")) is False
    assert task.cpu_has_amx_bf16(str(tmp_path)) is False  # a directory: unreadable as a file


def test_the_float32_copy_has_the_same_weights_and_answers():
    config = TrainConfig()
    with task.dtype_policy("mixed_bfloat16"):
        model = task.ResNet50(classes=6)
    copy = task.float32_copy(model, config)
    assert copy.get_layer("res3b_branch2b").compute_dtype == "float32"
    assert all((a == b).all() for a, b in zip(model.get_weights(), copy.get_weights()))
    x = keras.random.uniform((2, 64, 64, 3), seed=3)
    diff = keras.ops.max(keras.ops.abs(model(x, training=False) - copy(x, training=False)))
    assert float(diff) < 0.05  # bfloat16 rounding only


def test_a_gpu_gets_mixed_precision_and_xla_unless_told_otherwise():
    devices = task.resolve_devices(TrainConfig(), gpus=1)
    assert (devices.precision, devices.jit_compile) == ("mixed_float16", True)
    devices = task.resolve_devices(TrainConfig(precision="float32", jit_compile="off"), gpus=1)
    assert (devices.precision, devices.jit_compile) == ("float32", False)


def _rates(schedule, steps):
    return [float(keras.ops.convert_to_numpy(schedule(s))) if callable(schedule) else schedule for s in steps]


def test_warmup_then_cosine_to_one_percent():
    config = TrainConfig(epochs=10, learning_rate=1e-3, warmup_epochs=1)
    schedule = task.learning_rate(config, steps_per_epoch=10)
    start, end_of_warmup, middle, last = _rates(schedule, [0, 10, 55, 100])
    assert start == 0.0 and end_of_warmup == pytest.approx(1e-3)
    assert 1e-5 < middle < 1e-3 and last == pytest.approx(1e-5)


def test_constant_schedule_and_replica_scaling():
    config = TrainConfig(epochs=4, learning_rate=1e-3, lr_schedule="constant", warmup_epochs=0)
    assert _rates(task.learning_rate(config, 10), [0, 39]) == pytest.approx([1e-3, 1e-3])
    warm = task.learning_rate(config.replace(warmup_epochs=1), 10, replicas=2)
    assert _rates(warm, [5, 10, 39]) == pytest.approx([1e-3, 2e-3, 2e-3])


def test_dtype_policy_is_restored():
    before = keras.config.dtype_policy().name
    with task.dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before


def test_smoothed_mixed_labels_and_standardized_images_train_and_serve(tmp_path):
    """The Trainer's model with one-hot labels (label smoothing, mixup) and per-image standardization:
    one step of fit, then the exported SavedModel answers through both signatures as the model does."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainer import export  # pylint: disable=import-outside-toplevel

    config = TrainConfig(epochs=1, batch_size=4, label_smoothing=0.1, mixup=0.2, standardize=True, precision="float32")
    assert config.soft_labels()
    model = task.build_model(config, task.resolve_devices(config, gpus=0, amx_bf16=False), steps_per_epoch=1)
    assert model.count_params() == 23_600_006 and model.loss.label_smoothing == 0.1
    x = np.random.default_rng(0).uniform(0, 1, (4, 64, 64, 3)).astype(np.float32)
    y = tf.one_hot([0, 1, 2, 3], 6)
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0).history
    assert set(history) >= {"accuracy", "val_accuracy", "loss"}
    export.export_serving_model(model, str(tmp_path / "serving"))
    served = tf.saved_model.load(str(tmp_path / "serving"))
    png = tf.io.encode_png(tf.cast(x[0] * 255, tf.uint8))
    answer = served.signatures[task.export.IMAGE_BYTES_SIGNATURE](image_bytes=tf.stack([png]))["probabilities"]
    expected = model(tf.cast(tf.io.decode_png(png), tf.float32)[None] / 255.0, training=False)
    np.testing.assert_allclose(answer.numpy(), np.asarray(expected), atol=1e-4)
