"""Command line: ``mirror run | validate | status | offsets | verify | cutover | pause | resume | throttle |
progress | demo``. Errors are messages and exit codes, not tracebacks."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from mirror import __version__
from mirror.cli.control import add_control_parsers
from mirror.cli.progress import add_progress_parsers
from mirror.config import ConfigError, LoadedSettings, Settings, load_settings, redacted
from mirror.errors import MirrorError
from mirror.service.logs import configure_logging

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

log = structlog.get_logger("mirror")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirror",
        description="MirrorMaker 2.0-compatible replication between Apache Kafka clusters.",
    )
    parser.add_argument("--version", action="version", version=f"mirror {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument(
            "--config",
            "-c",
            type=Path,
            required=required,
            help="mm2.properties (Java MirrorMaker 2, unchanged), .yaml/.yml or .toml",
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one setting (mm2.properties syntax), e.g. --set 'A->B.topics=a.*' (repeatable)",
        )
        p.add_argument("--log-format", choices=["auto", "console", "json"], help="log output format")
        p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")

    run = sub.add_parser("run", help="replicate until SIGTERM/SIGINT", description="Run the mirror worker.")
    config_args(run)
    run.add_argument(
        "--http-port", type=int, help="HTTP port for /metrics, /healthz, /readyz, /status (0: off)"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes that share the work through Kafka (HTTP ports: port, port+1, ...)",
    )

    validate = sub.add_parser(
        "validate",
        help="check a config, connect to every cluster, print effective settings and the topic plan",
        description="Validate the configuration without changing anything.",
    )
    config_args(validate)
    validate.add_argument("--offline", action="store_true", help="do not connect to the clusters")

    offsets = sub.add_parser(
        "offsets",
        help="translate a consumer group's offsets for failover to another cluster",
        description="Consumer-group offsets across clusters, from the checkpoints on the target.",
    )
    offsets_sub = offsets.add_subparsers(dest="offsets_command", required=True, metavar="ACTION")
    offsets_translate = offsets_sub.add_parser(
        "translate",
        help="print where the group would resume on the target",
        description="Print the group's offsets translated from --from to --to, with re-read bounds.",
    )
    offsets_failover = offsets_sub.add_parser(
        "failover",
        help="commit the translated offsets to the group on the target (only if it is idle there)",
        description="Apply the translated offsets to the group on --to; refuses while the group has "
        "active members there, and never moves a partition backwards.",
    )
    offsets_failback = offsets_sub.add_parser(
        "failback",
        help="move groups back (or across, active-active) between two clusters replicating to each other",
        description="Move groups that consume on --from to --to: copies of --to's topics go back to their "
        "originals (the <to>-><from> offset syncs read in reverse), topics <from>-><to> copies go to the "
        "copies. Refuses groups with active members on either cluster; never moves a partition backwards.",
    )
    for action in (offsets_translate, offsets_failover, offsets_failback):
        config_args(action)
        if action is offsets_failback:
            action.add_argument(
                "--group", "-g", dest="groups", action="append", required=True, help="group id (repeatable)"
            )
        else:
            action.add_argument("--group", "-g", required=True, help="consumer group id")
        action.add_argument("--from", dest="source", required=True, metavar="ALIAS", help="where it consumed")
        action.add_argument("--to", dest="target", required=True, metavar="ALIAS", help="where it resumes")
        action.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for action in (offsets_failover, offsets_failback):
        action.add_argument("--dry-run", action="store_true", help="only print what would change")

    verify = sub.add_parser(
        "verify",
        help="compare source topics with their remote topics over the range already copied",
        description="Compare a flow's source topics with their remote topics, partition by partition, up "
        "to the stored progress (it can run while mirror runs): counts, the offset mapping at both ends, "
        "and a digest of every record's key, value, headers and timestamp. Exit 0 when identical, 1 "
        "otherwise.",
    )
    config_args(verify)
    _flow_args(verify)
    verify.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="compare only the last N copied records of each partition (from the offset sync before them)",
    )
    verify.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="records copied twice (at-least-once re-copies after a crash) do not fail the verification",
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cutover = sub.add_parser(
        "cutover",
        help="wait for the copy, verify it, commit the groups' translated offsets on the target",
        description="Move consumer groups from the source to the target: wait until the lag is at most "
        "--max-lag, until the source stops growing (producers moved), until the tail is copied; verify; "
        "write final checkpoints and commit the groups' translated offsets on the target. Refuses (exit 1, "
        "with the reason) instead of half-doing it; safe to run again.",
    )
    config_args(cutover)
    _flow_args(cutover)
    cutover.add_argument(
        "--group", "-g", action="append", default=[], metavar="GROUP", help="a consumer group (repeatable)"
    )
    cutover.add_argument(
        "--max-lag", type=int, default=1000, metavar="N", help="offsets behind to wait for (default 1000)"
    )
    cutover.add_argument(
        "--quiet",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the source counts as stopped after this long without a new record (default 10)",
    )
    cutover.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long each waiting step may take before the cutover refuses (default 300)",
    )
    cutover.add_argument(
        "--sample", type=int, metavar="N", help="verify only the last N records per partition"
    )
    cutover.add_argument("--dry-run", action="store_true", help="observe once, verify, write nothing")
    cutover.add_argument("--json", action="store_true", help="print JSON instead of tables")

    status = sub.add_parser(
        "status",
        help="show what a running mirror is doing: flows, tasks, lag per topic, last errors",
        description="Read /status of a running `mirror run` and print it as tables. The address is "
        f"--url, or service.http.host/port of --config, or {_STATUS_URL}.",
    )
    config_args(status, required=False)
    status.add_argument("--url", help=f"base URL of the mirror's HTTP port, e.g. {_STATUS_URL}")
    status.add_argument("--watch", type=_positive, metavar="SECONDS", help="redraw every SECONDS")
    status.add_argument("--json", action="store_true", help="print the /status JSON instead of tables")

    add_control_parsers(sub, config_args)  # pause, resume, throttle
    add_progress_parsers(sub, config_args)  # progress show | reset

    demo = sub.add_parser(
        "demo",
        help="start two local Kafka clusters and mirror a topic between them",
        description="Start clusters A and B on loopback (Kafka from Maven Central), "
        "fill a topic on A and mirror it to B.",
    )
    demo.add_argument("--records", type=int, default=200_000, help="records to produce on A (default 200000)")
    demo.add_argument("--partitions", type=int, default=6, help="partitions of the demo topic (default 6)")
    return parser


_STATUS_URL = "http://127.0.0.1:8080"


def _flow_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", metavar="ALIAS", help="source cluster (default: the one flow)")
    p.add_argument("--to", dest="target", metavar="ALIAS", help="target cluster (default: the one flow)")
    p.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="a source topic (repeatable; default: every topic with stored progress)",
    )


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return number


def _status(args: argparse.Namespace) -> int:
    from mirror.cli.status import run_status  # noqa: PLC0415

    service = None
    if args.url is None and args.config is not None:
        loaded = _load(args)
        _configure(loaded)
        service = loaded.settings.service
    return run_status(args.url or service or _STATUS_URL, args.watch, args.json)


def _load(args: argparse.Namespace) -> LoadedSettings:
    overrides: dict[str, str] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", item, "KEY=VALUE")
        overrides[key.strip()] = value.strip()
    if getattr(args, "http_port", None) is not None:
        overrides["service.http.port"] = str(args.http_port)
    if args.log_format:
        overrides["service.log.format"] = args.log_format
    if args.log_level:
        overrides["service.log.level"] = args.log_level
    return load_settings(args.config, overrides=overrides)


def _configure(loaded: LoadedSettings) -> None:
    service = loaded.settings.service
    configure_logging(service.log_format, service.log_level)
    for warning in loaded.warnings:
        log.warning("config", message=warning)


def _log_task_stacks() -> None:
    """SIGUSR1: log where every asyncio task waits (for a worker that seems stuck)."""
    stacks = {}
    for task in asyncio.all_tasks():
        where: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(where) < 12:  # follow the chain of awaited coroutines
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                where.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        stacks[task.get_name()] = " > ".join(where)
    log.info("asyncio task stacks", tasks=len(stacks), stacks=stacks)


async def _run(settings: Settings, reload: Callable[[], Settings]) -> int:
    from mirror.service.reload import serve  # noqa: PLC0415  (keeps `mirror --help` fast)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, _log_task_stacks)
    try:
        await serve(settings, reload)  # the worker and its HTTP port; SIGTERM/SIGINT stop, SIGHUP reloads
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    return EXIT_OK


async def _validate(settings: Settings, offline: bool) -> int:
    from mirror.cli.validate import print_plan  # noqa: PLC0415

    print(json.dumps(redacted(settings), indent=2, sort_keys=True))
    if offline:
        return EXIT_OK
    return await print_plan(settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from mirror.cli.demo import run_demo  # noqa: PLC0415

            configure_logging("console", "WARNING")
            return asyncio.run(run_demo(args.records, args.partitions))
        if args.command == "status":
            return _status(args)
        loaded = _load(args)
        _configure(loaded)
        if args.command == "run" and args.workers < 1:
            raise ConfigError("--workers", args.workers, "an integer >= 1")
        if args.command == "run" and args.workers > 1:
            from mirror.service.processes import supervise  # noqa: PLC0415

            argv_used = list(sys.argv[1:] if argv is None else argv)
            return asyncio.run(supervise(argv_used, args.workers, loaded.settings.service.http_port))
        if args.command == "run":
            return asyncio.run(_run(loaded.settings, lambda: _load(args).settings))
        if args.command in ("pause", "resume", "throttle"):
            from mirror.cli.control import run_control  # noqa: PLC0415

            return asyncio.run(run_control(loaded.settings, args))
        if args.command == "progress":
            from mirror.cli.progress import run_progress  # noqa: PLC0415

            return asyncio.run(run_progress(loaded.settings, args))
        if args.command == "offsets":
            from mirror.cli.offsets import run_offsets  # noqa: PLC0415

            return asyncio.run(run_offsets(loaded.settings, args))
        if args.command == "verify":
            from mirror.cli.verify import run_verify  # noqa: PLC0415

            return asyncio.run(run_verify(loaded.settings, args))
        if args.command == "cutover":
            from mirror.cli.cutover import run_cutover  # noqa: PLC0415

            return asyncio.run(run_cutover(loaded.settings, args))
        return asyncio.run(_validate(loaded.settings, args.offline))
    except ConfigError as exc:
        print(f"mirror: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except (MirrorError, ExceptionGroup) as exc:
        errors = _leaves(exc)
        if not all(isinstance(e, MirrorError) for e in errors):
            raise
        for err in errors:
            print(f"mirror: {err}", file=sys.stderr)
        return EXIT_CONFIG if any(getattr(e, "kind", "") == "fatal" for e in errors) else EXIT_FAILURE


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as TaskGroups raise them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
