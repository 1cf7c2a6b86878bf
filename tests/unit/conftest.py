"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from unit_support import World


@pytest.fixture
def world() -> World:
    return World()
