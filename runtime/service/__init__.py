"""interleaf.runtime.service: ``interleaf serve`` — the jobs HTTP API (FastAPI) and the web dashboard."""

from __future__ import annotations

from interleaf.runtime.service.access import AccessPolicy
from interleaf.runtime.service.api import create_app, dashboard_html

__all__ = ["AccessPolicy", "create_app", "dashboard_html"]
