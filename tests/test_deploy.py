"""deploy/ matches the code. Every ``interleaf`` command line in the compose file, the KubeRay/SGLang
manifests, the Dockerfile, deploy/sglang-launch.sh and docs/deploy.md names commands and flags the CLI
has, and the ``run``, ``serve`` and ``engine serve`` lines pass the CLI's own validation with the
variables they use (up to where the command would start something); the SGLang flags are one set; the
Ray version is the pinned one; and the access rules docs/deploy.md states hold in the manifests.
(No container runs here: there is no Docker engine and no GPU on the dev machine.)"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import typer
import yaml

from interleaf import cli
from interleaf.commands import run as run_command
from interleaf.commands import serve as serve_command

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
_INLINE = re.compile(r"`(interleaf [^`]+)`")
_COMMENT_COMMAND = re.compile(r"\binterleaf ([a-z][\w-]*)\b[^`#]*$")
_ENV_NAME = re.compile(r"\b(INTERLEAF_[A-Z0-9_]+)\b")
# Read by other programs: Ray, OTel, Redis (REDISCLI_AUTH) and the shell the documented commands run in
# (REDIS_PASSWORD, expanded into --redis-url).
_FOREIGN_ENV_PREFIXES = ("OTEL_", "RAY_", "PYTHON", "CUDA_", "HF_", "SGLANG_", "REDIS")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_SECRET = "0123456789abcdef" * 3
"""Stands for every password and token (what ``openssl rand -hex 24`` gives)."""
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")
_VALIDATED = (("run",), ("serve",), ("engine", "serve"))
"""The commands whose lines are run through the CLI's validation (the others: flag names only)."""


class DeployLine(NamedTuple):
    where: str
    argv: list[str]
    """After ``interleaf``, variables expanded."""
    env: dict[str, str]
    """The environment the manifest gives the command (compose ``environment``, a container's ``env``)."""
    unset: str | None = None
    """A variable the line uses that nothing in deploy/ or docs/deploy.md sets (``argv`` has it as a secret)."""


def _yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> list[Any]:
    return [d for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _yaml_docs(manifest)]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _containers(doc: Any) -> Iterator[dict[str, Any]]:
    for node in _walk(doc):
        yield from (c for c in node.get("containers", []) if isinstance(c, dict))


def _env_value(item: dict[str, Any]) -> str:
    return str(item["value"]) if "value" in item else _SECRET  # valueFrom: a Secret's key


def provided_variables() -> dict[str, str]:
    """Every variable a deploy command line may use (secrets as ``_SECRET``): the operator's ``export``s
    in docs/deploy.md (compose interpolates those too) and the Kubernetes containers' ``env`` (the
    documented cluster commands run on the head). Not this process's environment."""
    found = {m: _SECRET for m in re.findall(r"^export (\w+)=", DOCS.read_text(), re.M)}
    for container in (c for doc in _k8s() for c in _containers(doc)):
        found.update({item["name"]: _env_value(item) for item in container.get("env", [])})
    return found


def expand(text: str, variables: Mapping[str, str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` and ``$$`` as the shell and
    compose read them; a variable nothing sets is a LookupError naming it."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1) or m.group(4), m.group(2) or "", m.group(3)
        value = variables.get(name)
        if op.endswith("-") and not value:
            return arg
        if value is None:
            raise LookupError(f"${name} is used but neither deploy/ nor docs/deploy.md sets it")
        return value

    return _VARIABLE.sub(one, text)


def _argv(command: Any, variables: Mapping[str, str] | None) -> list[str]:
    """The command as a list; with ``variables``, expanded (None: as written)."""
    if isinstance(command, str):  # expanded before it is split, as compose and the shell do
        return shlex.split(expand(command, variables) if variables is not None else command)
    return [expand(str(c), variables) if variables is not None else str(c) for c in command]


def _expanded(command: Any, variables: Mapping[str, str]) -> tuple[list[str], str | None]:
    """``command`` expanded, and what it uses that nothing sets (then expanded as if a secret)."""
    try:
        return _argv(command, variables), None
    except LookupError as exc:
        used = {m.group(1) or m.group(4) for m in _VARIABLE.finditer(" ".join(_argv(command, None)))}
        return _argv(command, {**dict.fromkeys(used - {None}, _SECRET), **variables}), str(exc)


def _line(where: str, command: Any, variables: Mapping[str, str], env: dict[str, str], skip: int) -> DeployLine:
    argv, unset = _expanded(command, variables)
    return DeployLine(where, argv[skip:], env, unset)


def _cut(argv: list[str]) -> list[str]:
    """One command: stop at a shell operator; drop a trailing ``...`` placeholder."""
    out = []
    for token in argv:
        if token in ("|", "&&", ";", "||", ">", "2>&1") or token.startswith("#"):
            break
        if token in ("...", "…"):
            continue
        out.append(token)
    return out


def deploy_command_lines() -> list[DeployLine]:
    """Every interleaf invocation in deploy/ and docs/deploy.md."""
    variables = provided_variables()
    found: list[DeployLine] = []
    for name, service in _compose()["services"].items():
        environment = service.get("environment") or {}
        values, env_unset = _expanded(list(environment.values()), variables)
        env = dict(zip(environment, values, strict=True))
        build = service.get("build") or {}
        if isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile" and "command" in service:
            line = _line(f"compose.yaml service {name}", service["command"], variables, env, 0)  # ENTRYPOINT
            found.append(line._replace(unset=line.unset or env_unset))
        for key in ("command", "entrypoint"):
            if _argv(service.get(key, []), None)[:1] == ["interleaf"]:
                line = _line(f"compose.yaml service {name} {key}", service[key], variables, env, 1)
                found.append(line._replace(unset=line.unset or env_unset))
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for container in (c for doc in _yaml_docs(manifest) for c in _containers(doc)):
            env = {item["name"]: _env_value(item) for item in container.get("env", [])}
            for key in ("command", "args"):
                if _argv(container.get(key, []), None)[:1] == ["interleaf"]:
                    found.append(_line(f"{manifest.name} {key}", container[key], variables, env, 1))
    commands = set(_cli().commands)
    for path in [*DEPLOY.rglob("*"), DOCS]:
        if not path.is_file():
            continue
        in_code = False
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                in_code = not in_code
                continue
            texts = _INLINE.findall(line)
            if in_code and line.strip().startswith("interleaf "):
                texts.append(line.strip())
            if path.suffix != ".md":  # a recipe in a comment: "... from the head:  interleaf run --ray-address auto"
                texts += [m.group(0) for m in _COMMENT_COMMAND.finditer(line) if m.group(1) in commands]
            for text in dict.fromkeys(texts):
                line = _line(f"{path.relative_to(ROOT)}:{lineno}", text.replace("\\", " "), variables, {}, 0)
                found.append(line._replace(argv=_cut(line.argv)[1:]))
    return found


def _cli() -> Any:
    cli._register()
    return typer.main.get_command(cli.app)


def _command_path(root: Any, argv: list[str]) -> tuple[tuple[str, ...], list[str]]:
    command, path, rest = root, [], list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-") and rest[0] in command.commands:
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    return tuple(path), rest


def check_argv(root: Any, argv: list[str]) -> str | None:
    """Why ``interleaf <argv>`` would be rejected by the CLI's parser, or None."""
    command, path, rest = root, ["interleaf"], list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            return f"{' '.join(path)} has no command {name!r} (has {sorted(command.commands)})"
        command = command.commands[name]
        path.append(name)
    if hasattr(command, "commands"):
        return f"{' '.join(path)} needs a subcommand"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for token in rest:
        if token.startswith("-") and token not in ("-", "--"):
            flag = token.split("=", 1)[0]
            if flag not in options:
                return f"{' '.join(path)} has no option {flag} (has {sorted(o for o in options if o.startswith('--'))})"
    return None


class _Started(Exception):
    """The command got through its validation to where it would start something."""


def _start(*_args: Any, **_kwargs: Any) -> None:
    raise _Started


def validation_problem(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    """What the CLI says when ``interleaf <argv>`` is refused, or None when it gets to where it would
    start something. The seams: ``serve`` checks everything before binding its socket
    (``_listen_socket``), ``run`` before ``run_spec``; ``engine serve`` parses with ``config_from_args``."""
    path, rest = _command_path(_cli(), argv)
    assert path in _VALIDATED, path
    if path == ("engine", "serve"):
        from interleaf.runtime.engine.__main__ import config_from_args

        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                config_from_args(rest)
        except SystemExit:
            return stderr.getvalue().strip()
        return None
    monkeypatch.setattr(serve_command, "_listen_socket", _start)
    monkeypatch.setattr(run_command, "run_spec", _start)
    try:
        _cli().main(args=argv, prog_name="interleaf", standalone_mode=False)
    except _Started:
        return None
    except cli.click_errors.ClickException as exc:
        return cli.usage_error_line(exc)
    return "returned before reaching the start: the validation seam moved (see validation_problem)"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must not reach the hosts a manifest names (sglang-0.sglang, redis, ...)."""
    resolve, connect = socket.getaddrinfo, socket.socket.connect

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOOPBACK:
            raise AssertionError(f"validation tried to reach {host!r}")
        return resolve(host, *args, **kwargs)

    def connect_local(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise AssertionError(f"validation tried to connect to {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    monkeypatch.setattr(socket.socket, "connect", connect_local)


LINES = deploy_command_lines()
_ROOT_COMMAND = _cli()
VALIDATED = [line for line in LINES if _command_path(_ROOT_COMMAND, line.argv)[0] in _VALIDATED]


def _ids(lines: list[DeployLine]) -> list[str]:
    return [f"{line.where}:{' '.join(line.argv[:2])}" for line in lines]


def test_deploy_uses_interleaf_somewhere() -> None:
    """The extraction itself works: compose's job container, the KubeRay recipe and docs are found."""
    where = " ".join(line.where for line in LINES)
    assert "compose.yaml service interleaf" in where
    assert "raycluster.yaml" in where
    assert "docs/deploy.md" in where
    assert {_command_path(_ROOT_COMMAND, line.argv)[0] for line in VALIDATED} >= {("run",), ("serve",)}


@pytest.mark.parametrize("line", LINES, ids=_ids(LINES))
def test_every_deploy_command_parses(line: DeployLine) -> None:
    problem = check_argv(_ROOT_COMMAND, line.argv)
    assert problem is None, f"{line.where}: interleaf {' '.join(line.argv)}: {problem}"


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("line", VALIDATED, ids=_ids(VALIDATED))
def test_every_deploy_command_is_accepted(line: DeployLine, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the CLI would take it: values, ranges, the Redis password rule, the token length, the
    environment the manifest gives it."""
    monkeypatch.delenv("INTERLEAF_API_TOKEN", raising=False)
    for name, value in line.env.items():
        monkeypatch.setenv(name, value)
    problem = validation_problem(line.argv, monkeypatch)
    assert (problem, line.unset) == (None, None), (
        f"{line.where}: interleaf {' '.join(line.argv)}\n  refused: {problem}\n  variables: {line.unset}"
    )


@pytest.mark.usefixtures("no_network")
def test_the_validation_refuses_what_the_cli_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewed defect: a Redis elsewhere without a password is refused, as on the command line."""
    refused = validation_problem(["serve", "--redis-url", "redis://redis:6379/0", "--host", "127.0.0.1"], monkeypatch)
    assert "--redis-url" in (refused or "") and "no password" in (refused or "")
    assert "--token" in (validation_problem(["serve", "--token", "short"], monkeypatch) or "")
    assert "--n" in (validation_problem(["run", "--n", "0"], monkeypatch) or "")
    assert "--port" in (validation_problem(["engine", "serve", "--port", "x"], monkeypatch) or "")
    assert validation_problem(["serve", "--redis-url", f"redis://:{_SECRET}@redis:6379/0"], monkeypatch) is None


def _option(argv: list[str], flag: str) -> list[str]:
    values = [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == flag]
    return values + [token.split("=", 1)[1] for token in argv if token.startswith(f"{flag}=")]


def test_every_redis_url_needs_a_password() -> None:
    """``interleaf serve``'s rule, applied to every command (``interleaf run`` does not check it)."""
    for line in LINES:
        for url in _option(line.argv, "--redis-url"):
            try:
                serve_command._check_redis_url(url, allow_no_password=False)
            except typer.BadParameter as exc:
                pytest.fail(f"{line.where}: --redis-url {url}: {exc}")


def test_a_served_api_beyond_loopback_has_a_token() -> None:
    """docs/deploy.md's rule; ``interleaf serve`` itself does not refuse a non-loopback host without one."""
    for line in LINES:
        if _command_path(_ROOT_COMMAND, line.argv)[0] != ("serve",):
            continue
        host = (_option(line.argv, "--host") or ["127.0.0.1"])[-1]
        if host not in _LOOPBACK:
            assert _option(line.argv, "--token") or "INTERLEAF_API_TOKEN" in line.env, f"{line.where}: --host {host}"


def test_every_interleaf_environment_variable_exists_in_the_code() -> None:
    source = "\n".join(
        p.read_text()
        for folder in ("interleaf", "runtime", "agents", "tools", "telemetry", "probes")
        for p in (ROOT / folder).rglob("*.py")
    )
    known = set(_ENV_NAME.findall(source))
    used: dict[str, str] = {}
    for name, service in _compose()["services"].items():
        env = service.get("environment") or {}
        for key in env if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]:
            used[key] = f"compose.yaml service {name}"
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for container in (c for doc in _yaml_docs(manifest) for c in _containers(doc)):
            for item in container.get("env", []):
                used[item["name"]] = manifest.name
    for path in [DEPLOY / "Dockerfile", DOCS]:
        for var in _ENV_NAME.findall(path.read_text()):
            used[var] = path.name
    unknown = {
        var: where for var, where in used.items() if var not in known and not var.startswith(_FOREIGN_ENV_PREFIXES)
    }
    assert not unknown, f"environment variables no code reads: {unknown}"


def test_checker_rejects_what_the_cli_rejects() -> None:
    root = _cli()
    assert check_argv(root, ["run", "--suite", "arith"]) is None
    assert "no option --no-such-flag" in (check_argv(root, ["run", "--no-such-flag"]) or "")
    assert "no command 'nope'" in (check_argv(root, ["nope"]) or "")


def test_variables_nothing_sets_are_refused() -> None:
    assert expand("redis://:${P:?set P}@r/0 $$x ${Q:-d}", {"P": "pw"}) == "redis://:pw@r/0 $x d"
    with pytest.raises(LookupError, match=r"\$NOPE"):
        expand('--token "$NOPE"', {})


# --- SGLang: one set of flags ------------------------------------------------------------------------

_PLACE = ("--model-path", "--host", "--port")
"""Flags whose value differs by place (the model, the interface, the port)."""


def sglang_argvs() -> dict[str, list[str]]:
    """``python -m sglang.launch_server ...`` as compose, the StatefulSet and sglang-launch.sh run it."""
    found = {"compose.yaml": shlex.split(_compose()["services"]["sglang"]["command"])}
    for doc in _k8s():
        for container in _containers(doc):
            if str(container.get("image", "")).startswith("lmsysorg/sglang"):
                found[f"k8s {doc['metadata']['name']}"] = [str(a) for a in container.get("args", [])]
    script = (DEPLOY / "sglang-launch.sh").read_text().replace("\\\n", " ")
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    found["sglang-launch.sh"] = shlex.split(line)[1:]
    return found


def _sglang_flags(argv: list[str]) -> dict[str, str | None]:
    assert argv[:3] == ["python", "-m", "sglang.launch_server"], argv[:3]
    flags: dict[str, str | None] = {}
    for i, token in enumerate(argv[3:], 3):
        if token.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
            flags[token] = value
    return flags


def test_sglang_flags_are_one_set() -> None:
    """compose, k8s and sglang-launch.sh pass the same flags and values, and docs/deploy.md's table
    lists exactly those."""
    sets = {where: _sglang_flags(argv) for where, argv in sglang_argvs().items()}
    assert len(sets) == 3, sorted(sets)
    for where, flags in sets.items():
        assert set(_PLACE) <= set(flags), f"{where}: {sorted(flags)}"
    shared = {where: {k: v for k, v in flags.items() if k not in _PLACE} for where, flags in sets.items()}
    first = next(iter(shared.values()))
    assert all(flags == first for flags in shared.values()), shared
    table = dict(re.findall(r"^\| `(--[\w-]+)(?: ([^`]+))?` \|", DOCS.read_text(), re.M))
    assert {k: v or None for k, v in table.items()} == first, "docs/deploy.md's flag table"


_SGLANG_VENV = Path(os.environ.get("INTERLEAF_SGLANG_VENV", ROOT / ".ci-sglang-venv"))


@pytest.mark.skipif(
    not (_SGLANG_VENV / "bin" / "python").exists(), reason=f"no SGLang venv at {_SGLANG_VENV} (.ci/run builds it)"
)
def test_sglang_accepts_the_flags() -> None:
    """SGLang's own argument parser (``ServerArgs.add_cli_args``) takes every deploy command line."""
    check = (
        "import argparse, json, sys\n"
        "from sglang.srt.server_args import ServerArgs\n"
        "bad = 0\n"
        "for where, args in json.loads(sys.argv[1]).items():\n"
        "    parser = argparse.ArgumentParser(prog=where)\n"
        "    ServerArgs.add_cli_args(parser)\n"
        "    try:\n"
        "        parser.parse_args(args)\n"
        "    except SystemExit:\n"
        "        bad = 1\n"
        "sys.exit(bad)\n"
    )
    shell = {"$MODEL": "Qwen/Qwen2.5-7B-Instruct", "$PORT": "30000", "$HOST": "127.0.0.1"}  # sglang-launch.sh
    lines = {where: [shell.get(a, a) for a in argv[3:]] for where, argv in sglang_argvs().items()}
    python = str(_SGLANG_VENV / "bin" / "python")
    done = subprocess.run([python, "-c", check, json.dumps(lines)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]


def test_sglang_is_reachable_only_by_interleaf() -> None:
    """No authentication interleaf can use (its client sends no API key): the network is the guard."""
    sglang = _compose()["services"]["sglang"]
    published = [str(p) for p in sglang.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in published), f"compose publishes SGLang on {published}"
    script = (DEPLOY / "sglang-launch.sh").read_text()
    default_host = re.search(r"^HOST=\$\{3:-([^}]+)\}$", script, re.M)
    assert default_host and default_host.group(1) in _LOOPBACK
    assert _sglang_flags(sglang_argvs()["sglang-launch.sh"])["--host"] == "$HOST"


# --- access: Redis, Ray, network policies, secrets ------------------------------------------------


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _k8s() if doc.get("kind") == kind]


def _secret_ref(container: dict[str, Any], name: str) -> tuple[str, str] | None:
    for item in container.get("env", []):
        if item["name"] == name:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            return (ref["name"], ref["key"]) if ref else None
    return None


def _ray_cluster() -> dict[str, Any]:
    (cluster,) = _kind("RayCluster")
    return cluster


def _ray_containers() -> dict[str, dict[str, Any]]:
    spec = _ray_cluster()["spec"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return {f"{group} {c['name']}": c for group, g in groups for c in g["template"]["spec"]["containers"]}


def test_redis_has_a_service_a_password_and_a_volume() -> None:
    (statefulset,) = [s for s in _kind("StatefulSet") if s["metadata"]["name"] == "redis"]
    pod = statefulset["spec"]["template"]
    (service,) = [s for s in _kind("Service") if s["metadata"]["name"] == "redis"]  # redis://redis:6379
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    (container,) = pod["spec"]["containers"]
    args = [str(a) for a in container["args"]]
    password = args[args.index("--requirepass") + 1]
    variable = re.fullmatch(r"\$\((\w+)\)", password)
    assert variable, f"--requirepass {password}: not a $(VARIABLE) from the Secret"
    ref = _secret_ref(container, variable.group(1))
    assert ref, f"{variable.group(1)} does not come from a Secret"
    assert _secret_ref(_ray_containers()["head ray-head"], "REDIS_PASSWORD") == ref, "the head's REDIS_PASSWORD"
    claims = {c["metadata"]["name"] for c in statefulset["spec"].get("volumeClaimTemplates", [])}
    assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/data"} & claims, "AOF on a PVC"
    # compose runs the same Redis (its password from REDIS_PASSWORD)
    compose_args = [str(a) for a in _compose()["services"]["redis"]["command"]]
    assert compose_args[: compose_args.index("--requirepass")] == args[: args.index("--requirepass")]
    assert "REDIS_PASSWORD" in compose_args[compose_args.index("--requirepass") + 1]
    assert any(str(v).endswith(":/data") for v in _compose()["services"]["redis"]["volumes"])


def test_ray_requires_its_token_and_keeps_its_dashboard_local() -> None:
    cluster = _ray_cluster()
    refs = set()
    for where, container in _ray_containers().items():
        env = {item["name"]: item for item in container.get("env", [])}
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE"
        refs.add(_secret_ref(container, "RAY_AUTH_TOKEN"))
    assert len(refs) == 1 and None not in refs, f"every node needs the one token from a Secret: {refs}"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"].get("dashboard-host") in _LOOPBACK
    # KubeRay runs a container's command before `ray start`: a head command that never ends (sleep
    # infinity) means Ray never starts.
    assert "command" not in _ray_containers()["head ray-head"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert not re.search(r"^\s*ENV\s.*RAY_AUTH_MODE", dockerfile, re.M), "the image must not set RAY_AUTH_MODE"
    assert _compose()["services"]["interleaf"]["environment"]["RAY_AUTH_MODE"] == "token"


def test_ray_version_is_the_pinned_one() -> None:
    pin = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pin, "constraints.txt pins no ray"
    assert _ray_cluster()["spec"]["rayVersion"] == pin.group(1) == importlib.metadata.version("ray")
    assert tuple(int(p) for p in pin.group(1).split(".")[:2]) >= (2, 52), "Ray token authentication needs >= 2.52"


def test_network_policies_let_only_the_ray_cluster_in() -> None:
    cluster = {"ray.io/cluster": _ray_cluster()["metadata"]["name"]}
    pods = [doc["spec"]["template"]["metadata"]["labels"] for doc in _kind("StatefulSet")]
    policies = {}
    for policy in _kind("NetworkPolicy"):
        spec = policy["spec"]
        for rule in spec["ingress"]:
            assert rule["from"] == [{"podSelector": {"matchLabels": cluster}}], policy["metadata"]["name"]
        ports = sorted(p["port"] for rule in spec["ingress"] for p in rule.get("ports", []))
        policies[tuple(spec["podSelector"]["matchLabels"].items())] = ports
    for labels, port in (({"app": "sglang"}, 30000), ({"app": "redis"}, 6379)):
        assert policies.get(tuple(labels.items())) == [port], f"no policy for {labels} on {port}: {policies}"
        assert any(labels.items() <= p.items() for p in pods), f"no pods labelled {labels}"
    assert policies.get(tuple(cluster.items())) == [], "the Ray pods: all ports, from the cluster only"


def test_every_secret_the_manifests_read_is_created_by_the_docs() -> None:
    read = {
        (ref["name"], ref["key"])
        for doc in _k8s()
        for node in _walk(doc)
        for ref in [node.get("secretKeyRef")]
        if isinstance(ref, dict)
    }
    text = DOCS.read_text().replace("\\\n", " ")
    created = {
        (m.group(1), key)
        for m in re.finditer(r"kubectl create secret generic (\S+)([^\n]*)", text)
        for key in re.findall(r"--from-literal=([\w.-]+)=", m.group(2))
    }
    assert read == created, f"read by the manifests: {sorted(read)}; created in docs/deploy.md: {sorted(created)}"


def test_the_image_carries_the_sandbox() -> None:
    """The python tool's default containment is bubblewrap with a seccomp filter (docs/tools.md)."""
    installs = re.findall(r"apt-get install[^&\n]*", (DEPLOY / "Dockerfile").read_text())
    assert any({"bubblewrap", "libseccomp2"} <= set(line.split()) for line in installs), installs
