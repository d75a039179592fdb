"""`python -m pipeline.serve`: a new push served without restart, and the command line's life cycle."""

import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from components.push import version_dirs
from testsupport.saved_models import saved_model
from pipeline import serve
from pipeline.rest_server import app as serving_app, decoding, model_manager
from testsupport.rest_clients import call, image_bytes, predict_one, start_serving, states, wait_for

slow = pytest.mark.slow


@slow
def test_a_pushed_version_is_served_without_restart(exported_model, tmp_path, monkeypatch):
    """Version 2 loads while version 1 answers (its load is held), then serves; version 1 ends.
    A version that fails to load leaves version 2 serving; deleting 2 and 3 brings back 1."""
    serving_dir = str(tmp_path / "serving")
    version_dirs.push(exported_model, serving_dir, {})
    server = start_serving(serving_dir, poll_seconds=0.1)
    try:
        gate = threading.Event()
        real_load = model_manager.load_servable
        monkeypatch.setattr(model_manager, "load_servable", lambda *args: (gate.wait(120), real_load(*args))[1])
        assert version_dirs.push(exported_model, serving_dir, {}) == 2
        wait_for(lambda: states(server.url) == [("2", "LOADING"), ("1", "AVAILABLE")], "version 2 to start loading")
        photo = image_bytes("JPEG")
        assert predict_one(server.url, photo)[:2] == (200, "1")  # the old version answers meanwhile
        assert predict_one(server.url, photo, "2")[0] == 404
        gate.set()
        wait_for(lambda: states(server.url) == [("2", "AVAILABLE"), ("1", "END")], "version 2 to serve")
        assert predict_one(server.url, photo)[:2] == (200, "2")
        status, _, body = predict_one(server.url, photo, "1")
        assert status == 404 and body["error"].startswith("Servable not found for request: Specific(signs, 1)")
        assert call(server.url + "v1/models/signs/metadata")[2]["model_spec"]["version"] == "2"

        broken = os.path.join(serving_dir, "3")
        os.makedirs(broken + ".tmp")
        with open(os.path.join(broken + ".tmp", version_dirs.SAVED_MODEL), "wb") as f:
            f.write(b"not a SavedModel")
        os.rename(broken + ".tmp", broken)
        wait_for(lambda: states(server.url)[0] == ("3", "END"), "version 3 to fail")
        failed = call(server.url + "v1/models/signs/versions/3")[2]["model_version_status"][0]["status"]
        assert failed["error_code"] != "OK" and failed["error_message"]
        assert predict_one(server.url, photo)[:2] == (200, "2")

        for version in ("2", "3"):  # a rollback: the newest version is 1 again
            shutil.rmtree(os.path.join(serving_dir, version))
        wait_for(lambda: states(server.url) == [("3", "END"), ("2", "END"), ("1", "AVAILABLE")], "version 1 again")
        assert predict_one(server.url, photo)[:2] == (200, "1")
    finally:
        server.stop()



@slow
def test_the_command_line_waits_for_a_first_push_then_serves_it(exported_model, tmp_path):
    """`python -m pipeline.serve` on an empty serving directory: 404 until a push lands, then the model;
    SIGTERM stops it cleanly."""
    serving_dir = str(tmp_path / "serving")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.serve", "--serving-dir", serving_dir, "--port", "0",
                             "--poll-seconds", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        lines = []
        while not any(line.startswith("serving ") for line in lines):
            line = proc.stdout.readline()
            assert line, "the server exited: " + "".join(lines)
            lines.append(line)
        assert any("no version pushed yet" in line for line in lines), lines
        url = lines[-1].split(" at ", 1)[1].split(" ")[0]
        assert call(url + "v1/models/signs")[0] == 404
        version_dirs.push(exported_model, serving_dir, {})
        wait_for(lambda: states(url) == [("1", "AVAILABLE")], "the pushed version to load")
        assert predict_one(url, image_bytes("PNG"))[:2] == (200, "1")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output


def test_a_password_in_the_store_endpoint_stops_the_server_in_one_line_without_it(tmp_path):
    """It was printed in every poll's warning."""
    env = dict(os.environ, SIGNS_MINIO_ENDPOINT="http://signs:pa55word@127.0.0.1:9")
    out = subprocess.run([sys.executable, "-m", "pipeline.serve", "--serving-dir", "minio://mlpipeline/s", "--port", "0"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert out.returncode == 2
    assert out.stdout == ("error: the store endpoint http://<user info>@127.0.0.1:9 carries user:password@; give the keys in "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a secret) instead\n")
    assert "pa55word" not in out.stdout + out.stderr


def test_a_version_that_cannot_be_served_is_passed_over_then_served_once_whole(tmp_path):
    """A FIFO saved_model.pb held the watcher in LOADING for good; truncated variables stayed END until a
    restart. Now the newest version that loads serves, and a failed one is tried again with backoff."""
    serving_dir = tmp_path / "serving"
    saved_model(serving_dir / "1")
    saved_model(serving_dir / "2", factor=2.0)
    variables = serving_dir / "2" / "variables"
    data = [p for p in variables.iterdir() if ".data-" in p.name][0]
    whole = data.read_bytes()
    data.write_bytes(whole[:4])  # a copy cut short
    os.makedirs(serving_dir / "3")
    os.mkfifo(serving_dir / "3" / version_dirs.SAVED_MODEL)
    saved_model(serving_dir / "\u00b2")  # "²".isdigit() is true: it once made the watcher log a traceback each second
    saved_model(serving_dir / "99999999999999999999")  # past int64: TF Serving ignores it
    server = start_serving(str(serving_dir), poll_seconds=0.1)
    try:
        status = {v["version"]: v for v in call(server.url + "v1/models/signs")[2]["model_version_status"]}
        assert status["3"]["status"]["error_message"].endswith("saved_model.pb is not a regular file")
        assert "its variables do not read" in status["2"]["status"]["error_message"]
        assert sorted(status) == ["1", "2", "3"]
        data.write_bytes(whole)  # the copy completes
        wait_for(lambda: ("2", "AVAILABLE") in states(server.url), "version 2 to be tried again and serve")
        assert dict(states(server.url))["1"] == "END"
    finally:
        server.stop()


@pytest.mark.parametrize("argv, says", [
    (["--model-name", "../x"], "argument --model-name: '../x': expected letters, digits"),
    (["--model-name", ".."], "argument --model-name: '..': expected letters, digits"),
    (["--body-timeout", "inf"], "argument --body-timeout: expected a number from 0.001 to 3600, got inf"),
    (["--header-timeout", "nan"], "argument --header-timeout: expected a number from 0.001 to 3600, got nan"),
    (["--max-request-pixels", "1e23"], "argument --max-request-pixels: invalid int value: '1e23'"),
    (["--max-request-pixels", "100000000000000000000000"],
     "argument --max-request-pixels: expected a number from 1 to 1e+10, got 100000000000000000000000"),
    (["--port", "70000"], "argument --port: expected a port from 0 to 65535, got 70000"),
])
def test_a_flag_that_would_turn_a_limit_off_or_hide_the_model_is_refused(argv, says, capsys):
    """Each was accepted: the name served at a path no request reaches, the limits silently off."""
    with pytest.raises(SystemExit) as exit_info:
        serve.build_parser().parse_args(argv)
    assert exit_info.value.code == 2 and says in capsys.readouterr().err


def test_settings_from_code_take_the_same_ranges():
    with pytest.raises(ValueError, match="^body_timeout_s: expected a number from 0.001 to 3600, got inf$"):
        serving_app.ServerSettings(body_timeout_s=float("inf"))
    assert serving_app.ServerSettings(model_name="signs-v2.1").model_name == "signs-v2.1"


def test_the_readmes_limits_table_is_what_serve_does():
    """The README's limits table: each flag's default, the body limit and the inline-decoding size."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in readme[readme.index("| Limit | Default | Flag | Over it |"):].splitlines()[2:]
            if line.startswith("|")]
    defaults = {a.option_strings[0]: a.default for a in serve.build_parser()._actions if a.option_strings}  # pylint: disable=protected-access
    flagged = {row[2].strip("`"): row[1] for row in rows if row[2]}
    assert set(flagged) == {"--max-request-rows", "--max-request-pixels", "--max-connections", "--max-client-connections",
                            "--min-data-rate", "--header-timeout", "--body-timeout"}
    for flag, shown in flagged.items():
        assert float(shown.split()[0].replace(",", "")) == defaults[flag], flag
    body = next(row for row in rows if row[0].startswith("request body"))
    assert body[1] == f"{serving_app.ServerSettings().max_request_bytes // 2 ** 20} MiB"
    assert f"Bodies over {decoding.INLINE_BYTES // 1024} KiB" in readme
