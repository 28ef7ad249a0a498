"""Probes for every part of a publishing pipeline, and their Prometheus exporter.

This package knows nothing of who mounts it: it offers the probe scheduler, the
component state, the /metrics collector and handler (see ``exporter.monitor``).
"""

__version__ = "0.1.0"
