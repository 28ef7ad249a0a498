"""The recovery webhook: Alertmanager's alerts in, verified repairs out, and the
faces of the product (JSON API, editors' status page). Composition root of the
``pipeline-monitor`` service."""
