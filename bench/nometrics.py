"""``python -m bench.nometrics run --config FILE``: `mirror` with every metric update a no-op.

The baseline of ``bench.replicate --no-metrics``, to measure what metrics cost on the hot path. Only the
benchmark uses it: it swaps the metric objects of `mirror.metrics` for no-ops before `mirror` starts
(every module reads them as ``metrics.<name>`` at call time), so the product code stays unchanged.
"""

from __future__ import annotations

import sys
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from mirror import metrics
from mirror.cli import main


class NoMetric:
    """Accepts every call a Counter, Gauge or Histogram (or one of its children) accepts; does nothing."""

    def labels(self, *_args: Any, **_kwargs: Any) -> NoMetric:
        return self

    def inc(self, *_args: Any) -> None:
        pass

    def dec(self, *_args: Any) -> None:
        pass

    def set(self, *_args: Any) -> None:
        pass

    def observe(self, *_args: Any) -> None:
        pass

    def remove(self, *_args: Any) -> None:
        pass

    def clear(self) -> None:
        pass


def disable_metrics() -> list[str]:
    names = [name for name, value in vars(metrics).items() if isinstance(value, MetricWrapperBase)]
    for name in names:
        setattr(metrics, name, NoMetric())
    return names


if __name__ == "__main__":
    disable_metrics()
    sys.exit(main())
