"""Tests of the runner's flags and of --help answering without TFX."""

import os
import subprocess
import sys
import argparse
import dataclasses
import logging

import pytest

from components.training.train_config import TrainConfig
from components.data.layout import PipelineRoot
from pipeline import options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults():
    c = options.parse([])
    assert c.data is None and c.train.batch_size == 32
    assert c.min_accuracy == 0.9 and c.classes == (0, 1, 2, 3, 4, 5)
    assert c.pipeline_root == os.path.abspath("pipeline_output")
    assert c.serving_dir == os.path.join(c.pipeline_root, "serving_model")
    assert c.paths.metadata.endswith("pipeline_output/metadata.sqlite")


def test_the_synthetic_demonstration_has_its_own_training_and_a_flag_still_wins(tmp_path):
    demo = options.parse([]).train
    assert {k: getattr(demo, k) for k in options.SYNTHETIC_TRAINING} == options.SYNTHETIC_TRAINING
    assert demo.epochs == 4 and not demo.augment and demo.time_budget_minutes == 5
    given = options.parse(["--epochs", "9", "--augment", "--time-budget-minutes", "0"]).train
    assert (given.epochs, given.augment, given.time_budget_minutes, given.learning_rate) == (9, True, 0, 0.004)
    own_data = options.parse(["--data", str(tmp_path)]).train
    assert (own_data.epochs, own_data.augment, own_data.time_budget_minutes) == (30, True, 0)


def test_the_synthetic_set_lives_in_a_directory_of_its_drawing_version():
    from components.data import synthetic  # pylint: disable=import-outside-toplevel
    assert options.parse([]).paths.synthetic_data(synthetic.VERSION).endswith(os.path.join("data", f"synthetic-v{synthetic.VERSION}"))


def test_flags_map_onto_the_config(tmp_path):
    c = options.parse(["--data", str(tmp_path), "--epochs", "3", "--batch-size", "16",
                       "--min-accuracy", "0.5", "--pipeline-root", str(tmp_path / "root"),
                       "--serving-dir", str(tmp_path / "serve"), "--classes", "0,1,2",
                       "--beam-arg=--direct_num_workers=2", "--no-cache"])
    assert (c.data, c.train.epochs, c.train.batch_size, c.min_accuracy) == (str(tmp_path), 3, 16, 0.5)
    assert c.serving_dir == str(tmp_path / "serve") and c.classes == (0, 1, 2)
    assert c.beam_args == ("--direct_num_workers=2",) and not c.enable_cache


@pytest.mark.parametrize("argv", [["--min-accuracy", "1.5"], ["--epochs", "-1"],
                                  ["--batch-size", "0"], ["--classes", "a,b"],
                                  ["--precision", "float8"], ["--weight-decay", "-1"],
                                  ["--steps-per-execution", "0"], ["--eval-percent", "0"],
                                  ["--eval-percent", "100"], ["--bad-images", "ignore"]])
def test_bad_flags_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        options.parse(argv)
    assert "error:" in capsys.readouterr().err


def test_help_answers_at_once_without_importing_tfx():
    code = ("import runpy, sys; sys.argv=['local_runner.py', '--help']\n"
            "try:\n  runpy.run_path('pipeline/local_runner.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "heavy = [m for m in ('tfx', 'tensorflow', 'keras', 'apache_beam') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "--min-accuracy" in out and "--pipeline-root" in out
    assert "HEAVY []" in out


def test_help_as_a_script():
    out = subprocess.run([sys.executable, "pipeline/local_runner.py", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "--serving-dir" in out


def test_classes_all_and_data_flags(tmp_path):
    c = options.parse(["--classes", "all", "--bad-images", "skip", "--schema", "s.pbtxt",
                       "--min-class-share", "0.3", "--eval-percent", "10"])
    assert c.classes == tuple(range(10)) and c.bad_images == "skip" and c.eval_percent == 10
    assert c.schema == os.path.abspath("s.pbtxt") and c.min_class_share == 0.3


def test_beam_args_defaults_and_user_overrides():
    local = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
    assert options.beam_pipeline_args(()) == local + ["--direct_num_workers=0"]
    assert options.beam_pipeline_args(("--direct_num_workers=2",)) == local + ["--direct_num_workers=2"]
    assert options.beam_pipeline_args(("--direct_running_mode=multi_processing",)) == [
        "--runner=FnApiRunner", "--direct_num_workers=0", "--direct_running_mode=multi_processing"]
    flink = ("--runner=FlinkRunner", "--flink_master=localhost:8081")
    assert options.beam_pipeline_args(flink) == list(flink)
    assert options.beam_pipeline_args((), local=False) == ["--runner=FnApiRunner"]  # a pod: Beam's own threads
    assert options.beam_pipeline_args(("--runner=DirectRunner",)) == [  # asked for by name: Beam's choice
        "--direct_running_mode=in_memory", "--direct_num_workers=0", "--runner=DirectRunner"]


def test_the_default_beam_runner_never_reaches_for_prism(caplog):
    """Beam's DirectRunner would first download the Prism runner from GitHub ("Downloading prism from ...")."""
    import apache_beam as beam  # pylint: disable=import-outside-toplevel
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
    from apache_beam.testing.util import assert_that, equal_to  # pylint: disable=import-outside-toplevel

    caplog.set_level(logging.INFO)
    with beam.Pipeline(options=PipelineOptions(options.beam_pipeline_args(()))) as p:
        counted = p | beam.Create(["a", "b", "a"]) | beam.combiners.Count.PerElement()
        assert_that(counted, equal_to([("a", 2), ("b", 1)]))
    said = " ".join(r.getMessage() for r in caplog.records).lower()
    assert "prism" not in said and "falling back" not in said


def test_every_training_knob_has_a_flag(tmp_path):
    from components.training.train_config import DERIVED_FIELDS, TrainConfig  # pylint: disable=import-outside-toplevel

    help_text = options.build_parser("").format_help()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        assert (flag in help_text) == (field.name not in DERIVED_FIELDS), flag
    c = options.parse(["--no-augment", "--precision", "mixed_bfloat16", "--early-stopping-patience", "0",
                       "--rotation-degrees", "5", "--lr-schedule", "constant", "--classes", "0,1,2",
                       "--pipeline-root", str(tmp_path)])
    t = c.train.for_pipeline(c.classes, c.pipeline_root)  # as create_pipeline derives it
    assert (t.augment, t.precision, t.early_stopping_patience, t.rotation_degrees, t.lr_schedule) == (
        False, "mixed_bfloat16", 0, 5.0, "constant")
    assert t.num_classes == 3 and t.checkpoint_root == os.path.join(str(tmp_path), "checkpoints")
    assert TrainConfig.from_dict(t.to_dict()) == t


@pytest.mark.parametrize("argv, says", [
    (["--classes", "0,0"], "--classes 0,0: label 0 is given more than once"),
    (["--learning-rate", "inf"], "--learning-rate: expected a number from 1e-07 to 1, got inf"),
    (["--min-improvement", "nan"], "expected a finite number, got nan"),
    (["--min-improvement", "1e308"], "expected an accuracy difference from -1 to 1, got 1e308"),
    (["--min-accuracy", "nan"], "expected a finite number, got nan"),
    (["--time-budget-minutes", "1e308"], "--time-budget-minutes: expected a number from 0 to 10080, got 1e308"),
    (["--mixup", "1e308"], "--mixup: expected a number from 0 to 100, got 1e308"),
    (["--label-smoothing", "5"], "--label-smoothing: expected a number from 0 to 0.99, got 5"),
    (["--bn-momentum", "7"], "--bn-momentum: expected a number from 0 to 0.9999, got 7"),
    (["--max-image-pixels", "99999999999999999999"],
     "--max-image-pixels: expected a number from 1 to 1e+10, got 99999999999999999999"),
    (["--classes", "0,1,99999999999"], "--classes 0,1,99999999999: labels go up to 999"),
])
def test_duplicate_classes_and_out_of_range_numbers_are_refused_in_two_lines(argv, says, capsys):
    """Each knob has one range (TrainConfig's bounds), checked wherever it enters: flags here, KFP
    runtime parameters through `check_value`, the Trainer's config when it is built."""
    with pytest.raises(SystemExit) as exit_info:
        options.parse(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 2
    assert err[0].startswith("usage: ") and err[0].endswith("(--help lists them)")
    assert says in err[1]


def test_a_knob_out_of_its_range_is_refused_at_every_entry():
    assert options.check_value("mixup", "1e308") == "expected a number from 0 to 100, got 1e308"
    assert options.check_value("bn_momentum", "0.99") is None
    with pytest.raises(ValueError, match="^label_smoothing: expected a number from 0 to 0.99, got 5$"):
        TrainConfig.from_dict({"label_smoothing": 5.0})


def _refused(argv, capsys):
    with pytest.raises(SystemExit):
        options.parse(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    return err[1]


def test_a_pipeline_root_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _refused(["--pipeline-root", str(tmp_path / "file")], capsys).endswith(
        f"--pipeline-root {tmp_path / 'file'}: is a file, not a directory")
    assert _refused(["--pipeline-root", str(tmp_path / "file" / "below")], capsys).endswith(
        f"--pipeline-root {tmp_path / 'file' / 'below'}: {tmp_path / 'file'} is not a writable directory")


def test_a_symlink_loop_is_named_as_such(tmp_path, capsys):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    assert _refused(["--data", str(tmp_path / "a"), "--pipeline-root", str(tmp_path / "root")], capsys).endswith(
        f"--data {tmp_path / 'a'}: a symlink loop (too many levels of symbolic links)")


def test_a_kubeflow_user_has_every_knob_a_local_user_has():
    """Both runners' flags come from the same fields; on Kubeflow each is a runtime parameter or fixed."""
    from components.training.train_config import TrainConfig  # pylint: disable=import-outside-toplevel

    kfp = argparse.ArgumentParser()
    options.add_flags(kfp, kubeflow=True)
    local_only = {"data", "schema", "pipeline_root", "serving_dir", "enable_cache"}  # Kubeflow has its own
    local = {a.dest for a in options.build_parser("")._actions} - {"help"}
    assert {a.dest for a in kfp._actions} - {"help"} == local - local_only
    args = kfp.parse_args(["--epochs", "20", "--learning-rate", "0.002", "--no-augment", "--classes", "0,1,2",
                           "--min-accuracy", "0.8", "--max-image-pixels", "1000"])
    config = options.config_from_args(args)
    runtime = options.runtime_parameters(config)
    knobs = {f.name for f in TrainConfig.knobs()}
    assert set(runtime) == (knobs - {"max_image_pixels"}) | {"min_accuracy", "min_improvement", "min_class_share"}
    assert (runtime["epochs"], runtime["learning_rate"], runtime["augment"], runtime["min_accuracy"]) == (20, 0.002, 0, 0.8)
    assert config.classes == (0, 1, 2) and config.train.max_image_pixels == 1000  # fixed in the package
    for field in dataclasses.fields(options.PipelineConfig):
        if field.name != "train":
            assert field.metadata["kubeflow"] in (None, "runtime", "compile"), field.name


def test_the_synthetic_set_trains_without_the_photo_augmentation_unless_asked(tmp_path):
    (tmp_path / "photos").mkdir()
    config = options.parse(["--pipeline-root", str(tmp_path / "r")]).train
    assert config.photo_augment == "off" and "--photo-augment on" in options.SYNTHETIC_PHOTO_AUGMENT_NOTE
    assert config.augmentation().background == 0 and config.augmentation().hue == 0
    assert config.augmentation().flip and config.augmentation().zoom == TrainConfig().zoom  # the rest stays
    assert options.parse(["--data", str(tmp_path / "photos")]).train.photo_augment == "auto"
    asked = options.parse(["--photo-augment", "on", "--pipeline-root", str(tmp_path / "r")]).train
    assert asked.photo_augment == "on" and asked.augmentation().background == TrainConfig().background > 0


def test_the_settings_ask_pipeline_root_for_their_paths():
    config = options.parse(["--pipeline-root", "/work/out"])
    assert config.serving_dir == PipelineRoot("/work/out").serving_dir
    assert TrainConfig().for_pipeline((0, 1), "/work/out").checkpoint_root == PipelineRoot("/work/out").checkpoints
