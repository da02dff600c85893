"""The flow jobs: a flow's singletons on the worker owning task 0 (heartbeats, checkpoints, config sync)."""
