"""``streamrt serve``: the Kafka-protocol server over a data directory (also ``run --listen``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from ..errors import StreamrtError
from ._common import CliError

#: Written into the data directory while a server runs there: ``host:port`` to reach it.
ADDR_FILE = "serve.addr"


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; ``:port`` means 127.0.0.1) as argparse type."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"port must be a number, got {port!r} in {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {number}")
    return host, number


def add_server_options(parser: argparse.ArgumentParser, *, listen_required: bool) -> None:
    """The options of ``serve`` (and of ``run``, where ``--listen`` is optional)."""
    parser.add_argument(
        "--listen", metavar="HOST:PORT", type=parse_address,
        default=None if not listen_required else ("127.0.0.1", 9092),
        help="address to serve the Kafka protocol on (default 127.0.0.1:9092 for serve; "
             "port 0 picks a free one)" if listen_required else
             "also serve the app's topics over the Kafka protocol on HOST:PORT")
    parser.add_argument("--advertise", metavar="HOST:PORT", type=parse_address,
                        help="address clients are told to connect to (default: the listen address)")
    parser.add_argument("--default-partitions", metavar="N", type=int, default=1,
                        help="partitions of topics created on a client's request (default 1)")
    parser.add_argument("--no-auto-create", action="store_true",
                        help="do not create unknown topics named in client requests")
    parser.add_argument("--max-frame-bytes", metavar="N", type=int, default=100 << 20,
                        help="largest request accepted (default 100 MiB)")
    parser.add_argument("--max-connections", metavar="N", type=int, default=1024,
                        help="open connections at most (default 1024)")
    parser.add_argument("--idle-timeout", metavar="SECONDS", type=float, default=600.0,
                        help="close connections idle this long (default 600)")


def server_config(args: argparse.Namespace) -> Any:
    from ..kafka._handlers import ServerConfig

    host, port = args.listen
    adv_host, adv_port = args.advertise or (None, None)
    if args.default_partitions < 1:
        raise CliError(f"--default-partitions must be at least 1, got {args.default_partitions}")
    return ServerConfig(
        host=host, port=port, advertised_host=adv_host, advertised_port=adv_port,
        default_partitions=args.default_partitions, auto_create_topics=not args.no_auto_create,
        max_frame_bytes=args.max_frame_bytes, max_connections=args.max_connections,
        idle_timeout=args.idle_timeout)


async def start_server(nursery: Any, broker: Any, config: Any, data_dir: str) -> tuple[str, int]:
    """Start the Kafka server in ``nursery``; announce it on stdout and in the data dir."""
    from ..kafka._server import KafkaServer

    server = KafkaServer(broker, config)
    host, port = await nursery.start(server.serve)
    with open(os.path.join(data_dir, ADDR_FILE), "w") as f:
        f.write(f"{host}:{port}\n")
    print(f"streamrt serve: listening on {host}:{port}", flush=True)
    return host, port


def remove_addr_file(data_dir: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(data_dir, ADDR_FILE))


def server_address(data_dir: str) -> str | None:
    """The address recorded by a server running on ``data_dir`` (None if none)."""
    try:
        with open(os.path.join(data_dir, ADDR_FILE)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from ..broker import open as open_broker

    config = server_config(args)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_broker(args.data_dir) as broker:
                try:
                    async with trio.open_nursery() as nursery:
                        await start_server(nursery, broker, config, args.data_dir)
                        async for signum in signals:
                            logging.getLogger("streamrt.serve").info(
                                "stopping on %s", signal.Signals(signum).name)
                            break
                        nursery.cancel_scope.cancel()
                finally:
                    remove_addr_file(args.data_dir)

    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as e:
        raise listen_error(e, config) from None
    return 0


def listen_error(e: BaseException, config: Any) -> BaseException:
    """A failure to bind as a one-line CliError; anything else unchanged."""
    err: BaseException | None = e
    if isinstance(e, BaseExceptionGroup):
        group = e.subgroup(lambda x: isinstance(x, OSError) and not isinstance(x, StreamrtError))
        err = group.exceptions[0] if group is not None else None
        while isinstance(err, BaseExceptionGroup):
            err = err.exceptions[0]
    if isinstance(err, OSError) and not isinstance(err, StreamrtError):
        return CliError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}")
    return e
