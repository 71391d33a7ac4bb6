"""The dataflow DSL and its runtime: apps, streams, windows, checkpoints."""

from ._app import App, FileSource, Stream, Table, TopicRef, WindowedStream, file
from ._runner import IncompatibleState, PipelineError, RunResult, run_app

__all__ = ["App", "FileSource", "IncompatibleState", "PipelineError", "RunResult", "Stream", "Table",
           "TopicRef", "WindowedStream", "file", "run_app"]
