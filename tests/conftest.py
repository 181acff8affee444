"""Shared test helpers."""

from __future__ import annotations

import os
import shutil

import pytest

# .ci/run sets this: there, a missing system tool is a failure, never a skip.
REQUIRE_SYSTEM_TOOLS = os.environ.get("SPFPOLICY_REQUIRE_SYSTEM_TOOLS") == "1"


def require_tool(name: str, package: str) -> str:
    """The path of a system tool, or skip (fail under CI) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {package})"
        if REQUIRE_SYSTEM_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path
