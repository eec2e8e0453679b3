"""``interleaf serve``: the jobs HTTP API, the dashboard and a job worker in one process.

    interleaf serve                                   # embedded engine + private Redis, http://127.0.0.1:8080
    interleaf serve --backend http://gpu-1:30000 --redis-url redis://:PASSWORD@redis:6379/0 --ray-address auto
    interleaf serve --host 0.0.0.0 --allow-host jobs.example.org --token "$(openssl rand -hex 24)"

Submit with ``curl -X POST localhost:8080/v1/jobs -H 'content-type: application/json' -d '{"suite": "arith",
"n": 8}'`` or the dashboard form; ``--no-worker`` serves the API only (workers run
``interleaf.runtime.jobs.serve_jobs`` elsewhere on the same Redis). Stopping it (Ctrl-C, SIGTERM)
stops the worker, the embedded engine and Redis, and the local Ray it started.

Without ``--redis-url`` the private Redis is durable: its data lives in ``<runs dir>/.redis``
(append-only file, password in ``password``, mode 0600), so a restarted ``interleaf serve`` lists the
jobs it had and resumes the one it was running. Several ``interleaf serve`` on one ``--redis-url``
share the queue; each is a consumer named by ``--worker-name`` (default ``serve@<host>:<port>``, the
same across restarts, so a restarted one takes its own unfinished job back at once), and a job whose
worker stops renewing its hold for ``--reclaim-after`` seconds is taken over by another.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _check_redis_url(url: str, allow_no_password: bool) -> None:
    """A Redis elsewhere than on this machine must need a password: whoever can write the queue makes
    the workers run jobs."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or (parts.hostname or "") in _LOOPBACK or parts.password or allow_no_password:
        return
    raise typer.BadParameter(
        f"{parts.hostname!r} is not this machine and the URL has no password: use "
        "redis://:PASSWORD@host:port/0 (rediss:// for TLS), or pass --redis-no-password to accept it",
        param_hint="--redis-url",
    )


def _shown_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    backend: list[str] = typer.Option(
        [], "--backend", "-b", help="Default SGLang-protocol server URL for jobs (repeat); none: embedded engine."
    ),
    redis_url: str | None = typer.Option(None, "--redis-url", help="Redis URL (default: a private redis-server)."),
    redis_no_password: bool = typer.Option(
        False, "--redis-no-password", help="Accept a --redis-url on another machine without a password."
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: local)."),
    worker: bool = typer.Option(True, "--worker/--no-worker", help="Run a job worker in this process."),
    worker_name: str | None = typer.Option(
        None,
        "--worker-name",
        help="The worker's consumer name on the queue (default serve@<host>:<port>); keep it across restarts "
        "so the restarted worker takes its own unfinished job back at once.",
    ),
    reclaim_after: float = typer.Option(
        15.0,
        "--reclaim-after",
        min=2.0,
        help="Seconds a job's worker may go without renewing its hold before another worker takes the job "
        "over (resuming it from its finished episodes).",
    ),
    engine_arg: list[str] = typer.Option(
        [], "--engine-arg", help="Extra flag for the embedded engine, e.g. --engine-arg=--executor=sim."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="INTERLEAF_API_TOKEN",
        help="Bearer token every route but /healthz requires (16+ characters; env INTERLEAF_API_TOKEN).",
    ),
    no_token: bool = typer.Option(
        False,
        "--no-token",
        help="Listen on a --host other than loopback without a --token (anyone who reaches the port can run "
        "jobs and read every trajectory).",
    ),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        help="Host header name to answer besides localhost/127.0.0.1/::1 (repeat; '*' for any; env "
        "INTERLEAF_ALLOWED_HOSTS, comma separated).",
    ),
) -> None:
    """Serve the jobs API and the dashboard (and run submitted jobs)."""
    # Ray's native failure handler also catches SIGTERM in this process and ends it on the spot, so the
    # server's own shutdown (stop the worker, then Ray, the engine and Redis) would never run. Set before
    # Ray is imported (it reads the variable then).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

    import uvicorn

    from interleaf.runtime.jobs.embedded import EmbeddedServices
    from interleaf.runtime.jobs.redis_server import RedisUnavailable
    from interleaf.runtime.jobs.spec import JobLimits
    from interleaf.runtime.jobs.store import JobStore
    from interleaf.runtime.service.access import LOCAL_HOSTS, AccessPolicy
    from interleaf.runtime.service.api import create_app
    from interleaf.settings import api_allowed_hosts, api_max_body_bytes, runs_dir

    if redis_url:
        _check_redis_url(redis_url, redis_no_password)
    if token is not None and len(token) < 16:
        raise typer.BadParameter("the token must have at least 16 characters", param_hint="--token")
    if not token and host not in _LOOPBACK and not no_token:
        raise typer.BadParameter(
            f"{host!r} is not loopback and no --token is set: anyone who reaches the port could run jobs and read "
            "every trajectory; pass --token (or INTERLEAF_API_TOKEN), or --no-token to accept that",
            param_hint="--host",
        )
    try:
        limits = JobLimits.from_env()
        body = api_max_body_bytes()
        access = AccessPolicy(
            allowed_hosts=(*LOCAL_HOSTS, *allow_host, *api_allowed_hosts()),
            token=token or None,
            **({"max_body_bytes": body} if body is not None else {}),
        )
    except ValidationError as exc:  # the only AccessPolicy field not checked above: the body limit
        problems = "; ".join(
            f"{_ACCESS_VARS.get(str(e['loc'][0]), e['loc'][0])}={str(e['input'])!r}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(f"bad setting in the environment: {problems}", param_hint="environment") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="environment") from None
    from interleaf.telemetry.tracing import check_otlp_protocol

    try:
        check_otlp_protocol()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="environment") from None
    # Before anything starts: a port in use fails here, in one line, and the socket is held for uvicorn.
    listener = _listen_socket(host, port)

    if worker:
        # Ray starts before the server does: ray.init holds the GIL for over a second at a time even on
        # another thread, which would stall every request during the first job (the import of the runner
        # and the agents likewise).
        from interleaf.runtime.jobs.runner import ensure_ray

        try:
            ensure_ray(ray_address)
        except Exception as exc:  # a wrong --ray-address, or Ray cannot start here
            raise typer.BadParameter(f"cannot start or reach Ray: {exc}", param_hint="--ray-address") from None
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler it found: this one
    # turns it into SystemExit, so the cleanup below (engine, Redis, Ray) runs instead of a bare kill.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # API only (--no-worker) needs no engine: jobs then name their backends or get --backend.
    consumer = worker_name or f"serve@{socket.gethostname()}:{port}"
    embedded = EmbeddedServices(
        backend, redis_url, engine_args=list(engine_arg), start_engine=worker, redis_dir=runs_dir() / ".redis"
    )
    try:
        try:
            services = embedded.start()  # stops what it started if a part fails
        except RedisUnavailable as exc:  # no redis-server, or another serve holds this runs directory's
            typer.echo(f"interleaf serve: cannot start the private Redis (no --redis-url given): {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            store = JobStore(services.redis_url or "")
            options = None
            if worker:
                options = {
                    "consumer": consumer,
                    "ray_address": ray_address,
                    "reclaim_idle_ms": int(reclaim_after * 1000),
                }
            app = create_app(
                store, default_backends=services.backend_urls, worker=options, limits=limits, access=access
            )
            shown = _shown_url(services.redis_url or "")
            typer.echo(f"interleaf jobs API and dashboard on http://{host}:{port}/ (redis {shown})")
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
            server.run(sockets=[listener])  # the app closes the store
        finally:
            services.stop()
    finally:
        listener.close()
        _stop_local_ray()


# The AccessPolicy fields set from the environment, by the variable that sets them.
_ACCESS_VARS = {"max_body_bytes": "INTERLEAF_MAX_BODY_BYTES", "allowed_hosts": "INTERLEAF_ALLOWED_HOSTS"}


def _listen_socket(host: str, port: int) -> socket.socket:
    """``host:port`` bound (as uvicorn binds it), or exit 2 with one line naming the port and what to do."""
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a kept-alive connection waits ~40 ms (Nagle + delayed ACK) on every response.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} is in use on {host}: stop what listens there or pass another --port"
        else:
            why = f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host and --port)"
        typer.echo(f"interleaf serve: {why}", err=True)
        raise typer.Exit(2) from None
    return sock


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop_local_ray() -> None:
    """Shut down the local Ray this process started (the worker's first job), then end whatever of it
    is left: Ray's agents (dashboard, runtime-env) otherwise outlive their raylet for minutes."""
    import sys

    if "ray" not in sys.modules:
        return
    import psutil
    import ray

    if not ray.is_initialized():
        return
    started = psutil.Process().children(recursive=True)  # before the raylet goes and they are re-parented
    ray.shutdown()
    _, alive = psutil.wait_procs(started, timeout=5)
    for proc in alive:
        proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=5)
    for proc in alive:
        proc.kill()


__all__ = ["serve"]
