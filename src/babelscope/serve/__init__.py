"""An OpenAI-compatible HTTP server for babelscope models (`babelscope serve`).

Imported lazily, so that the CLI can read `Limits` without loading pydantic and FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Limits", "create_app", "served_name"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from babelscope.serve.app import create_app

        return create_app
    if name == "served_name":
        from babelscope.serve.protocol import served_name

        return served_name
    if name == "Limits":
        from babelscope.serve.limits import Limits

        return Limits
    raise AttributeError(name)
