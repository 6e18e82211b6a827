"""The deployment files say what they must: a non-root image with a health check, a unit
that runs the installed command, a license, and a README that stands on its own.

No container engine runs here, so the Dockerfile is read, not built: these tests pin the
properties that a build would otherwise be trusted with.
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

from gateway.config_loader import load_config

REPO = Path(__file__).resolve().parents[1]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*", " ", text)
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, rest = stripped.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def test_the_image_runs_as_a_non_root_user_and_checks_healthz() -> None:
    steps = dockerfile()
    instructions = [instruction for instruction, _ in steps]
    users = [rest for instruction, rest in steps if instruction == "USER"]
    assert users, "the image must not run as root"
    assert users[-1] not in ("root", "0", "0:0")
    # USER comes before the command, so the process never starts as root.
    assert instructions.index("USER") < instructions.index("ENTRYPOINT")
    [health] = [rest for instruction, rest in steps if instruction == "HEALTHCHECK"]
    assert "/healthz" in health
    assert "CMD" in health
    assert steps[0][0] == "FROM"
    assert "slim" in steps[0][1] or "alpine" in steps[0][1]


def test_the_image_copies_only_paths_that_exist_and_serves_on_all_interfaces() -> None:
    steps = dockerfile()
    for instruction, rest in steps:
        if instruction == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (REPO / source).exists(), source
    env = " ".join(rest for instruction, rest in steps if instruction == "ENV")
    # The default config listens on loopback; in a container the published port needs more.
    assert "AGENT_GATEWAY_HOST=0.0.0.0" in env
    assert "AGENT_GATEWAY_DB=/data/" in env
    [entrypoint] = [rest for instruction, rest in steps if instruction == "ENTRYPOINT"]
    assert "agent-gateway" in entrypoint


def test_the_default_config_honours_the_variables_the_image_sets() -> None:
    env = {"AGENT_GATEWAY_HOST": "0.0.0.0", "AGENT_GATEWAY_DB": "/data/gateway.db"}

    config = load_config(REPO / "config" / "gateway.toml", env)

    assert config.server.host == "0.0.0.0"
    assert config.storage.path == Path("/data/gateway.db")


def test_compose_builds_this_directory_and_publishes_on_loopback() -> None:
    text = (REPO / "compose.yaml").read_text(encoding="utf-8")
    assert re.search(r"^\s+build: \.$", text, re.MULTILINE)
    assert '"127.0.0.1:8080:8080"' in text
    assert ":/data" in text


def test_the_systemd_unit_runs_the_installed_command_as_its_own_user() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "deploy" / "agent-gateway.service", encoding="utf-8")
    service = unit["Service"]
    assert service["ExecStart"].split()[:2] == ["/opt/agent-gateway/bin/agent-gateway", "run"]
    assert service["User"] not in ("root", "0")
    assert service["RestartPreventExitStatus"] == "2"
    assert "AGENT_GATEWAY_DB=/var/lib/agent-gateway/" in service["Environment"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_license_is_mit() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_readme_points_only_inside_the_repository() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "../" not in text
    # Every repository path it names in backticks exists (the database is made at run time).
    for path in re.findall(r"`((?:[\w.-]+/)+[\w.-]*)`", text):
        if not path.endswith(".db"):  # the tour names some paths inside a package
            assert (REPO / path).exists() or any(REPO.glob(f"*/{path}")), path
    # The two commands it opens with still work as written.
    assert ".venv/bin/pip install -e . && .venv/bin/agent-gateway run" in text
    assert '.venv/bin/pip install -e ".[dev]" && .venv/bin/pytest' in text
