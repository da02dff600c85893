"""``mirror pause | resume FLOW [--topics REGEX]``, ``mirror throttle FLOW``: operator control of a flow.

The change is written to the flow's control topic on its target (`mirror.replication.control_channel`);
every worker of the group follows that topic and obeys within a second or two, and a worker that starts
later reads it before it copies anything. ``pause`` without ``--topics`` pauses the whole flow; ``resume``
without ``--topics`` removes every pause of the flow, with ``--topics`` the pause of exactly that pattern.
``throttle --bytes-per-second N`` limits the flow's copied value bytes to N per second over all its
workers (0: no limit); ``throttle --configured`` goes back to ``throttle.bytes.per.second``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import socket
from collections.abc import AsyncIterator, Callable

from mirror.config import ConfigError, FlowSettings, Settings
from mirror.kafka import Admin
from mirror.replication.control_channel import ControlChannel
from mirror.replication.controls import compile_pattern

__all__ = ["add_control_parsers", "flow_of", "open_channel", "operator", "run_control"]

EXIT_OK, EXIT_FAILURE = 0, 1


def add_control_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    for action, verb in (("pause", "stop copying"), ("resume", "copy again")):
        parser = sub.add_parser(
            action,
            help=f"{verb} a flow, or the topics of a flow matching --topics, on every worker",
            description=f"{action.capitalize()} a flow (or some of its topics) through its control topic; "
            "every worker obeys within seconds, and the state survives restarts.",
        )
        config_args(parser)
        parser.add_argument("flow", metavar="FLOW", help="the flow, e.g. 'A->B'")
        parser.add_argument(
            "--topics",
            metavar="REGEX",
            help="source topics (a Java regex, as the flow's topics filter); default: the whole flow"
            + ("" if action == "pause" else " (every pause)"),
        )

    throttle = sub.add_parser(
        "throttle",
        help="limit a flow's copy rate (bytes/s over all workers), at run time",
        description="Set the flow's byte-rate limit through its control topic; every worker obeys within "
        "seconds, and it survives restarts. It replaces throttle.bytes.per.second until --configured.",
    )
    config_args(throttle)
    throttle.add_argument("flow", metavar="FLOW", help="the flow, e.g. 'A->B'")
    rate = throttle.add_mutually_exclusive_group(required=True)
    rate.add_argument(
        "--bytes-per-second", type=int, metavar="N", help="record value bytes per second (0: none)"
    )
    rate.add_argument("--configured", action="store_true", help="back to throttle.bytes.per.second")


def operator() -> str:
    """Who runs this command, for the audit log every worker writes."""
    user = "?"
    with contextlib.suppress(Exception):  # no user name (a container without /etc/passwd entry)
        user = getpass.getuser()
    return f"{user}@{socket.gethostname()} via cli"


def flow_of(settings: Settings, name: str) -> FlowSettings:
    """The replicating flow ``name``, or a ConfigError naming the flows there are."""
    flow = settings.flows.get(name)
    if flow is None or not flow.enabled:
        enabled = sorted(f.name for f in settings.flows.values() if f.enabled)
        raise ConfigError("FLOW", name, f"a replicating flow of this configuration ({', '.join(enabled)})")
    return flow


@contextlib.asynccontextmanager
async def open_channel(settings: Settings, flow: FlowSettings) -> AsyncIterator[tuple[ControlChannel, Admin]]:
    """The flow's control channel, its state read (the topic created when missing), and the target admin."""
    admin = Admin(settings.cluster(flow.target), f"{flow.name}|control-cli-admin")
    channel = ControlChannel(flow, settings.cluster(flow.target))
    try:
        await admin.start()
        await channel.ensure_topic(admin)
        await channel.load()
        yield channel, admin
    finally:
        await channel.close()
        await admin.close()


async def run_control(settings: Settings, args: argparse.Namespace) -> int:
    flow = flow_of(settings, args.flow)
    if getattr(args, "topics", None) is not None:
        try:
            compile_pattern(args.topics)
        except ValueError as exc:
            raise ConfigError("--topics", args.topics, f"a Java regex ({exc})") from None
    if args.command == "throttle" and args.bytes_per_second is not None and args.bytes_per_second < 0:
        raise ConfigError("--bytes-per-second", args.bytes_per_second, "an integer >= 0 (0: no limit)")
    async with open_channel(settings, flow) as (channel, _admin):
        if args.command == "throttle":
            await channel.throttle(None if args.configured else args.bytes_per_second, operator())
            rate = flow.throttle_bytes_per_second if args.configured else args.bytes_per_second
            print(f"{flow.name}: limited to {rate} bytes/s" if rate else f"{flow.name}: not limited")
            return EXIT_OK
        if args.command == "pause":
            changed = await channel.pause(args.topics, operator())
            print(f"{flow.name}: paused {', '.join(changed)} (every worker stops within seconds)")
            return EXIT_OK
        paused = sorted(channel.controls.pauses)
        changed = await channel.resume(args.topics, operator())
        if not changed:
            what = "nothing is paused" if not paused else f"paused: {', '.join(paused)}"
            print(f"{flow.name}: {args.topics or 'the flow'} is not paused ({what})")
            return EXIT_FAILURE
        print(f"{flow.name}: resumed {', '.join(changed)}")
        return EXIT_OK
