"""The configuration loader: defaults, "auto" resolution, interpolation, every problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.config_loader import interpolate, load_config
from gateway.describe import describe
from gateway.errors import ConfigError, GatewayError, Problem

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "config" / "gateway.toml"
EXAMPLE = REPO / "config" / "gateway.example.toml"

MINIMAL = """
default_agent = "a"
[providers.p]
kind = "echo"
[agents.a]
provider = "p"
"""


def write(directory: Path, text: str, name: str = "gateway.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    return {problem.path: problem.message for problem in caught.value.problems}


# --- the shipped files ---------------------------------------------------------------


def test_default_config_runs_offline_with_only_webchat() -> None:
    config = load_config(DEFAULT, {})

    provider = config.providers["default"]
    assert provider.kind == "echo"
    assert provider.api_key is None
    assert config.notes.echo_fallback == ("default",)
    agent = config.agents[config.default_agent]
    assert agent.model == "echo"
    assert agent.tools == ["get_time"]
    assert agent.system_prompt.startswith("You are a helpful assistant")
    assert list(config.adapters.enabled()) == ["webchat"]
    assert set(config.adapters.configured()) == {"telegram", "discord", "slack", "webchat"}
    assert config.notes.adapters["telegram"] == "auto: TELEGRAM_BOT_TOKEN not set"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.storage.path == DEFAULT.parent / "data" / "gateway.db"
    assert config.notes.source == DEFAULT


def test_default_config_uses_openai_when_its_key_is_set() -> None:
    config = load_config(DEFAULT, {"OPENAI_API_KEY": "sk-test"})

    provider = config.providers["default"]
    assert provider.kind == "openai"
    assert provider.api_key is not None
    assert provider.api_key.get_secret_value() == "sk-test"
    assert provider.base_url == "https://api.openai.com/v1"
    assert config.agents["assistant"].model == "gpt-4o-mini"
    assert config.notes.echo_fallback == ()
    assert config.notes.providers["default"] == "auto: OPENAI_API_KEY set"


def test_default_config_honours_openai_model_and_base_url() -> None:
    env = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_MODEL": "gpt-4.1",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "ANTHROPIC_API_KEY": "ak-test",
    }
    config = load_config(DEFAULT, env)

    assert config.providers["default"].kind == "openai"  # OpenAI wins when both are set
    assert config.providers["default"].base_url == "http://127.0.0.1:9/v1"
    assert config.agents["assistant"].model == "gpt-4.1"


def test_default_config_falls_back_to_anthropic() -> None:
    config = load_config(DEFAULT, {"ANTHROPIC_API_KEY": "ak-test"})

    provider = config.providers["default"]
    assert provider.kind == "anthropic"
    assert provider.base_url == "https://api.anthropic.com"
    assert config.agents["assistant"].model == "claude-3-5-haiku-latest"


def test_default_config_port_comes_from_the_environment() -> None:
    config = load_config(DEFAULT, {"AGENT_GATEWAY_PORT": "9123"})

    assert config.server.port == 9123


def test_default_config_takes_a_postgresql_url_from_the_environment() -> None:
    assert load_config(DEFAULT, {}).storage.url is None
    env = {"AGENT_GATEWAY_DATABASE_URL": "postgresql://gw:s3cr3t@db:5432/gateway"}
    config = load_config(DEFAULT, env)

    assert config.storage.url is not None
    assert config.storage.url.get_secret_value() == env["AGENT_GATEWAY_DATABASE_URL"]
    shown = describe(config)
    assert "storage: postgresql://gw@db:5432/gateway" in shown
    assert "s3cr3t" not in shown


def test_default_config_takes_webhook_and_http_modes_from_the_environment() -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "123:abc",
        "TELEGRAM_MODE": "webhook",
        "TELEGRAM_WEBHOOK_SECRET": "tg-secret",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_MODE": "http",
        "SLACK_SIGNING_SECRET": "signing",
    }
    config = load_config(DEFAULT, env)

    telegram, slack = config.adapters.telegram, config.adapters.slack
    assert telegram is not None
    assert slack is not None
    assert (telegram.mode, slack.mode) == ("webhook", "http")
    assert telegram.enabled
    assert slack.enabled
    defaults = load_config(DEFAULT, {"TELEGRAM_BOT_TOKEN": "123:abc"})
    assert defaults.adapters.telegram is not None
    assert defaults.adapters.telegram.mode == "polling"


def test_telegram_token_enables_telegram() -> None:
    config = load_config(DEFAULT, {"TELEGRAM_BOT_TOKEN": "123:abc"})

    telegram = config.adapters.telegram
    assert telegram is not None
    assert telegram.enabled
    assert telegram.token is not None
    assert telegram.token.get_secret_value() == "123:abc"
    assert telegram.access == "allowlist"
    assert sorted(config.adapters.enabled()) == ["telegram", "webchat"]
    assert config.notes.adapters["telegram"] == "auto: TELEGRAM_BOT_TOKEN set"


def test_slack_auto_needs_the_credential_of_its_mode() -> None:
    only_bot = load_config(DEFAULT, {"SLACK_BOT_TOKEN": "xoxb-1"})
    both = load_config(DEFAULT, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})

    assert only_bot.adapters.slack is not None
    assert not only_bot.adapters.slack.enabled
    assert only_bot.notes.adapters["slack"] == "auto: SLACK_APP_TOKEN not set"
    assert both.adapters.slack is not None
    assert both.adapters.slack.enabled


def test_slack_http_mode_auto_needs_the_signing_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [adapters.slack]
        enabled = "auto"
        mode = "http"
        bot_token = "${SLACK_BOT_TOKEN:-}"
        signing_secret = "${SLACK_SIGNING_SECRET:-}"
        """,
    )
    off = load_config(path, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    on = load_config(path, {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"})

    assert off.adapters.slack is not None
    assert not off.adapters.slack.enabled
    assert on.adapters.slack is not None
    assert on.adapters.slack.enabled


def test_example_config_loads_and_enables_everything_with_tokens() -> None:
    assert load_config(EXAMPLE, {}).adapters.enabled().keys() == {"webchat"}
    env = {
        "TELEGRAM_BOT_TOKEN": "1:a",
        "DISCORD_BOT_TOKEN": "d",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_APP_TOKEN": "xapp-1",
    }
    config = load_config(EXAMPLE, env)

    assert config.adapters.enabled().keys() == {"telegram", "discord", "slack", "webchat"}
    assert config.adapters.discord is not None
    assert config.adapters.discord.allowed_users == ["123456789012345678"]
    assert config.adapters.slack is not None
    assert [p.title for p in config.adapters.slack.suggested_prompts] == [
        "What time is it?",
        "Summarise",
    ]
    assert [b.agent for b in config.bindings] == ["researcher", "researcher", "assistant"]
    assert config.agents["researcher"].compact_threshold == 60000


# --- interpolation -------------------------------------------------------------------


def test_interpolation_expands_defaults_and_escapes() -> None:
    sources: dict[str, str] = {}
    document = {
        "a": "x${A}y",
        "b": ["${B:-fallback}", "${EMPTY:-used}", "${EMPTY}"],
        "c": {"d": "$${A} costs $$5", "n": 5},
        "e": "${UNSET}",
        "f": "$HOME stays",
    }

    result = interpolate(document, {"A": "1", "EMPTY": ""}, sources=sources)

    assert result == {
        "a": "x1y",
        "b": ["fallback", "used", ""],
        "c": {"d": "${A} costs $5", "n": 5},
        "e": "",
        "f": "$HOME stays",
    }
    assert sources == {"a": "A", "b[0]": "B", "b[1]": "EMPTY", "b[2]": "EMPTY", "e": "UNSET"}


def test_malformed_reference_is_a_problem() -> None:
    problems: list[Problem] = []

    interpolate({"k": {"v": "${not-a-name}", "w": "${OPEN"}}, {}, problems=problems)

    assert [problem.path for problem in problems] == ["k.v", "k.w"]
    assert "${NAME:-default}" in problems[0].message


def test_interpolated_value_that_fails_validation_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[server]\nport = "${PORT_NOT_SET}"\n')

    message = problems_of(path)["server.port"]

    assert message.startswith("must be a whole number")
    assert "${PORT_NOT_SET}" in message


# --- problems ------------------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        default_agent = "asistant"
        shutdown_grace = -1
        [server]
        port = 99999
        [providers.p]
        kind = "openia"
        [agents.assistant]
        provider = "p"
        model = "m"
        max_iterations = 0
        tools = ["get_time", "serch"]
        [agents.helper]
        provider = "q"
        max_iterations = "many"
        [adapters.webchat]
        path = "chat"
        agent = "ghost"
        """,
    )

    problems = problems_of(path)

    assert problems == {
        "default_agent": 'no agent named "asistant"; did you mean "assistant"?',
        "shutdown_grace": "must be at least 0",
        "server.port": "must be at most 65535",
        "providers.p.kind": 'must be "openai", "anthropic" or "echo"; did you mean "openai"?',
        "agents.assistant.max_iterations": "must be a positive integer",
        "agents.assistant.tools[1]": 'no tool named "serch"; choose one of: get_time',
        "agents.helper.max_iterations": "must be a positive integer",
        "agents.helper.provider": 'no provider named "q"; choose one of: p',
        "adapters.webchat.path": 'must start with "/"',
        "adapters.webchat.agent": 'no agent named "ghost"; choose one of: assistant, helper',
    }


def test_problems_are_sorted_by_path_and_config_error_is_a_gateway_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_agent = "x"\nzeta = 1\nalpha = 2\n')

    with pytest.raises(GatewayError) as caught:
        load_config(path, {})

    assert isinstance(caught.value, ConfigError)
    paths = [problem.path for problem in caught.value.problems]
    assert paths == sorted(paths)
    assert str(caught.value).splitlines()[0] == f"{paths[0]}: {caught.value.problems[0].message}"


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [adapters.telegram]
        enabled = false
        tokn = "x"
        [adapters.whatsapp]
        token = "x"
        """,
    )

    problems = problems_of(path)

    assert problems["adapters.telegram.tokn"] == "unknown key; did you mean token?"
    assert problems["adapters.whatsapp"].startswith("unknown adapter; expected one of: telegram")


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_agent = "a"\n[server]\nport = = 1\n')

    problems = problems_of(path)

    assert list(problems) == [str(path)]
    assert problems[str(path)].startswith("invalid TOML at line 3, column 8")


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "absent.toml")

    assert "cannot read the configuration file" in problems[str(tmp_path / "absent.toml")]


def test_enabled_adapter_without_token_names_the_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [adapters.telegram]
        enabled = true
        token = "${TELEGRAM_BOT_TOKEN}"
        mode = "webhook"
        [adapters.discord]
        token = ""
        """,
    )

    problems = problems_of(path)

    required = "required when the adapter is enabled"
    assert problems == {
        "adapters.telegram.token": f"{required}; set TELEGRAM_BOT_TOKEN",
        "adapters.telegram.webhook_secret": (
            'required in mode = "webhook" when the adapter is enabled; '
            "set adapters.telegram.webhook_secret"
        ),
        "adapters.discord.token": f"{required}; set adapters.discord.token",
    }


def test_allowed_users_and_binding_ids_accept_integers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [adapters.webchat]
        access = "allowlist"
        allowed_users = [42, "u7"]
        [[bindings]]
        adapter = "telegram"
        chat = -100123
        agent = "a"
        """,
    )

    config = load_config(path, {})

    assert config.adapters.webchat is not None
    assert config.adapters.webchat.allowed_users == ["42", "u7"]
    assert config.bindings[0].chat == "-100123"


def test_bindings_are_validated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [[bindings]]
        adapter = "telegramm"
        agent = "a"
        [[bindings]]
        adapter = "discord"
        chat = "1"
        agent = "b"
        [[bindings]]
        adapter = "slack"
        """,
    )

    problems = problems_of(path)

    assert problems == {
        "bindings[0].adapter": (
            'must be "telegram", "discord", "slack" or "webchat"; did you mean "telegram"?'
        ),
        "bindings[1].chat": "discord bindings match on guild or channel; remove chat",
        "bindings[1].agent": 'no agent named "b"; choose one of: a',
        "bindings[2].agent": "required; add agent = ...",
    }


def test_system_prompt_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "p.md").write_text("Be brief.\n", encoding="utf-8")
    path = write(tmp_path, MINIMAL + 'system_prompt_file = "prompts/p.md"\n')

    config = load_config(path, {})

    assert config.agents["a"].system_prompt == "Be brief."
    assert config.agents["a"].system_prompt_file == "prompts/p.md"


def test_system_prompt_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        system_prompt_file = "missing.md"
        [agents.b]
        provider = "p"
        system_prompt = "x"
        system_prompt_file = "missing.md"
        """,
    )

    problems = problems_of(path)

    assert problems["agents.a.system_prompt_file"].startswith(
        f"cannot read {tmp_path / 'missing.md'}"
    )
    assert problems["agents.b.system_prompt_file"] == (
        "cannot be used together with system_prompt; keep one of the two"
    )


def test_model_falls_back_to_the_provider_default_or_is_required(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        default_agent = "a"
        [providers.with_default]
        kind = "openai"
        default_model = "m1"
        [providers.without]
        kind = "anthropic"
        [agents.a]
        provider = "with_default"
        [agents.b]
        provider = "without"
        """,
    )

    problems = problems_of(path)
    del problems["agents.b.model"]
    path.write_text(path.read_text().replace('provider = "without"', 'provider = "with_default"'))
    config = load_config(path, {})

    assert problems == {}
    assert config.agents["a"].model == config.agents["b"].model == "m1"


def test_auto_provider_rejects_settings_the_environment_provides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'default_agent = "a"\n[providers.p]\nkind = "auto"\napi_key = "k"\n'
        '[agents.a]\nprovider = "p"\n',
    )

    assert list(problems_of(path)) == ["providers.p.api_key"]


def test_custom_tool_names_can_be_declared(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'tools = ["get_time", "search"]\n')

    config = load_config(path, {}, known_tools={"get_time", "search"})

    assert config.agents["a"].tools == ["get_time", "search"]
    with pytest.raises(ConfigError):
        load_config(path, {})


def test_secrets_never_appear_in_repr_dumps_or_messages(tmp_path: Path) -> None:
    secret = "SeCrEt-9f8e7d"
    env = {"TELEGRAM_BOT_TOKEN": secret, "OPENAI_API_KEY": secret}
    config = load_config(DEFAULT, env)
    path = write(
        tmp_path,
        MINIMAL
        + """
        [server]
        port = "${TELEGRAM_BOT_TOKEN}"
        [adapters.telegram]
        mode = "${TELEGRAM_BOT_TOKEN}"
        tokn = "${TELEGRAM_BOT_TOKEN}"
        agent = "${TELEGRAM_BOT_TOKEN}"
        allowed_users = [1.5]
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path, env)

    assert secret not in repr(config)
    assert secret not in config.model_dump_json()
    assert len(caught.value.problems) >= 5
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_config_built_in_code_needs_no_loader() -> None:
    config = GatewayConfig.model_validate(
        {
            "default_agent": "a",
            "providers": {"p": {"kind": "echo"}},
            "agents": {"a": {"provider": "p", "model": "echo"}},
        }
    )

    assert config.providers["p"].default_model == "echo"
    assert config.adapters.enabled() == {}
    assert config.notes.source is None


# --- operator checks: URLs, unset variables, paths, allowlists from the environment ---


def test_storage_path_is_resolved_next_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    relative = write(tmp_path, MINIMAL + '[storage]\npath = "state/gw.db"\n', "a.toml")
    absolute = write(tmp_path, MINIMAL + '[storage]\npath = "/srv/gw.db"\n', "b.toml")

    assert load_config(relative, {}).storage.path == tmp_path / "state" / "gw.db"
    assert load_config(absolute, {}).storage.path == Path("/srv/gw.db")
    # No [storage] at all: the default file is beside the config too.
    default = load_config(write(tmp_path, MINIMAL, "c.toml"), {}).storage.path
    assert default == tmp_path / "data" / "gateway.db"


def test_malformed_base_urls_are_problems_without_echoing_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [providers.o]
        kind = "openai"
        api_key = "k"
        base_url = "api.openai.com/v1"
        [adapters.telegram]
        token = "t"
        base_url = "htp:/oops"
        [adapters.discord]
        token = "d"
        api_base = "https://discord.com/api/v10"
        gateway_url = "https://gateway.discord.gg"
        [adapters.slack]
        bot_token = "b"
        app_token = "a"
        api_url = "${SLACK_URL}"
        """,
    )

    problems = problems_of(path, {"SLACK_URL": "http://exa mple/api/"})

    assert set(problems) == {
        "providers.o.base_url",
        "adapters.telegram.base_url",
        "adapters.discord.gateway_url",
        "adapters.slack.api_url",
    }
    assert problems["providers.o.base_url"].startswith("not a valid URL; write it as https://")
    assert "wss://" in problems["adapters.discord.gateway_url"]
    assert "${SLACK_URL}" in problems["adapters.slack.api_url"]
    for message in problems.values():
        assert "oops" not in message
        assert "exa mple" not in message


def test_good_urls_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
        [providers.o]
        kind = "openai"
        api_key = "k"
        base_url = "http://127.0.0.1:11434/v1"
        [adapters.discord]
        token = "d"
        gateway_url = "ws://127.0.0.1:9999"
        """,
    )
    assert load_config(path, {}).providers["o"].base_url == "http://127.0.0.1:11434/v1"


def test_unset_variable_in_a_required_key_is_the_one_problem_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        default_agent = "${AGENT}"
        [providers.o]
        kind = "openai"
        api_key = "${OPENAI_KEY}"
        [agents.a]
        provider = "o"
        model = "${MODEL}"
        [providers.optional]
        kind = "openai"
        api_key = "${SPARE_KEY:-}"
        default_model = "m"
        """,
    )

    problems = problems_of(path, {"MODEL": ""})

    assert set(problems) == {"default_agent", "providers.o.api_key", "agents.a.model"}
    assert problems["providers.o.api_key"] == (
        "${OPENAI_KEY} is not set; export OPENAI_KEY=... before starting, "
        "or write ${OPENAI_KEY:-default} to give a default"
    )
    assert problems["default_agent"].startswith("${AGENT} is not set")
    assert problems["agents.a.model"].startswith("${MODEL} is not set")
    config = load_config(path, {"AGENT": "a", "OPENAI_KEY": "k", "MODEL": "m"})
    assert config.agents["a"].model == "m"


def test_allowlists_come_from_the_environment_in_the_default_config() -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "t",
        "TELEGRAM_ALLOWED_USERS": "42, 43,,",
        "DISCORD_BOT_TOKEN": "d",
        "DISCORD_ALLOWED_USERS": "123456789012345678",
    }

    config = load_config(DEFAULT, env)

    assert config.adapters.telegram is not None
    assert config.adapters.telegram.allowed_users == ["42", "43"]
    assert config.adapters.discord is not None
    assert config.adapters.discord.allowed_users == ["123456789012345678"]
    unset = load_config(DEFAULT, {"TELEGRAM_BOT_TOKEN": "t"}).adapters.telegram
    assert unset is not None
    assert unset.allowed_users == []
