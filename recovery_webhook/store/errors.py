"""What can go wrong with the store, as the rest of the monitor sees it."""

from __future__ import annotations


class StoreError(Exception):
    """The store refused or failed a call."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (refused, hung, or its connection broke)."""


class StoreTooNew(StoreError):
    """The store was written by a newer release: its schema is not known here."""


class LeaseLost(StoreError):
    """The lease a write was fenced by is no longer this monitor's."""
