"""The worker process: membership, flows, tasks and jobs, its status snapshot, HTTP and logging."""
