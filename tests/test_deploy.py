"""deploy/ matches the code: every ``interleaf`` command line, flag and environment variable that the
compose file, the KubeRay/SGLang manifests, the Dockerfile and docs/deploy.md use exists in the CLI
and the source. (No container runs here: there is no Docker engine and no GPU on the dev machine.)"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from interleaf import cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
_INLINE = re.compile(r"`(interleaf [^`]+)`")
_COMMENT_COMMAND = re.compile(r"\binterleaf ([a-z][\w-]*)\b[^`#]*$")
_ENV_NAME = re.compile(r"\b(INTERLEAF_[A-Z0-9_]+)\b")
_FOREIGN_ENV_PREFIXES = ("OTEL_", "RAY_", "PYTHON", "CUDA_", "HF_", "SGLANG_")


def _yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


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


def deploy_command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv after ``interleaf``) for every interleaf invocation in deploy/ and docs/deploy.md."""
    found: list[tuple[str, list[str]]] = []
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        build = service.get("build") or {}
        if isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile" and "command" in service:
            found.append((f"compose.yaml service {name}", _argv(service["command"])))  # ENTRYPOINT interleaf
        for key in ("command", "entrypoint"):
            argv = _argv(service.get(key, []))
            if argv[:1] == ["interleaf"]:
                found.append((f"compose.yaml service {name} {key}", argv[1:]))
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for node in (n for doc in _yaml_docs(manifest) for n in _walk(doc)):
            for key in ("command", "args"):
                argv = _argv(node.get(key, [])) if isinstance(node.get(key), (list, str)) else []
                if argv[:1] == ["interleaf"]:
                    found.append((f"{manifest.name} {key}", argv[1:]))
    commands = set(_cli().commands)
    for path in [*DEPLOY.rglob("*"), ROOT / "docs" / "deploy.md"]:
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
                argv = _cut(shlex.split(text.replace("\\", " ")))
                found.append((f"{path.relative_to(ROOT)}:{lineno}", argv[1:]))
    return found


def _cli() -> Any:
    cli._register()
    return typer.main.get_command(cli.app)


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


LINES = deploy_command_lines()


def test_deploy_uses_interleaf_somewhere() -> None:
    """The extraction itself works: compose's job container, the KubeRay recipe and docs are found."""
    where = " ".join(w for w, _ in LINES)
    assert "compose.yaml service interleaf" in where
    assert "raycluster.yaml" in where
    assert "docs/deploy.md" in where


@pytest.mark.parametrize(("where", "argv"), LINES, ids=[f"{w}:{' '.join(a[:2])}" for w, a in LINES])
def test_every_deploy_command_parses(where: str, argv: list[str]) -> None:
    problem = check_argv(_cli(), argv)
    assert problem is None, f"{where}: interleaf {' '.join(argv)}: {problem}"


def test_every_interleaf_environment_variable_exists_in_the_code() -> None:
    source = "\n".join(
        p.read_text()
        for folder in ("interleaf", "runtime", "agents", "tools", "telemetry", "probes")
        for p in (ROOT / folder).rglob("*.py")
    )
    known = set(_ENV_NAME.findall(source))
    used: dict[str, str] = {}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key in env if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]:
            used[key] = f"compose.yaml service {name}"
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for node in (n for doc in _yaml_docs(manifest) for n in _walk(doc)):
            for item in node.get("env", []) if isinstance(node.get("env"), list) else []:
                used[item["name"]] = manifest.name
    for path in [DEPLOY / "Dockerfile", ROOT / "docs" / "deploy.md"]:
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
