"""The `agent-gateway` command line: `check`, `run`, exit codes, and no leaked secrets."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.describe import ECHO_NOTICE
from gateway.errors import GatewayError
from tests.gateway_procs import ENV_NAMES, child_env

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "config" / "gateway.toml"


SECRETS = {
    "TELEGRAM_BOT_TOKEN": "tg-SECRET-a1b2c3",
    "DISCORD_BOT_TOKEN": "dc-SECRET-d4e5f6",
    "SLACK_BOT_TOKEN": "xoxb-SECRET-0a0b",
    "SLACK_APP_TOKEN": "xapp-SECRET-1c1d",
    "SLACK_SIGNING_SECRET": "sign-SECRET-2e2f",
    "OPENAI_API_KEY": "sk-SECRET-3a3b",
}

BROKEN = """
default_agent = "asistant"
[server]
port = "eighty"
[providers.p]
kind = "echo"
[agents.assistant]
provider = "p"
max_iterations = 0
[adapters.telegram]
enabled = true
tokn = "${TELEGRAM_BOT_TOKEN}"
"""

BROKEN_PATHS = [
    "adapters.telegram.token",
    "adapters.telegram.tokn",
    "agents.assistant.max_iterations",
    "default_agent",
    "server.port",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def url_loggers() -> Iterator[None]:
    """`run` quietens URL-logging libraries; put their levels back afterwards."""
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def write(directory: Path, text: str) -> Path:
    path = directory / "gateway.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_check_default_config_describes_what_would_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["check", "-c", str(DEFAULT)])

    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    assert "  assistant: provider default, model echo, tools [get_time]" in out
    assert "  default: kind echo (auto: no OPENAI_API_KEY or ANTHROPIC_API_KEY set)" in out
    assert "key not set" in out
    assert "  telegram: off (auto: TELEGRAM_BOT_TOKEN not set)" in out
    assert "  slack: off (auto: SLACK_BOT_TOKEN and SLACK_APP_TOKEN not set)" in out
    assert "  webchat: on (enabled = true), agent assistant, access open, " in out
    assert "http://127.0.0.1:8080/" in out
    # Relative to the configuration file, not to wherever the process was started.
    assert f"storage: {REPO / 'config' / 'data' / 'gateway.db'}" in out
    assert "server: http://127.0.0.1:8080" in out
    assert "bindings: none" in out


def test_check_finds_the_packaged_config_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    code = main(["check"])

    assert code == 0
    assert f"configuration: {DEFAULT}" in capsys.readouterr().out


def test_check_prefers_config_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config").mkdir()
    local = tmp_path / "config" / "gateway.toml"
    local.write_text(
        'default_agent = "x"\n[providers.p]\nkind = "echo"\n[agents.x]\nprovider = "p"\n'
    )
    monkeypatch.chdir(tmp_path)

    code = main(["check"])

    assert code == 0
    assert f"configuration: {local}" in capsys.readouterr().out


def test_check_with_secrets_set_never_prints_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)

    code = main(["check", "-c", str(DEFAULT)])

    out, err = capsys.readouterr()
    assert code == 0
    assert "  telegram: on (auto: TELEGRAM_BOT_TOKEN set)" in out
    assert "  discord: on (auto: DISCORD_BOT_TOKEN set)" in out
    assert "  slack: on (auto: SLACK_BOT_TOKEN and SLACK_APP_TOKEN set)" in out
    assert "kind openai (auto: OPENAI_API_KEY set)" in out
    assert "key set" in out
    for value in SECRETS.values():
        assert value not in out + err


def test_invalid_config_lists_every_problem_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, BROKEN)

    code = main(["check", "-c", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == BROKEN_PATHS
    assert "adapters.telegram.tokn: unknown key; did you mean token?" in lines
    assert "Traceback" not in err
    for value in SECRETS.values():
        assert value not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('default_agent = "a"\nport = = 1\n', "invalid TOML at line 2, column 8"),
        (
            'default_agent = "a"\n[adapters.slack]\nbot_token = "${SLACK_BOT_TOKEN}"\n',
            "adapters.slack.app_token: required in mode",
        ),
        (
            '[providers.p]\nkind = "auto"\napi_key = "${OPENAI_API_KEY}"\n',
            "providers.p.api_key: not used with kind",
        ),
    ],
)
def test_other_error_paths_exit_2_without_secrets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    expected: str,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, text)

    code = main(["check", "-c", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert expected in err
    for value in SECRETS.values():
        assert value not in out + err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"

    code = main(["check", "-c", str(missing)])

    assert code == 2
    assert capsys.readouterr().err.startswith(f"{missing}: cannot read the configuration file")


def test_usage_errors_exit_2_and_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
    assert main(["check", "--bogus"]) == 2
    assert main(["--help"]) == 0
    assert "check" in capsys.readouterr().out


def _fake_app(monkeypatch: pytest.MonkeyPatch, error: Exception | None = None) -> list[object]:
    """Stand in for gateway.app (written elsewhere) so `run` can be tested on its own."""
    served: list[object] = []

    async def serve(config: GatewayConfig) -> None:
        served.append(config)
        if error is not None:
            raise error

    module = types.ModuleType("gateway.app")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.app", module)
    return served


@pytest.mark.usefixtures("url_loggers")
def test_run_announces_the_echo_model_and_serves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = _fake_app(monkeypatch)

    code = main(["run", "-c", str(DEFAULT)])

    out = capsys.readouterr().out
    assert code == 0
    assert len(served) == 1
    assert isinstance(served[0], GatewayConfig)
    assert ECHO_NOTICE in out
    assert "adapters: webchat" in out
    assert "web chat: http://127.0.0.1:8080/" in out
    assert logging.getLogger("httpx").level == logging.WARNING


@pytest.mark.usefixtures("url_loggers")
def test_run_with_a_model_key_has_no_echo_notice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS["OPENAI_API_KEY"])
    _fake_app(monkeypatch)

    code = main(["run", "-c", str(DEFAULT)])

    out = capsys.readouterr().out
    assert code == 0
    assert ECHO_NOTICE not in out
    assert SECRETS["OPENAI_API_KEY"] not in out


@pytest.mark.usefixtures("url_loggers")
def test_run_reports_a_gateway_failure_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_app(monkeypatch, GatewayError("storage could not be opened; check storage.path"))

    code = main(["run", "-c", str(DEFAULT)])

    assert code == 1
    assert "storage could not be opened" in capsys.readouterr().err


def test_check_says_how_to_fill_an_empty_allowlist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", SECRETS["TELEGRAM_BOT_TOKEN"])
    monkeypatch.setenv("DISCORD_BOT_TOKEN", SECRETS["DISCORD_BOT_TOKEN"])
    monkeypatch.setenv("DISCORD_ALLOWED_USERS", "123456789012345678")

    assert main(["check", "-c", str(DEFAULT)]) == 0

    out = capsys.readouterr().out
    [telegram] = [line for line in out.splitlines() if line.startswith("  telegram:")]
    assert "(0 users) [everyone is refused: set TELEGRAM_ALLOWED_USERS=ID,ID" in telegram
    assert "to find your id, message the bot" in telegram
    [discord] = [line for line in out.splitlines() if line.startswith("  discord:")]
    assert "(1 user)" in discord
    assert "refused" not in discord


@pytest.mark.usefixtures("url_loggers")
@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_run_warns_when_the_web_chat_listens_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str, warned: bool
) -> None:
    monkeypatch.setenv("AGENT_GATEWAY_HOST", host)
    _fake_app(monkeypatch)

    assert main(["run", "-c", str(DEFAULT)]) == 0

    err = capsys.readouterr().err
    assert ("listens beyond this machine with no login" in err) is warned
    assert main(["check", "-c", str(DEFAULT)]) == 0
    out = capsys.readouterr().out
    assert ("listens beyond this machine with no login" in out) is warned


def test_run_with_invalid_config_exits_2_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = _fake_app(monkeypatch)

    code = main(["run", "-c", str(write(tmp_path, BROKEN))])

    assert code == 2
    assert served == []
    assert len(capsys.readouterr().err.splitlines()) == len(BROKEN_PATHS)


def run_cli(command: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m gateway.cli COMMAND -c CONFIG`` in a child; the timeout proves it ends."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", command, "-c", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_module_entry_point_exits_2_on_a_bad_file(tmp_path: Path) -> None:
    env = child_env(**SECRETS)
    path = write(tmp_path, BROKEN)

    result = run_cli("check", path, env)

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert [line.split(": ", 1)[0] for line in result.stderr.splitlines()] == BROKEN_PATHS
    for value in SECRETS.values():
        assert value not in result.stderr


# -- start-up failures: one line, exit 1, no hang ------------------------------------------

STARTUP = """
default_agent = "a"
shutdown_grace = 0.5
[server]
host = "{host}"
port = {port}
[storage]
path = "{db}"
[logging]
level = "ERROR"
[providers.p]
kind = "echo"
[agents.a]
provider = "p"
[adapters.webchat]
enabled = true
"""


def _run_until_it_fails(directory: Path, *, host: str, port: int, db: str) -> list[str]:
    """`agent-gateway run` in a child; the timeout is what proves it does not hang."""
    env = child_env()
    path = directory / "gateway.toml"
    path.write_text(STARTUP.format(host=host, port=port, db=db), encoding="utf-8")
    result = run_cli("run", path, env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # A non-loopback host earns a warning first; the failure itself is one line.
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("agent-gateway: ")
    return lines


def test_run_with_the_port_in_use_says_which_setting_and_exits_1(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        [line] = _run_until_it_fails(tmp_path, host="127.0.0.1", port=port, db="gateway.db")
    assert f"127.0.0.1:{port}" in line
    assert "already in use" in line
    assert "server.port or AGENT_GATEWAY_PORT" in line


@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
def test_run_with_an_unusable_host_says_so_and_exits_1(tmp_path: Path, host: str) -> None:
    [line] = _run_until_it_fails(tmp_path, host=host, port=0, db="gateway.db")
    assert "not an address of this machine" in line
    assert "server.host" in line


@pytest.mark.parametrize(
    "kind",
    [
        "directory",
        "not a database",
        "under a file",
        pytest.param(
            "no permission",
            marks=pytest.mark.skipif(
                os.geteuid() == 0, reason="root opens files whatever their permissions"
            ),
        ),
    ],
)
def test_run_with_unopenable_storage_is_one_line_and_exits_1(tmp_path: Path, kind: str) -> None:
    if kind == "no permission":
        (tmp_path / "state").mkdir(mode=0o500)  # readable, not writable: no file inside
        db = "state/gateway.db"
    elif kind == "directory":
        (tmp_path / "state").mkdir()
        db = "state"
    elif kind == "not a database":
        (tmp_path / "state").write_text("these are not the pages of a database\n" * 200)
        db = "state"
    else:
        (tmp_path / "state").write_text("a file, so nothing can live under it\n")
        db = "state/gateway.db"

    [line] = _run_until_it_fails(tmp_path, host="127.0.0.1", port=0, db=db)

    assert "state" in line  # names the path, whatever the storage layer's exact words
