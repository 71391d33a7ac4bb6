"""The public front: exactly these names are exported, each with a docstring."""

import streamrt

EXPECTED = {
    "LogStorage", "LogStore", "PartitionInfo", "Record", "Records", "TopicConfig", "TopicInfo",
    "WriteBatch", "WriteResult", "errors", "open_log",
    "Broker", "Delivery", "Producer", "RecordMetadata", "SentBatch", "open",
    "Consumer", "ConsumerTransaction", "Message",
    "QueueConsumer", "QueueMessage", "QueueStats", "DeadLetter",
    "App", "PipelineError", "RunResult", "Stream", "TopicRef", "file", "collect", "count",
    "fold", "max", "mean", "min", "reduce", "session", "sliding", "sum", "tumbling",
}


def test_exported_names() -> None:
    assert set(streamrt.__all__) == EXPECTED
    for name in EXPECTED - {"errors"}:
        assert getattr(streamrt, name).__doc__, name


def test_errors_subclass_builtins() -> None:
    e = streamrt.errors
    assert issubclass(e.InvalidTopicName, ValueError)
    assert issubclass(e.UnknownTopic, LookupError)
    assert issubclass(e.StorageFull, OSError)
    for name in e.__all__:
        assert issubclass(getattr(e, name), e.StreamrtError)


def test_either_package_can_be_imported_first() -> None:
    import subprocess
    import sys

    for stmt in ("import operators", "import operators._windows", "import streamrt.dataflow",
                 "import streamrt"):
        r = subprocess.run([sys.executable, "-c", stmt], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{stmt}: {r.stderr[-500:]}"
