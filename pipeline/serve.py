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

from components.data import storage
from components.push import version_dirs
from pipeline import options
from pipeline.rest_server.app import MODEL_NAME, ServerSettings, make_app, range_problem, start
from components.data import startup


def _ranged(name: str, kind):
    """An argparse type: a `kind` within the range of the setting `name` (RANGES)."""
    return options.checked_number(kind, lambda value: range_problem(name, value))


def _model_name(text: str) -> str:
    if not MODEL_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected letters, digits, '_', '.' and '-' (not first), as a "
                                         f"URL path step /v1/models/<name> takes it")
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = ServerSettings()
    parser = options.ShortUsageParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_flags(parser, only=("pipeline_root", "serving_dir"))  # as the runners and predict take them
    parser.add_argument("--port", type=_port, default=8501,
                        help="port to listen on (TF Serving's REST port is 8501; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s; 0.0.0.0: every interface)")
    parser.add_argument("--model-name", type=_model_name, default=d.model_name,
                        help="the model's name in the URLs: /v1/models/<name> (default %(default)s)")
    parser.add_argument("--poll-seconds", type=_ranged("poll_seconds", float), default=d.poll_seconds,
                        help="how often to look for a newly pushed version, in seconds (default %(default)s)")
    parser.add_argument("--max-batch-size", type=_ranged("max_batch_size", int), default=d.max_batch_size,
                        help="rows a batch of concurrent predict requests collects at most (default %(default)s)")
    parser.add_argument("--batch-timeout-ms", type=_ranged("batch_timeout_ms", float), default=d.batch_timeout_ms,
                        help="how long a batch waits for more requests, in milliseconds (default %(default)s)")
    limits = parser.add_argument_group("what one client can hold (a request over a limit gets TF Serving's "
                                       "error shape, 400, 408, 413 or 503, at once)")
    limits.add_argument("--max-request-rows", type=_ranged("max_request_rows", int), default=d.max_request_rows,
                        help="rows (images) in one request (default %(default)s)")
    limits.add_argument("--max-request-pixels", type=_ranged("max_request_pixels", int),
                        default=d.max_request_pixels,
                        help="image pixels, as the headers declare them, in one request (default %(default)s)")
    limits.add_argument("--max-connections", type=_ranged("max_connections", int), default=d.max_connections,
                        help="open connections; the next is answered 503 and closed (default %(default)s)")
    limits.add_argument("--max-client-connections", type=_ranged("max_client_connections", int),
                        default=d.max_client_connections,
                        help="open connections from one client address (default %(default)s)")
    limits.add_argument("--header-timeout", type=_ranged("header_timeout_s", float), default=d.header_timeout_s,
                        help="seconds a request's headers may take to arrive, and a kept-alive connection may "
                             "stay idle (default %(default)s)")
    limits.add_argument("--body-timeout", type=_ranged("body_timeout_s", float), default=d.body_timeout_s,
                        help="seconds a request's body may take to arrive after its headers (default %(default)s)")
    limits.add_argument("--min-data-rate", type=_ranged("min_data_rate", float), default=d.min_data_rate,
                        help="when every connection is taken, the slowest sender below this many bytes a second "
                             "(of the address holding the most connections) is dropped to make room for an address "
                             "holding fewer; 0: none is (default "
                             "%(default)s)")
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
    app = make_app(serving_dir, ServerSettings(model_name=args.model_name, poll_seconds=args.poll_seconds,
                                         max_batch_size=args.max_batch_size, batch_timeout_ms=args.batch_timeout_ms,
                                         max_request_rows=args.max_request_rows,
                                         max_request_pixels=args.max_request_pixels,
                                         max_connections=args.max_connections,
                                         max_client_connections=args.max_client_connections,
                                         header_timeout_s=args.header_timeout,
                                         body_timeout_s=args.body_timeout, min_data_rate=args.min_data_rate))
    return asyncio.run(_serve_until_stopped(app, args.host, args.port, serving_dir, args.model_name))


if __name__ == "__main__":
    sys.exit(main())
