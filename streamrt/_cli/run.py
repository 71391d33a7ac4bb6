"""``streamrt run APP.py``: import an app file and run its pipelines."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import time
import traceback
from typing import Any

from ._common import CliError


def load_app(path: str, name: str | None) -> Any:
    """Import the app file and return its App (one-line errors pointing at the user's line)."""
    from ..dataflow import App

    if not os.path.isfile(path):
        raise CliError(f"no such app file: {path}")
    spec = importlib.util.spec_from_file_location("__streamrt_app__", path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise CliError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        raise CliError(f"{_user_frame(e, path)}: {type(e).__name__}: {e}") from None
    apps = {k: v for k, v in vars(module).items() if isinstance(v, App)}
    if not apps:
        raise CliError(f"{path} defines no streamrt App: create one, e.g. app = sr.App('name')")
    if name is not None:
        found = [a for a in apps.values() if a.name == name]
        if not found:
            raise CliError(f"{path} has no app named {name!r} (it has {sorted(a.name for a in apps.values())})")
        return found[0]
    distinct = {id(a): a for a in apps.values()}
    if len(distinct) > 1:
        raise CliError(f"{path} defines several apps ({sorted(a.name for a in distinct.values())}): "
                       f"pick one with --app NAME")
    return next(iter(distinct.values()))


def _user_frame(e: BaseException, path: str) -> str:
    """file:line of the deepest frame in the user's app file (else the last frame)."""
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
    f = (mine or frames)[-1] if frames else None
    return f"{f.filename}:{f.lineno}" if f else path


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from ..broker import open as open_broker
    from ..dataflow import PipelineError, run_app
    from ..errors import StreamrtError

    import logging

    if not args.debug:  # restarts and warnings as one-line logs, not Python's bare fallback
        logging.basicConfig(level=logging.WARNING, format="streamrt: %(message)s")
    app = load_app(args.app_file, args.app)
    from ..cli import DATA_DIR_ENV, DEFAULT_DATA_DIR

    # The app's own data_dir counts unless --data-dir (or $STREAMRT_DATA_DIR) says otherwise.
    default = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    data_dir = app.data_dir if app.data_dir and args.data_dir == default else args.data_dir
    tty = sys.stderr.isatty()
    last = [0.0]

    def progress(r: Any) -> None:
        now = time.monotonic()
        if tty and now - last[0] >= 0.25:
            last[0] = now
            sys.stderr.write(f"\r{app.name}: in {r.records_in:,}  out {r.records_out:,}  "
                             f"checkpoints {r.checkpoints}  late {r.late}  dlq {r.dead_lettered}   ")
            sys.stderr.flush()

    config = None
    if args.listen is not None:
        from .serve import server_config

        config = server_config(args)

    async def main() -> Any:
        async with open_broker(data_dir) as broker:
            async with trio.open_nursery() as nursery:
                result: list[Any] = []
                if config is not None:  # serve the app's topics while it runs
                    from .serve import remove_addr_file, start_server

                    await start_server(nursery, broker, config, data_dir)
                    nursery.start_soon(_remove_at_exit, remove_addr_file, data_dir)

                async def watch_signals() -> None:
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            nursery.cancel_scope.cancel()  # graceful: final checkpoint
                            return

                nursery.start_soon(watch_signals)
                result.append(await run_app(app, broker, until_caught_up=args.until_caught_up,
                                            reset=args.reset, on_progress=progress))
                nursery.cancel_scope.cancel()
            return result[0] if result else None

    try:
        r = trio.run(main)
    except OSError as e:
        from .serve import listen_error

        raise listen_error(e, config) from None
    except BaseExceptionGroup as eg:  # task groups wrap errors: report the first of ours
        if config is not None:
            from .serve import listen_error

            if isinstance(err := listen_error(eg, config), CliError):
                raise err from None
        ours = eg.subgroup(lambda e: isinstance(e, (StreamrtError, CliError)))
        if ours is None:
            raise
        first: BaseException = ours
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise CliError(str(first)) from eg
    except PipelineError as e:
        raise CliError(str(e)) from e
    if tty:
        sys.stderr.write("\n")
    if r is None:
        print(f"{app.name}: stopped; state checkpointed in {data_dir}")
        return 0
    if r.records_in == 0 and r.checkpoints <= 1:
        print(f"{app.name}: nothing new to read since the last checkpoint in {data_dir} "
              f"(run with --reset to process everything again)")
        return 0
    rate = r.records_in / r.seconds if r.seconds else 0.0
    print(f"{app.name}: {r.records_in:,} records in, {r.records_out:,} out in {r.seconds:.2f}s "
          f"({rate:,.0f}/s), {r.checkpoints} checkpoints, {r.late} late, "
          f"{r.dead_lettered} dead-lettered, {r.restarts} restarts")
    return 0


async def _remove_at_exit(remove: Any, data_dir: str) -> None:
    """Sleep until cancelled (the app ended), then remove the server's address file."""
    import trio

    try:
        await trio.sleep_forever()
    finally:
        remove(data_dir)
