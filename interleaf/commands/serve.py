"""``interleaf serve``: the jobs HTTP API, the dashboard and a job worker in one process.

    interleaf serve                                   # embedded engine + private Redis, http://127.0.0.1:8080
    interleaf serve --backend http://gpu-1:30000 --redis-url redis://redis:6379/0 --ray-address auto

Submit with ``curl -X POST localhost:8080/v1/jobs -d '{"suite": "arith", "n": 8}'`` or the dashboard
form; ``--no-worker`` serves the API only (workers run ``interleaf.runtime.jobs.serve_jobs``
elsewhere on the same Redis).
"""

from __future__ import annotations

import os

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    backend: list[str] = typer.Option(
        [], "--backend", "-b", help="Default SGLang-protocol server URL for jobs (repeat); none: embedded engine."
    ),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis URL (default: a private redis-server)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: local)."),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Run a job worker in this process."),
    engine_arg: list[str] = typer.Option(
        [], "--engine-arg", help="Extra flag for the embedded engine, e.g. --engine-arg=--executor=sim."
    ),
) -> None:
    """Serve the jobs API and the dashboard (and run submitted jobs)."""
    import uvicorn

    from interleaf.runtime.jobs.embedded import EmbeddedServices
    from interleaf.runtime.jobs.store import JobStore
    from interleaf.runtime.service.api import create_app

    # API only (--no-worker) needs no engine: jobs then name their backends or get --backend.
    with EmbeddedServices(backend, redis_url, engine_args=list(engine_arg), start_engine=worker) as services:
        store = JobStore(services.redis_url or "")
        options = {"consumer": f"api-{os.getpid()}", "ray_address": ray_address} if worker else None
        app = create_app(store, default_backends=services.backend_urls, worker=options)
        typer.echo(f"interleaf jobs API and dashboard on http://{host}:{port}/ (redis {services.redis_url})")
        uvicorn.run(app, host=host, port=port, log_level="warning")  # the app closes the store


__all__ = ["serve"]
