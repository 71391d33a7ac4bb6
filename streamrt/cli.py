"""The ``streamrt`` command line: manage topics, produce and consume records in a data directory.

``main(argv)`` returns the exit code (the console script passes it to ``sys.exit``):

* 0: success (also ``--help``, ``--version``, and a ``consume --follow`` stopped by Ctrl-C);
* 1: a runtime error, reported as one line ``streamrt: error: ...`` on stderr (with the
  traceback too under ``--debug``): every :class:`streamrt.errors.StreamrtError`, a data
  directory held by another process, an unreadable ``--file``, a bad input line;
* 2: a usage error, reported by argparse with the usage line;
* 130: interrupted by Ctrl-C (128 + the signal's number in general).

``--broker HOST:PORT`` (or ``$STREAMRT_BROKER``) makes topics, produce, consume, groups and dlq
talk to a running ``streamrt serve`` over the Kafka protocol instead (``_cli/remote*.py``).

A reader that closes the pipe early (``streamrt consume t | head``) ends the command quietly
with exit 0. See docs/cli.md for every command with examples.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from . import __version__
from ._cli._common import BROKER_ENV, CliError, locked_message
from .errors import DataDirLocked, StreamrtError
from .storage._store import MAX_PARTITIONS

__all__ = ["main", "build_parser"]

DEFAULT_DATA_DIR = "./.streamrt"
DATA_DIR_ENV = "STREAMRT_DATA_DIR"
DEFAULT_LOCK_TIMEOUT = 1.0

Handler = Callable[[argparse.Namespace], int]
#: The commands that take --broker.
_REMOTE_COMMANDS = frozenset({"topics", "produce", "consume", "groups", "dlq"})


#: The largest value of an integer topic setting (a signed 64-bit integer, as stored).
MAX_SETTING = 2**63 - 1


def _int_at_least(
    minimum: int, what: str, maximum: int | None = None,
) -> Callable[[str], int]:
    """An argparse type: an integer from ``minimum`` (to ``maximum`` if given); anything else
    is a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"{what} must be at most {maximum}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _data_dir(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError(
            "--data-dir cannot be empty: give a directory, such as ./data")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {text!r}")
    return value


def _group_name(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a group name cannot be empty")
    return text


def _broker_address(text: str) -> str:
    from ._cli.serve import parse_address

    _host, port = parse_address(text)
    if port == 0:
        raise argparse.ArgumentTypeError(f"--broker needs the broker's port, got {text!r}")
    return text


def _lazy(module: str, name: str) -> Handler:
    """A handler imported on first use, so ``--help`` and ``--version`` stay fast."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        handler: Handler = getattr(importlib.import_module(module, __package__), name)
        return handler(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``streamrt`` and all its subcommands."""
    # The global options are accepted after the subcommand too (`streamrt topics list
    # --data-dir d`): each subparser repeats them with SUPPRESS defaults, so a value given there
    # overrides the one before the subcommand, and an absent one leaves it alone.
    def global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
        def default(value: object) -> object:
            return argparse.SUPPRESS if suppress else value

        parser.add_argument(
            "--data-dir", metavar="DIR", type=_data_dir,
            default=default(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR),
            help=f"data directory of the log (default: ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR})")
        parser.add_argument(
            "--lock-timeout", metavar="SECONDS", type=_seconds,
            default=default(DEFAULT_LOCK_TIMEOUT),
            help="how long to wait for a data directory another process holds "
                 f"(default: {DEFAULT_LOCK_TIMEOUT:g})")
        parser.add_argument("--debug", action="store_true", default=default(False),
                            help="show tracebacks and debug logs")

    common = argparse.ArgumentParser(add_help=False)
    global_options(common, suppress=True)
    # --broker: the commands that can also run against a `streamrt serve` over the network.
    # SUPPRESS, so that `topics --broker X list` and `topics list --broker X` both work.
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--broker", metavar="HOST:PORT", type=_broker_address, default=argparse.SUPPRESS,
        help=f"talk to a running streamrt serve (any Kafka broker) at HOST:PORT instead of "
             f"opening the data directory (default: ${BROKER_ENV})")
    common_remote = [common, remote]

    parser = argparse.ArgumentParser(
        prog="streamrt",
        description="Manage topics and produce/consume records in a streamrt data directory.",
        epilog="exit codes: 0 success, 1 runtime error, 2 usage error, 130 interrupted",
    )
    global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"streamrt {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # ---- topics
    topics = commands.add_parser("topics", parents=common_remote, help="create, list, describe, delete topics",
                                 description="Manage topics.")
    actions = topics.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", parents=common_remote, help="create a topic",
                                description="Create a topic. Creating it again with the same "
                                            "settings does nothing; with other settings it fails.")
    create.add_argument("name", help="topic name: 1-249 of [a-zA-Z0-9._-]")
    create.add_argument("--partitions", "-p", metavar="N", required=True,
                        type=_int_at_least(1, "--partitions", MAX_PARTITIONS),
                        help=f"number of partitions (1 to {MAX_PARTITIONS:,})")
    create.add_argument("--retention-ms", metavar="MS", type=_int_at_least(0, "--retention-ms", MAX_SETTING),
                        help="delete records older than this (default: keep)")
    create.add_argument("--retention-bytes", metavar="B", type=_int_at_least(0, "--retention-bytes", MAX_SETTING),
                        help="keep at most this many bytes per partition (default: no limit)")
    create.add_argument("--retention-records", metavar="N",
                        type=_int_at_least(0, "--retention-records", MAX_SETTING),
                        help="keep at most this many records per partition (default: no limit)")
    create.add_argument("--cleanup-policy", choices=("delete", "compact"), default="delete",
                        help="delete: retention only; compact: keep the latest record per key "
                             "(default: delete)")
    create.set_defaults(func=_lazy("._cli.topics", "cmd_create"))

    lst = actions.add_parser("list", parents=common_remote, help="list topic names",
                             description="Print topic names, one per line.")
    lst.set_defaults(func=_lazy("._cli.topics", "cmd_list"))

    describe = actions.add_parser("describe", parents=common_remote, help="show a topic's partitions and config",
                                  description="Show a topic's config and, per partition, the log "
                                              "start offset, high watermark, records and bytes.")
    describe.add_argument("name", help="topic name")
    describe.set_defaults(func=_lazy("._cli.topics", "cmd_describe"))

    delete = actions.add_parser("delete", parents=common_remote, help="delete a topic and its records",
                                description="Delete a topic with all its records and the "
                                            "offsets groups committed for it.")
    delete.add_argument("name", help="topic name")
    delete.set_defaults(func=_lazy("._cli.topics", "cmd_delete"))

    # ---- produce
    produce = commands.add_parser(
        "produce", parents=common_remote, help="append lines of stdin or a file as records",
        description="Append one record per input line (the line without its newline is the "
                    "value). Keyed records go to Kafka's murmur2(key) % partitions; unkeyed "
                    "ones to partitions in turn, a batch at a time.")
    produce.add_argument("topic", help="topic to append to")
    produce.add_argument("--file", "-f", metavar="F", help="read lines from F instead of stdin")
    produce.add_argument("--key-field", "-k", metavar="FIELD",
                         help="lines are JSON objects; the record key is this field's value")
    produce.add_argument("--partition", metavar="P", type=_int_at_least(0, "--partition"),
                         help="write every record to partition P")
    produce.set_defaults(func=_lazy("._cli.produce", "cmd_produce"))

    # ---- consume
    consume = commands.add_parser(
        "consume", parents=common_remote, help="print records of a topic",
        description="Print record values, one per line. Starts at the log start, or where "
                    "--group last committed; with --group, commits what it printed.")
    consume.add_argument("topic", help="topic to read")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the log start even if the group has committed offsets")
    start.add_argument("--offset", metavar="N", type=_int_at_least(0, "--offset"),
                       help="start at offset N of --partition")
    consume.add_argument("--partition", metavar="P", type=_int_at_least(0, "--partition"),
                         help="read only partition P")
    consume.add_argument("--group", "-g", metavar="G", type=_group_name,
                         help="consumer group: start at its committed offsets, commit as it goes")
    consume.add_argument("--max", "-n", metavar="N", type=_int_at_least(0, "--max"),
                         help="stop after N records")
    consume.add_argument("--follow", "-F", action="store_true",
                         help="keep waiting for new records until Ctrl-C")
    consume.add_argument("--verbose", "-v", action="store_true",
                         help="also print partition, offset, timestamp and key")
    consume.set_defaults(func=_lazy("._cli.consume", "cmd_consume"), usage_error=consume.error)

    # ---- run (an app's pipelines)
    run = commands.add_parser(
        "run", parents=[common], help="run an app's pipelines",
        description="Import APP_FILE, find its streamrt App and run its pipelines until bounded "
                    "sources end, or until Ctrl-C/SIGTERM (which checkpoints first).")
    run.add_argument("app_file", metavar="APP_FILE", help="Python file defining a streamrt App")
    run.add_argument("--app", metavar="NAME", help="which App, if the file defines several")
    run.add_argument("--reset", action="store_true",
                     help="forget the app's checkpoints (positions and state) and start afresh")
    run.add_argument("--until-caught-up", action="store_true",
                     help="stop when every topic source is read to its end")
    from ._cli.serve import add_server_options

    add_server_options(run, listen_required=False)
    run.set_defaults(func=_lazy("._cli.run", "cmd_run"))

    # ---- serve (the Kafka wire protocol)
    serve = commands.add_parser(
        "serve", parents=[common], help="serve the data directory over the Kafka protocol",
        description="Run a broker that Kafka clients (kafka-python, aiokafka, confluent-kafka, "
                    "any other) reach over the network, until Ctrl-C/SIGTERM. Prints "
                    "'streamrt serve: listening on HOST:PORT' once it accepts connections.")
    add_server_options(serve, listen_required=True)
    serve.set_defaults(func=_lazy("._cli.serve", "cmd_serve"))

    # ---- groups (consumer groups: list, describe, reset, delete)
    groups = commands.add_parser("groups", parents=common_remote, help="list, describe, reset, delete consumer groups",
                                 description="Inspect consumer groups and move their committed offsets.")
    gactions = groups.add_subparsers(dest="action", metavar="ACTION", required=True)
    glist = gactions.add_parser("list", parents=common_remote, help="list group names",
                                description="Print the groups with committed offsets or a "
                                            "generation, one per line.")
    glist.set_defaults(func=_lazy("._cli.groups", "cmd_list"))
    gdesc = gactions.add_parser("describe", parents=common_remote, help="show a group's offsets and lag",
                                description="Show a group's generation and, per partition, its "
                                            "committed offset, the log end and the lag. Members "
                                            "live only in the process running the group, so "
                                            "they are not shown here.")
    gdesc.add_argument("group", type=_group_name, help="group name")
    gdesc.set_defaults(func=_lazy("._cli.groups", "cmd_describe"))
    greset = gactions.add_parser(
        "reset", parents=common_remote, help="move a group's committed offsets",
        description="Set the group's committed offsets of a topic: to the log start "
                    "(earliest), the log end (latest), an offset N (clamped to what is "
                    "stored), or the first record at or after a time: @MS (milliseconds since "
                    "the epoch) or an ISO 8601 date-time such as 2024-05-01T12:00:00Z.")
    greset.add_argument("group", type=_group_name, help="group name")
    greset.add_argument("--topic", "-t", metavar="T", required=True, help="topic whose offsets move")
    greset.add_argument("--to", metavar="WHERE", required=True,
                        help="earliest | latest | N | @MS | ISO-DATETIME")
    greset.add_argument("--partition", metavar="P", type=_int_at_least(0, "--partition"),
                        help="only partition P (default: every partition)")
    greset.add_argument("--dry-run", action="store_true", help="show the new offsets, change nothing")
    greset.set_defaults(func=_lazy("._cli.groups", "cmd_reset"))
    gdel = gactions.add_parser(
        "delete", parents=common_remote, help="forget a group and its committed offsets",
        description="Delete a consumer group: its committed offsets and generation (Kafka's "
                    "DeleteGroups). Over --broker, a group with members is refused; locally "
                    "no member can run while this command holds the data directory.")
    gdel.add_argument("group", type=_group_name, help="group name")
    gdel.set_defaults(func=_lazy("._cli.groups", "cmd_delete"))

    # ---- dlq (dead letters: list, inspect, replay)
    dlq = commands.add_parser(
        "dlq", parents=common_remote, help="list, inspect, replay dead letters of queues",
        description="Dead letters of queue groups. NAME is a queue (NAME for all its groups, "
                    "or NAME/GROUP) or a dead-letter topic.")
    dactions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    dlist = dactions.add_parser(
        "list", parents=common_remote, help="count dead letters per dead-letter topic",
        description="One line per dead-letter topic (all of them, or NAME's): the queues "
                    "using it, pending and replayed letters, pending ones per reason.")
    dlist.add_argument("name", nargs="?", metavar="NAME", help="queue or dead-letter topic")
    dlist.set_defaults(func=_lazy("._cli.dlq", "cmd_list"))
    reasons = ("rejected", "expired", "max_deliveries", "overflow")
    dinspect = dactions.add_parser(
        "inspect", parents=common_remote, help="show dead letters with their reasons",
        description="Print each pending dead letter: reason, source topic, partition and "
                    "offset, queue, delivery count, time, key, headers and value.")
    dinspect.add_argument("name", metavar="NAME", help="queue or dead-letter topic")
    dinspect.add_argument("--reason", action="append", choices=reasons,
                          help="only this reason (repeatable)")
    dinspect.add_argument("--max", "-n", metavar="N", type=_int_at_least(1, "--max"),
                          help="show at most N")
    dinspect.add_argument("--all", action="store_true", help="include replayed letters")
    dinspect.add_argument("--json", action="store_true", help="one JSON object per line")
    dinspect.set_defaults(func=_lazy("._cli.dlq", "cmd_inspect"))
    dreplay = dactions.add_parser(
        "replay", parents=common_remote, help="send dead letters back to their source topics",
        description="Append pending dead letters to the topic and partition they came from "
                    "(value, key and original headers; a new timestamp) and mark them "
                    "replayed in the same transaction: no letter is replayed twice.")
    dreplay.add_argument("name", metavar="NAME", help="queue or dead-letter topic")
    dreplay.add_argument("--reason", action="append", choices=reasons,
                         help="only this reason (repeatable)")
    dreplay.add_argument("--max", "-n", metavar="N", type=_int_at_least(1, "--max"),
                         help="replay at most N")
    dreplay.add_argument("--dry-run", action="store_true", help="count what would be replayed")
    dreplay.set_defaults(func=_lazy("._cli.dlq", "cmd_replay"))

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "consume" and args.offset is not None and args.partition is None:
            # An offset means something only within one partition (as in Kafka's tool).
            args.usage_error("--offset needs --partition")
    except SystemExit as e:  # argparse exits: 0 after --help/--version, 2 on bad usage
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours. Point stdout at /dev/null so
        # the interpreter's final flush does not complain about the pipe again.
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except DataDirLocked as e:
        # Held by a server: the commands with --broker can reach it through that instead.
        message = locked_message(e) if args.command in _REMOTE_COMMANDS else str(e)
        return _fail(message, args.debug)
    except (StreamrtError, CliError, OSError) as e:
        return _fail(str(e) or type(e).__name__, args.debug)
    except Exception as e:  # a bug: still one line unless --debug, but say what it was
        return _fail(f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)",
                     args.debug)


def _fail(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"streamrt: error: {message}", file=sys.stderr)
    return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (captured, closed): nothing to do
        pass


if __name__ == "__main__":
    sys.exit(main())
