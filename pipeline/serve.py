"""Serves the pushed model versions over TF Serving's REST API, with a page at / to try the model.

    python -m pipeline.serve --pipeline-root pipeline_output       # http://127.0.0.1:8501/
    curl http://127.0.0.1:8501/v1/models/signs                     # which version is serving
    curl -d '{"signature_name": "serve_image_bytes", "instances": [{"b64": "'$(base64 -w0 hand.jpg)'"}]}' \\
        http://127.0.0.1:8501/v1/models/signs:predict

The server is `pipeline.rest_server` (what it answers, and how, is described there).
"""

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from common import flags
from components.data import storage
from components.push import version_dirs
from pipeline import options
from pipeline.rest_server.app import CLIENT_LIMITS, ServerSettings, make_app, start
from components.data import startup


def build_parser() -> argparse.ArgumentParser:
    """The flags: where the models are (as the runners and predict take it), then ServerSettings' fields."""
    parser = options.ShortUsageParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_flags(parser, only=("pipeline_root", "serving_dir"))
    flags.add_flags(parser, ServerSettings, skip=CLIENT_LIMITS)
    limits = parser.add_argument_group("what one client can hold (a request over a limit gets TF Serving's "
                                       "error shape, 400, 408, 413 or 503, at once)")
    flags.add_flags(limits, ServerSettings, only=CLIENT_LIMITS)
    for action in parser._actions:  # pylint: disable=protected-access
        if action.default not in (None, argparse.SUPPRESS) and "%(default)" not in action.help:
            action.help += " (default %(default)s)"
    return parser


async def _serve_until_stopped(app: web.Application, host: str, port: int, serving_dir: str, name: str) -> int:
    try:
        runner, url = await start(app, host, port)
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror or e}", flush=True)
        return 1
    print(f"serving {serving_dir} as model {name!r} at {url} (REST API: {url}v1/models/{name})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    startup.start_process()
    serving_dir = options.config_from_args(args).serving_dir
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    try:
        pushed = version_dirs.list_versions(serving_dir)
    except storage.StorageConfigError as e:
        print(f"error: {e}")
        return 2
    except storage.StorageError as e:
        print(f"warning: {e}; trying again every {args.poll_seconds:g} s", flush=True)
        pushed = [None]
    if not pushed:
        print(f"{serving_dir}: no version pushed yet; the first one is served as soon as it lands "
              f"(looked for every {args.poll_seconds:g} s)", flush=True)
    settings = ServerSettings(**flags.values(ServerSettings, args))
    app = make_app(serving_dir, settings)
    return asyncio.run(_serve_until_stopped(app, settings.host, settings.port, serving_dir, settings.model_name))

if __name__ == "__main__":
    sys.exit(main())
