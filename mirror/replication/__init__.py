"""The data path of a flow: its topology, tasks, progress, offset syncs and remote topics."""
