"""Environments and `${VAR}` values: what segops.yaml says once a target is chosen.

One set of manifests serves several targets (dev, prod), in the spirit of dbt targets or
Terraform workspaces. segops.yaml's `environments` give, per target, what differs from its
top level; `--env NAME` (or SEGOPS_ENV) picks one:

- `connections`: each replaces the top-level connection of the same name whole (a files
  connection in dev, the API in prod), or adds one;
- `state`: replaces the top-level state; by default the top-level state with the
  environment's name added to its path (`.segops/dev`) or S3 prefix (`segops/dev`), so no
  two environments ever share a state;
- `safety`, `engine`: change the keys they give.

String values may hold `${VAR}` (or `${VAR:-default}`; `$${` is a literal `${`), read from
the environment when the workspace is loaded. Never for secrets: a `*_env` key already
names a variable, and a variable whose name looks like a secret is refused, so that no
secret ever lands in a plan or the state, which record the settings they were made with.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

from segops.config.documents import Document, KeyPath
from segops.errors import Problem

ENV_VARIABLE: Final = "SEGOPS_ENV"
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|CREDENTIAL|AUTH|SESSION", re.IGNORECASE)


def names(config: Document) -> tuple[str, ...]:
    """Return the environments segops.yaml declares, sorted."""
    return tuple(sorted(config.data.get("environments") or {}))


def interpolate(config: Document, variables: Mapping[str, str]) -> tuple[Document, list[Problem]]:
    """Return segops.yaml with every `${VAR}` of its string values replaced."""
    problems: list[Problem] = []

    def walk(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            return _substitute(value, path, variables, config, problems)
        return value

    data = walk(config.data, ())
    return replace(config, data=data), problems


def _substitute(
    text: str,
    path: KeyPath,
    variables: Mapping[str, str],
    config: Document,
    problems: list[Problem],
) -> str:
    def one(match: re.Match[str]) -> str:
        whole, name, default = match[0], match[1], match[2]
        if whole == "$${":
            return "${"
        if name is None:
            problems.append(config.problem(path, "`${` starts no `${NAME}`: write `$${` for a $"))
            return whole
        key = str(path[-1]) if path else ""
        if key.endswith("_env"):
            problems.append(
                config.problem(
                    path, f"{whole}: this key names an environment variable already: write its name"
                )
            )
            return whole
        if _SECRET_NAME.search(name):
            problems.append(
                config.problem(
                    path,
                    f"{whole}: secrets are never written into segops.yaml, not even through "
                    "${}: a connection names the variable that holds one with its *_env key",
                )
            )
            return whole
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        problems.append(config.problem(path, f"{whole}: {name} is not set in the environment"))
        return whole

    return _REFERENCE.sub(one, text)


def select(config: Document, name: str | None) -> tuple[Document, str, list[Problem]]:
    """Return segops.yaml as environment `name` sees it, the name of its definition input,
    and the problems found; without environments (and no `name`), segops.yaml as it is."""
    declared = config.data.get("environments") or {}
    if not declared:
        if name:
            problem = Problem(
                "segops.yaml",
                f"declares no environments: drop --env {name} (or {ENV_VARIABLE})",
            )
            return config, "", [problem]
        return config, "", []
    if not name:
        listed = ", ".join(sorted(declared))
        message = f"declares environments ({listed}): choose one with --env NAME or {ENV_VARIABLE}"
        return config, "", [Problem("segops.yaml", message)]
    if name not in declared:
        listed = ", ".join(sorted(declared))
        problem = config.problem(("environments",), f"--env {name}: not one of {listed}")
        return config, "", [problem]
    merged, lines = _merged(config, name, declared[name])
    problems = _shared_states(config, declared)
    return Document(config.file, config.index, merged, lines), name, problems


def _merged(
    config: Document, name: str, overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    data = {k: v for k, v in config.data.items() if k != "environments"}
    lines = {p: n for p, n in config.lines.items() if not p or p[0] != "environments"}
    data["connections"] = {**data.get("connections", {}), **overrides.get("connections", {})}
    for section in ("safety", "engine"):
        if section in overrides:
            data[section] = {**data.get(section, {}), **overrides[section]}
    data["state"] = overrides.get("state") or default_state(data.get("state") or {}, name)
    if "state" in overrides:  # the environment's own lines replace the top-level ones
        lines = {p: n for p, n in lines.items() if p[:1] != ("state",)}
    for path, line in config.lines.items():
        if path[:2] == ("environments", name) and len(path) > 2:
            lines[path[2:]] = line
    return data, lines


def default_state(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Return the top-level state with the environment's name added to its path or prefix."""
    if state.get("backend") == "s3":
        return {**state, "prefix": f"{str(state.get('prefix') or 'segops').rstrip('/')}/{name}"}
    return {**state, "path": f"{str(state.get('path') or '.segops').rstrip('/')}/{name}"}


def _shared_states(config: Document, declared: Mapping[str, Any]) -> list[Problem]:
    """Return a problem for each environment whose state is another's."""
    top = config.data.get("state") or {}
    seen: dict[str, str] = {}
    problems = []
    for name in sorted(declared):
        state = declared[name].get("state") or default_state(top, name)
        where = _location(state)
        if where in seen:
            message = f"uses the state of environment {seen[where]} ({where}): give each its own"
            problems.append(config.problem(("environments", name, "state"), message))
        seen.setdefault(where, name)
    return problems


def _location(state: Mapping[str, Any]) -> str:
    if state.get("backend") == "s3":
        endpoint = state.get("endpoint_url") or ""
        prefix = str(state.get("prefix") or "segops").strip("/")
        return f"s3://{state.get('bucket')}/{prefix}{f' at {endpoint}' if endpoint else ''}"
    return str(state.get("path") or ".segops").rstrip("/")


def effective_input(config: Document, environment: str, interpolated: bool) -> tuple[str, str]:
    """Return the definition input that pins segops.yaml as read: ("", "") when it is the file.

    A plan pins segops.yaml's bytes; with an environment or `${VAR}` values the same bytes
    can mean other settings, so the plan also pins what they came to, under a name that says
    which environment it was (a dev plan applied with --env prod is refused, by name).
    """
    if not environment and not interpolated:
        return "", ""
    label = f"environment {environment}" if environment else "${} values"
    text = json.dumps(config.data, sort_keys=True, separators=(",", ":"), default=str)
    return f"segops.yaml ({label})", hashlib.sha256(text.encode()).hexdigest()


def uses_variables(config: Document) -> bool:
    """Return whether any string value of segops.yaml holds a `${`."""
    return any("${" in value for value in _strings(config.data))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value
