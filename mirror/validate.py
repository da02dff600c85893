"""``mirror validate``: connect to every cluster and print what the next sync would do, changing nothing."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mirror.config import Settings
from mirror.errors import MirrorError
from mirror.kafka import Admin
from mirror.topics import TopicSync
from mirror.worker import make_policy


async def print_plan(settings: Settings) -> int:
    console = Console(stderr=False)
    admins: dict[str, Admin] = {}
    failed = False
    try:
        for alias, cluster in settings.clusters.items():
            admin = Admin(cluster, f"mirror-validate|{alias}", timeout_ms=15000)
            try:
                await admin.start()
                brokers = await admin.broker_count()
                console.print(
                    f"[green]ok[/] cluster {alias}: {brokers} broker(s) at "
                    f"{','.join(cluster.bootstrap_servers)}"
                )
                admins[alias] = admin
            except MirrorError as exc:
                failed = True
                console.print(f"[red]unreachable[/] cluster {alias}: {exc}")
                await admin.close()
        for flow in settings.replicating_flows():
            if flow.source not in admins or flow.target not in admins:
                continue
            plan = await TopicSync(flow, admins[flow.source], admins[flow.target], make_policy(flow)).plan()
            table = Table(title=f"{flow.name}: {len(plan.source_partitions)} topic(s) replicated")
            for col in ("action", "remote topic", "partitions", "configs"):
                table.add_column(col)
            for spec in plan.create:
                configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
                table.add_row("create", spec.name, str(spec.partitions), configs)
            for remote, partitions in sorted(plan.grow.items()):
                table.add_row("add partitions", remote, str(partitions), "")
            if not plan.create and not plan.grow:
                table.add_row("none", "(remote topics are up to date)", "", "")
            console.print(table)
    finally:
        for admin in admins.values():
            await admin.close()
    return 1 if failed else 0
