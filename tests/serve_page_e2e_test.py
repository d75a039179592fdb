"""The page of `python -m pipeline.serve`, driven in headless Chromium over the DevTools Protocol.

A real photo is given to the page's file input; the digit, the six bars and the version the page
then shows must be what the model says for that photo, and the page must fetch nothing but the
server's own URLs.
"""

import asyncio
import glob
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import aiohttp
import numpy as np
import pytest

from components.push import version_dirs
from pipeline.rest_server.app import BackgroundServer, ServerSettings, make_app

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update", "--remote-debugging-port=0",
                  "--window-size=1000,900"]


@pytest.fixture(scope="module")
def server(exported_model, tmp_path_factory):
    serving_dir = str(tmp_path_factory.mktemp("serving"))
    version_dirs.push(exported_model, serving_dir, {})
    server = BackgroundServer(make_app(serving_dir, ServerSettings(poll_seconds=0.5)))
    deadline = time.monotonic() + 300
    while not _available(server.url):
        assert time.monotonic() < deadline, "version 1 did not load"
        time.sleep(0.2)
    yield server
    server.stop()


def _available(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "v1/models/signs") as response:
            return json.load(response)["model_version_status"][0]["state"] == "AVAILABLE"
    except OSError:
        return False


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    return path


class DevTools:
    """A page's DevTools Protocol session over a websocket: commands, and the events seen so far."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.events = []
        self._next_id = 0

    async def send(self, method: str, **params):
        self._next_id += 1
        await self.ws.send_json({"id": self._next_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), 60)
            if message.get("id") == self._next_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self.events.append(message)

    async def wait_for_event(self, method: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(await asyncio.wait_for(self.ws.receive_json(), max(0.1, deadline - time.monotonic())))

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")


async def _drive_the_page(page_url: str, photo: str, devtools_port: int) -> dict:
    """Opens the page, gives the photo to its file input, waits for the answer; what the page shows."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            devtools = DevTools(ws)
            for domain in ("Page", "Runtime", "Network", "DOM"):
                await devtools.send(f"{domain}.enable")
            await devtools.send("Page.navigate", url=page_url)
            await devtools.wait_for_event("Page.loadEventFired")
            document = await devtools.send("DOM.getDocument")
            camera = await devtools.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#camera")
            photo_input = await devtools.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#photo")
            await devtools.send("DOM.setFileInputFiles", files=[photo], nodeId=photo_input["nodeId"])
            answered = ("['done', 'error'].includes(document.getElementById('result').dataset.state) && "
                        "document.getElementById('serving').textContent !== 'asking the server…'")
            deadline = time.monotonic() + 120
            while not await devtools.evaluate(answered):
                assert time.monotonic() < deadline, "the page showed no answer"
                await asyncio.sleep(0.1)
            shown = await devtools.evaluate("""JSON.stringify({
                state: document.getElementById('result').dataset.state,
                error: document.getElementById('error').textContent,
                digit: document.getElementById('digit').textContent,
                version: document.getElementById('version').textContent,
                serving: document.getElementById('serving').textContent,
                preview: document.getElementById('preview').naturalWidth,
                bars: [...document.querySelectorAll('#bars .bar')].map((bar) => ({
                    digit: bar.querySelector('.label').textContent,
                    width: bar.querySelector('.fill').style.width,
                    drawn: bar.querySelector('.fill').getBoundingClientRect().width /
                           bar.querySelector('.track').getBoundingClientRect().width,
                    value: bar.querySelector('.value').textContent,
                    top: bar.classList.contains('top')}))})""")
            camera_attributes = await devtools.send("DOM.getAttributes", nodeId=camera["nodeId"])
    shown = json.loads(shown)
    shown["camera"] = camera_attributes["attributes"]
    shown["requested"] = [e["params"]["request"]["url"] for e in devtools.events
                          if e.get("method") == "Network.requestWillBeSent"]
    shown["console_errors"] = [e["params"] for e in devtools.events if e.get("method") == "Runtime.exceptionThrown"]
    return shown


def _devtools_port(log_path: str) -> int:
    """The port Chromium says it listens on ('DevTools listening on ws://127.0.0.1:PORT/...')."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", f.read())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        raise AssertionError("Chromium did not start its DevTools server: " + f.read()[-2000:])


def test_the_page_shows_what_the_model_says_for_a_real_photo(server, shared_photos, exported_model, tmp_path):
    photo = sorted(glob.glob(os.path.join(shared_photos, "3", "*.JPG")))[0]
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with open(photo, "rb") as f:
        out = tf.saved_model.load(exported_model).signatures["serve_image_bytes"](image_bytes=tf.constant([f.read()]))
    probabilities, predicted = out["probabilities"].numpy()[0], int(out["classes"].numpy()[0])

    log_path = str(tmp_path / "chromium.log")
    with open(log_path, "w", encoding="utf-8") as log:
        chromium = subprocess.Popen([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                                     "about:blank"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        shown = asyncio.run(_drive_the_page(server.url, photo, _devtools_port(log_path)))
    finally:
        chromium.terminate()
        chromium.wait(30)

    assert shown["state"] == "done" and shown["error"] == "", shown
    assert shown["console_errors"] == []
    assert shown["digit"] == str(predicted) and shown["version"] == "1"
    assert shown["serving"] == "serving version 1"
    assert shown["preview"] > 0  # the photo is drawn
    assert [bar["digit"] for bar in shown["bars"]] == [str(d) for d in range(6)]
    widths = [float(bar["width"].rstrip("%")) for bar in shown["bars"]]
    np.testing.assert_allclose(widths, 100 * probabilities, atol=0.006)  # toFixed(2) of a percent
    np.testing.assert_allclose([bar["drawn"] for bar in shown["bars"]], probabilities, atol=0.01)
    assert [bar["value"] for bar in shown["bars"]] == [f"{100 * p:.1f}%" for p in probabilities]
    assert [bar["top"] for bar in shown["bars"]] == [d == predicted for d in range(6)]
    assert "capture" in shown["camera"] and "image/*" in shown["camera"]  # a camera where the browser has one
    assert shown["requested"] and all(url.startswith((server.url, "blob:" + server.url, "data:"))
                                      for url in shown["requested"]), shown["requested"]
