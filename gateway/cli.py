"""The `agent-gateway` command: `run` serves, `check` validates and shows what would start,
`doctor` tries every remote the configuration points at.

Exit codes: 0 success, 1 the gateway failed (or a doctor check did), 2 invalid configuration or
command line. An invalid configuration is reported as one ``dotted.path: message`` line
per problem on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from gateway.config import GatewayConfig
from gateway.config_loader import load_config
from gateway.describe import announcement, describe
from gateway.errors import ConfigError, GatewayError
from gateway.startup import exposure_warnings
from runtime.errors import StorageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Serve = Callable[[GatewayConfig], Coroutine[Any, Any, object]]

# Client libraries that log request URLs at INFO; Telegram's URLs contain the bot token.
_URL_LOGGERS = ("httpx", "httpcore")


def default_config_path() -> Path:
    """config/gateway.toml in the working directory, else the one beside the package."""
    local = Path("config/gateway.toml")
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[1] / "config" / "gateway.toml"


def main(argv: list[str] | None = None) -> int:
    """Run the command line in ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    path: Path = args.config or default_config_path()
    try:
        config = load_config(path, os.environ)
    except ConfigError as exc:
        if args.command == "doctor":  # the report's first check, in its format
            for problem in exc.problems:
                _write(sys.stdout, f"FAIL config: {problem}")
        else:
            _report(exc)
        return EXIT_USAGE
    if args.command == "check":
        _write(sys.stdout, describe(config))
        for line in exposure_warnings(config):
            _write(sys.stdout, line)
        return EXIT_OK
    if args.command == "doctor":
        return _doctor(config)
    return _run(config)


def version() -> str:
    """The installed distribution's version ("unknown" when run from a bare checkout)."""
    try:
        return metadata.version("agent-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-gateway",
        description="Put LLM agents on Discord, Telegram, Slack and a local web chat.",
    )
    parser.add_argument("--version", action="version", version=f"agent-gateway {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "start the gateway"),
        ("check", "validate the configuration and show what would start"),
        ("doctor", "try the storage, every enabled adapter's credentials and every provider"),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "-c",
            "--config",
            type=Path,
            metavar="FILE",
            help="configuration file (default: config/gateway.toml)",
        )
    return parser


def _run(config: GatewayConfig) -> int:
    logging.basicConfig(
        level=config.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for line in announcement(config):
        _write(sys.stdout, line)
    sys.stdout.flush()
    for line in exposure_warnings(config):
        _write(sys.stderr, line)
    # Imported here so `check` works without the serving stack, and so the CLI does
    # not import every adapter library just to print its help.
    serve: Serve = importlib.import_module("gateway.app").serve
    try:
        asyncio.run(serve(config))
    except ConfigError as exc:
        _report(exc)
        return EXIT_USAGE
    except (GatewayError, StorageError) as exc:
        # Start-up failures (port in use, unopenable storage) are one sentence naming
        # the fix; a traceback would bury it.
        _write(sys.stderr, f"agent-gateway: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def _doctor(config: GatewayConfig) -> int:
    # Imported here: the checks pull in the serving stack and httpx.
    diagnose = importlib.import_module("gateway.doctor").diagnose
    checks = asyncio.run(diagnose(config))
    for check in checks:
        _write(sys.stdout, str(check))
    return EXIT_OK if all(check.ok for check in checks) else EXIT_FAILED


def _report(exc: ConfigError) -> None:
    for problem in exc.problems:
        _write(sys.stderr, str(problem))


def _write(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
