"""The progress lines come from ML Metadata's execution states, as TFX records them."""

import io
import logging

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import monitor


def _store(path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _record(store, run_id, component, state):
    """An execution in a run, in the contexts TFX puts it: the pipeline_run and the component's node."""
    run_type = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline_run"))
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    contexts = []
    for type_id, name in ((run_type, run_id), (node_type, f"signs.{component}")):
        found = store.get_context_by_type_and_name("pipeline_run" if type_id == run_type else "node", name)
        contexts.append(found or metadata_store_pb2.Context(type_id=type_id, name=name))
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name=f"tfx.{component}"))
    execution = metadata_store_pb2.Execution(type_id=execution_type, last_known_state=state)
    execution_id, _, _ = store.put_execution(execution, [], contexts)
    return execution_id


def test_each_state_change_is_one_line(tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    store = _store(path)
    out = io.StringIO()
    watcher = monitor.RunMonitor(path, "run-1", ["ExampleGen", "Trainer"], stream=out)
    watcher.poll()
    assert out.getvalue() == ""  # nothing recorded yet
    _record(store, "run-1", "ExampleGen", metadata_store_pb2.Execution.CACHED)
    trainer = _record(store, "run-1", "Trainer", metadata_store_pb2.Execution.RUNNING)
    _record(store, "run-2", "Trainer", metadata_store_pb2.Execution.FAILED)  # another run's: not shown
    watcher.poll()
    watcher.poll()  # no change, no line
    [done] = store.get_executions_by_id([trainer])
    done.last_known_state = metadata_store_pb2.Execution.COMPLETE
    store.put_execution(done, [], [])
    watcher.poll()
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[:2] == ["ExampleGen reused from cache", "Trainer ..."]
    assert len(lines) == 3 and lines[2].startswith("Trainer done (")


def test_warnings_show_one_line_and_noise_stays_in_the_log():
    out = io.StringIO()
    handler = monitor.WarningHandler(out)
    logger = logging.getLogger("components.evaluation")
    for message in ("class 5 has few examples\nmore detail", "`custom_executor_spec` is deprecated"):
        handler.emit(logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, None, None))
    handler.emit(logging.getLogger("tensorflow").makeRecord("tensorflow", logging.WARNING, __file__, 1, "x", None, None))
    assert out.getvalue() == "warning: class 5 has few examples\n"
