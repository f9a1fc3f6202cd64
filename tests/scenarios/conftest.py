"""Scenario fixtures: ``directory`` (the demo users of deployments/users.yaml) and ``guarded`` (the engine fixture
with that directory enforced) are the access tests' own, so both kinds of tests claim against the same people."""

from __future__ import annotations

from tests.access.conftest import directory, guarded

__all__ = ["directory", "guarded"]
