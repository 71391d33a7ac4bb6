"""The dataflow DSL and its runtime: apps, streams, windows, checkpoints."""

from ._app import App, FileSource, Stream, TopicRef, WindowedStream, file
from ._runner import IncompatibleState, PipelineError, RunResult, run_app

__all__ = ["App", "FileSource", "IncompatibleState", "PipelineError", "RunResult", "Stream",
           "TopicRef", "WindowedStream", "file", "run_app"]
