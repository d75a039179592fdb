"""The server: TF Serving's REST API under /v1/ (`routes`), the page at / to try the model.

    server = BackgroundServer(make_app(serving_dir, ServerSettings(poll_seconds=0.5)))   # port 0: a free port
    urllib.request.urlopen(server.url + "v1/models/signs")
    server.stop()

`python -m pipeline.serve` runs it from the command line.
"""

import argparse
import asyncio
import dataclasses
import os
import re
import threading
from typing import Tuple

from aiohttp import web

from common.flags import bounds_problem, setting, within

from pipeline.rest_server import limits, routes
from pipeline.rest_server.batching import Batcher
from pipeline.rest_server.model_manager import ModelManager

MANAGER = web.AppKey("manager", ModelManager)
SETTINGS = web.AppKey("settings", object)
BATCHER = web.AppKey("batcher", Batcher)


# A model name a request can reach: /v1/models/<name> takes no '/' or ':' (routes.py), and '.' or
# '..' alone would be a path step.
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _model_name(text: str) -> str:
    if not MODEL_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected letters, digits, '_', '.' and '-' (not first), as a "
                                         f"URL path step /v1/models/<name> takes it")
    return text


_port = within(int, 0, 65535, "a port from 0 to 65535")


# The settings of what one client can hold (limits.py): `python -m pipeline.serve` groups their flags.
CLIENT_LIMITS = ("max_request_rows", "max_request_pixels", "max_connections", "max_client_connections",
                 "header_timeout_s", "body_timeout_s", "min_data_rate")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How and where the server serves; `python -m pipeline.serve` makes its flags from these fields.

    Each number's range (both ends included) is what its flag takes and what the class takes from
    code. No limit can be turned off by a value (min_data_rate 0 only stops the dropping of slow senders).
    """

    port: int = setting(8501, "port to listen on (TF Serving's REST port is 8501; 0 picks a free one)",
                        parse=_port, bounds=(0, 65535))
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    model_name: str = setting("signs", "the model's name in the URLs: /v1/models/<name>", parse=_model_name)
    poll_seconds: float = setting(2.0, "how often to look for a newly pushed version, in seconds (TF Serving: 1)",
                                  bounds=(1e-3, 3600.0))
    max_batch_size: int = setting(32, "rows a batch of concurrent predict requests collects at most", bounds=(1, 4096))
    # 0: only the requests already waiting; they pile up while the model is busy.
    batch_timeout_ms: float = setting(2.0, "how long a batch waits for more requests after the first, in "
                                           "milliseconds", bounds=(0.0, 10_000.0))
    # Larger bodies get 413; a 40-megapixel JPEG is ~27 MB in base64. Not a flag.
    max_request_bytes: int = dataclasses.field(default=64 * 2 ** 20, metadata={"bounds": (1024, 2 ** 31)})
    max_request_rows: int = setting(256, "rows (images) in one request", bounds=(1, 65_536))
    max_request_pixels: int = setting(50_000_000, "image pixels, as the headers declare them, in one request "
                                                  "(one 40-megapixel photo fits)", bounds=(1, 10_000_000_000))
    max_connections: int = setting(256, "open connections; the next is answered 503 and closed", bounds=(1, 65_535))
    max_client_connections: int = setting(32, "open connections from one client address", bounds=(1, 65_535))
    header_timeout_s: float = setting(10.0, "seconds a request's headers may take to arrive, and a kept-alive "
                                            "connection may stay idle", bounds=(1e-3, 3600.0), flag="--header-timeout")
    body_timeout_s: float = setting(30.0, "seconds a request's body may take to arrive after its headers",
                                    bounds=(1e-3, 3600.0), flag="--body-timeout")
    min_data_rate: float = setting(16 * 1024, "when every connection is taken, the slowest sender below this many "
                                              "bytes a second (of the address holding the most connections) is "
                                              "dropped to make room for an address holding fewer; 0: none is",
                                   bounds=(0.0, 1e9))

    def __post_init__(self):
        problem = settings_problem(self)
        if problem:
            raise ValueError(problem)


def settings_problem(settings: ServerSettings) -> str:
    if not MODEL_NAME.fullmatch(settings.model_name):
        return (f"model_name {settings.model_name!r}: expected letters, digits, '_', '.' and '-' (not first), "
                f"as a URL path step /v1/models/<name> takes it")
    for field in dataclasses.fields(settings):
        problem = bounds_problem(field, getattr(settings, field.name))
        if problem:
            return f"{field.name}: {problem}"
    return ""




def page(model_name: str) -> str:
    """The page at /, from page.html.j2 (Jinja2, autoescaped, as the review report)."""
    import jinja2  # pylint: disable=import-outside-toplevel
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("page.html.j2").render(model_name=model_name)


def make_app(serving_dir: str, settings: ServerSettings = ServerSettings()) -> web.Application:
    """The server for a serving dir (a path, or a gs://, s3://, minio:// URL the Pusher writes).

    Returns:
      An aiohttp application; its startup starts the version watcher and the batcher.
    """
    app = web.Application(client_max_size=settings.max_request_bytes,
                          middlewares=[routes.header_clock, routes.json_errors])
    app[SETTINGS] = settings
    app[MANAGER] = ModelManager(serving_dir, settings.model_name, settings.poll_seconds)
    app[BATCHER] = Batcher(settings.max_batch_size, settings.batch_timeout_ms / 1000)
    app[routes.REST_API] = routes.RestApi(app[MANAGER], app[BATCHER], settings.max_request_rows,
                                          settings.max_request_pixels, max_bytes=settings.max_request_bytes)
    app[routes.BODY_TIMEOUT] = settings.body_timeout_s
    app[routes.GUARDS] = []
    text = page(settings.model_name)

    async def page_handler(_):
        return web.Response(text=text, content_type="text/html")

    app.router.add_get("/", page_handler)
    app.router.add_route("*", "/{prefix:[vV]1}/{rest:.*}", routes.rest_handler)
    app.cleanup_ctx.append(_background_tasks)
    return app


async def _background_tasks(app: web.Application):
    """Runs the version watcher and the batcher from startup to cleanup."""
    tasks = [asyncio.create_task(app[MANAGER].watch()), asyncio.create_task(app[BATCHER].run())]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    app[BATCHER].close()
    app[routes.REST_API].decoder.close()


async def start(app: web.Application, host: str, port: int) -> Tuple[web.AppRunner, str]:
    """Starts serving `app`; returns the runner (to clean up) and the URL (port 0: a free port)."""
    # The handler inflates a compressed body itself, within the body limit (serving.decoding).
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)
    await runner.setup()
    settings = app[SETTINGS]
    site = limits.GuardedSite(runner, (settings.max_connections, settings.header_timeout_s,
                                       settings.max_client_connections, settings.min_data_rate), host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    app[routes.GUARDS].append(site.guard)
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}/"


class BackgroundServer:
    """Serves an app from a thread of its own: for tests, benchmarks and notebooks (see the module docstring)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="serve", daemon=True)
        self._thread.start()
        try:
            self._runner, self.url = asyncio.run_coroutine_threadsafe(start(app, host, port), self._loop).result(60)
        except BaseException:
            self._stop_loop()
            raise

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(60)
        self._loop.close()
