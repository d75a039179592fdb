"""Batching: concurrent predict calls for one version and signature go to the model as one call.

Requests that arrive within `timeout_s` of each other, or while the model is busy with the previous
batch, are concatenated into one call of up to about `max_batch_size` rows, run in a thread of its
own so the event loop keeps answering. A batch that fails is re-run request by request, so one bad
image fails only its own request. The gain comes from requests piling up while the model is busy
(bench/serve_load.py measures it; figures in bench/README.md).
"""

import asyncio
import concurrent.futures
import dataclasses
import logging
from typing import Dict, List, Tuple

import numpy as np

from pipeline.rest_server.errors import ServingError, from_exception, invalid
from pipeline.rest_server.model_manager import Servable, Signature

log = logging.getLogger(__name__)


def call_signature(signature: Signature, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Runs a signature on numpy inputs (in the batcher's thread); errors become ServingErrors."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        outputs = signature.function(**{k: tf.constant(v, dtype=signature.inputs[k]) for k, v in inputs.items()})
    except tf.errors.OpError as e:
        raise from_exception(e) from None
    except (TypeError, ValueError) as e:  # inputs that do not bind to the signature
        raise invalid(str(e).strip().splitlines()[0]) from None
    return {k: v.numpy() for k, v in outputs.items()}


@dataclasses.dataclass
class _Request:
    """One predict call waiting in the batcher, and the future its answer goes to."""

    servable: Servable
    signature: Signature
    inputs: Dict[str, np.ndarray]
    result: asyncio.Future

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0] if self.batchable else 1

    @property
    def batchable(self) -> bool:
        """Every input has a batch dimension, the same for all."""
        sizes = {v.shape[0] if v.ndim else None for v in self.inputs.values()}
        return len(sizes) == 1 and None not in sizes

    @property
    def group(self) -> Tuple:
        """Requests of one group can be concatenated into one call."""
        if not self.batchable:
            return (id(self),)
        return (id(self.servable), self.signature.name,
                tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in self.inputs.items())))

    def answer(self, outputs: Dict[str, np.ndarray]) -> None:
        if not self.result.done():  # done: the client went away
            self.result.set_result(outputs)

    def fail(self, error: ServingError) -> None:
        if not self.result.done():
            self.result.set_exception(error)


class Batcher:
    """Collects predict calls into batches, and runs them one batch at a time in a thread.

    `model_calls` and `pending` are there for tests and monitoring.
    """

    def __init__(self, max_batch_size: int = 32, timeout_s: float = 0.002):
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.model_calls = 0  # signature calls made
        self.pending = 0  # requests given to `predict` and not yet answered
        self._queue: "asyncio.Queue[_Request]" = asyncio.Queue()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    async def predict(self, servable: Servable, signature: Signature,
                      inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The signature's outputs for these inputs, computed in a batch with others arriving now."""
        self.pending += 1
        try:
            request = _Request(servable, signature, inputs, asyncio.get_running_loop().create_future())
            self._queue.put_nowait(request)
            return await request.result
        finally:
            self.pending -= 1

    async def run(self) -> None:
        """Forms and runs batches for as long as the server runs."""
        while True:
            batch = await self._collect()
            groups: Dict[Tuple, List[_Request]] = {}
            for request in batch:
                groups.setdefault(request.group, []).append(request)
            for requests in groups.values():
                try:
                    await self._run_group(requests)
                except Exception as e:  # pylint: disable=broad-except  (answered, and logged)
                    log.exception("a batch of %d requests failed", len(requests))
                    for request in requests:
                        request.fail(ServingError("INTERNAL", f"{type(e).__name__}: {e}"))

    async def _collect(self) -> List[_Request]:
        """The requests waiting now, and those arriving within the timeout, up to about max_batch_size rows."""
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.timeout_s
        while sum(r.rows for r in batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _call(self, signature: Signature, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.model_calls += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, call_signature, signature, inputs)

    async def _run_group(self, requests: List[_Request]) -> None:
        """One call for the group if it can; else one per request, so a bad input fails only its own."""
        requests = [r for r in requests if not r.result.done()]  # done: the client went away
        if len(requests) > 1 and await self._run_together(requests):
            return
        for request in requests:
            try:
                request.answer(await self._call(request.signature, request.inputs))
            except ServingError as e:
                request.fail(e)

    async def _run_together(self, requests: List[_Request]) -> bool:
        """One call on the requests' inputs concatenated, its outputs split by rows; False if it failed
        or its outputs do not split."""
        rows = [r.rows for r in requests]
        inputs = {k: np.concatenate([r.inputs[k] for r in requests]) for k in requests[0].inputs}
        try:
            outputs = await self._call(requests[0].signature, inputs)
        except ServingError:
            return False
        if not all(v.ndim and v.shape[0] == sum(rows) for v in outputs.values()):
            return False
        for request, end in zip(requests, np.cumsum(rows)):
            request.answer({k: v[end - request.rows:end] for k, v in outputs.items()})
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False)
