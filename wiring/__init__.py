"""The wiring: the one place that chooses concrete classes and starts the service."""

from __future__ import annotations

from wiring.parts import Parts, build, make_composer, make_transport, web_context
from wiring.service import serve

__all__ = ["Parts", "build", "make_composer", "make_transport", "serve", "web_context"]
