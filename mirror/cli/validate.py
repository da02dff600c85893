"""``mirror validate``: connect to every cluster and print what the next sync would do, changing nothing:
remote topics to create, partitions to add, configs to set or reset, ACLs to create."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mirror.config import Settings
from mirror.errors import MirrorError
from mirror.jobs.configsync import AclSyncPlan, ConfigSyncJob, ConfigSyncPlan
from mirror.kafka import Admin
from mirror.replication.remote_topics import TopicPlan, TopicSync
from mirror.replication.topology import make_policy


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
                reason = str(exc).removeprefix(f"cluster {alias}: ")  # errors may already name the cluster
                console.print(f"[red]unreachable[/] cluster {alias}: {reason}")
                await admin.close()
        for flow in settings.replicating_flows():
            if flow.source not in admins or flow.target not in admins:
                continue
            source, target, policy = admins[flow.source], admins[flow.target], make_policy(flow)
            plan = await TopicSync(flow, source, target, policy).plan()
            table = Table(title=f"{flow.name}: {len(plan.source_partitions)} topic(s) replicated")
            for col in ("action", "remote topic", "partitions", "details"):
                table.add_column(col)
            rows = topic_rows(plan)
            job = ConfigSyncJob(flow, source, target, policy)
            if flow.sync_topic_configs_enabled:
                try:
                    rows += config_rows(await job.plan_configs())
                except MirrorError as exc:
                    failed = True
                    rows.append(("error", "(config sync)", "", str(exc)))
            if flow.sync_topic_acls_enabled:
                try:
                    rows += acl_rows(await job.plan_acls())
                except MirrorError as exc:
                    failed = True
                    rows.append(("error", "(ACL sync)", "", str(exc)))
            for row in rows or [("none", "(remote topics, configs and ACLs are up to date)", "", "")]:
                table.add_row(*(Text(cell) for cell in row))  # values are not markup
            console.print(table)
    finally:
        for admin in admins.values():
            await admin.close()
    return 1 if failed else 0


Row = tuple[str, str, str, str]  # action, remote topic, partitions, details


def topic_rows(plan: TopicPlan) -> list[Row]:
    """Remote topics to create and partitions to add."""
    rows: list[Row] = []
    for spec in plan.create:
        configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
        rows.append(("create", spec.name, str(spec.partitions), configs))
    rows += [("add partitions", remote, str(n), "") for remote, n in sorted(plan.grow.items())]
    return rows


def config_rows(plan: ConfigSyncPlan) -> list[Row]:
    """Configs the next config sync sets or resets on existing remote topics, and topics it cannot read."""
    rows: list[Row] = []
    for remote, ops in sorted(plan.changes.items()):
        rows += [
            ("set config", remote, "", f"{name}={value}")
            if op == "SET"
            else ("reset config", remote, "", name)
            for name, op, value in ops
        ]
    rows += [("error", remote, "", str(err)) for remote, err in sorted(plan.errors.items(), key=str)]
    return rows


def acl_rows(plan: AclSyncPlan) -> list[Row]:
    """ACLs the next ACL sync creates on the target."""
    if not plan.source_authorizer:
        return [("skip ACLs", "", "", "the source cluster has no authorizer")]
    rows: list[Row] = [("create ACL", b.name, "", str(b)) for b in plan.create]
    if plan.create and not plan.target_authorizer:
        rows.append(("error", "", "", "the target cluster has no authorizer: ACLs cannot be created"))
    elif plan.create and not plan.target_known:
        rows.append(("note", "", "", "the target's ACLs cannot be read: all are (re)created"))
    return rows
