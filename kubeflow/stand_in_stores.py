"""Stand-in object stores on 127.0.0.1: moto's S3 server (for s3:// and minio://) and
gcp-storage-emulator (for gs://). `run-local --local-store` runs a package's tasks against one, and
the tests use them for every object-store path."""

import socket
import threading
from typing import Tuple

from components.data import storage


def start_stand_in(kind: str, wsgi_filter=None) -> Tuple[str, object]:
    """Starts a stand-in object store on 127.0.0.1: moto's S3 server for "s3"/"minio", gcp-storage-emulator for "gs".

    Args:
      kind: the scheme it stands in for.
      wsgi_filter: for S3, a function (moto's WSGI app) -> WSGI app wrapped around it, e.g. to
        refuse keys outside a namespace's prefixes as KFP's multi-user policies do.

    Returns:
      (its endpoint URL, a function that stops it). The server starts empty.
    """
    if kind in ("s3", "minio"):
        import logging  # pylint: disable=import-outside-toplevel
        from moto.server import DomainDispatcherApplication, create_backend_app  # pylint: disable=import-outside-toplevel
        from werkzeug.serving import make_server  # pylint: disable=import-outside-toplevel
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server("127.0.0.1", _free_port(), wsgi_filter(app) if wsgi_filter else app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        # moto keeps its buckets in this process, shared by every server it starts: empty them, so
        # each stand-in starts as empty as a new store (moto's own reset endpoint).
        import urllib.request  # pylint: disable=import-outside-toplevel
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
        return url, server.shutdown
    if kind == "gs":
        from gcp_storage_emulator.server import create_server  # pylint: disable=import-outside-toplevel
        port = _free_port()
        server = create_server("127.0.0.1", port, in_memory=True)
        server.start()
        return f"http://127.0.0.1:{port}", server.stop
    raise storage.StorageError(f"{kind}://: a stand-in store is for gs://, s3:// or minio://")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
