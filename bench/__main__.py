"""``python -m bench [--quick|--full]``: see `bench.suite`."""

from bench.suite import main

main()
