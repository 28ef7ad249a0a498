"""Tests of the recovery webhook (a package, so that its conftest does not shadow
the top-level one, which test modules import as ``conftest``)."""
