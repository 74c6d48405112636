"""``callserver`` command line: serve, check, schema, call, campaign (and the offline demo).

Thin by design: parse arguments, call into the package, map results to exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from callserver.outbound_cli import add_commands as add_outbound_commands


def _cmd_serve(args: argparse.Namespace) -> int:
    from callserver import logs
    from callserver.config_holder import ConfigHolder
    from callserver.graph import ConfigError
    from callserver.graph.commands import explain
    from callserver.serve import serve
    from callserver.settings import Settings, SettingsError

    env = dict(os.environ)
    if args.config:
        env["CALLSERVER_CONFIG"] = args.config
    if args.log_format:
        env["CALLSERVER_LOG_FORMAT"] = args.log_format
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(f"callserver: bad setting: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, redact_numbers=settings.redact_numbers)
    if settings.webhook_secret is None and not settings.insecure_skip_signature:
        print(
            "callserver: OPENAI_WEBHOOK_SECRET is not set (whsec_...). Set it, or for local "
            "development only set CALLSERVER_INSECURE_SKIP_SIGNATURE=1.",
            file=sys.stderr,
        )
        return 2
    if settings.webhook_secret is not None:
        from callserver.webhooks.signature import SignatureVerifier

        try:
            SignatureVerifier(settings.webhook_secret.get_secret_value())
        except ValueError as exc:
            print(f"callserver: OPENAI_WEBHOOK_SECRET: {exc}", file=sys.stderr)
            return 2
    try:
        holder = ConfigHolder.load(settings.config_path)
    except ConfigError as exc:
        print(
            f"callserver: refusing to start, invalid config:\n{explain(exc, settings.config_path)}",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"callserver: cannot read config: {exc}", file=sys.stderr)
        return 1
    return serve(settings, holder, args.host, args.port)


def _cmd_check(args: argparse.Namespace) -> int:
    from callserver.graph.commands import check
    from callserver.webhooks.openai import SUBSCRIBE_EVENTS

    code, text = check(Path(args.path), SUBSCRIBE_EVENTS)
    print(text)
    return code


def _cmd_schema(args: argparse.Namespace) -> int:
    from callserver.graph.commands import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    if args.live:
        from callserver.demo_live import run_live_demo

        return asyncio.run(run_live_demo(Path(args.config or "config/frontdesk_live.yaml")))
    from callserver.demo import run_demo

    return asyncio.run(run_demo(Path(args.config or "config/agents.yaml")))


def _cmd_replay(args: argparse.Namespace) -> int:
    from callserver.testing.replay import run_replay_cli

    return run_replay_cli(
        args.cassettes, args.config, execute=args.execute, execute_all=args.execute_all
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--config", help="agent-graph YAML file or directory (CALLSERVER_CONFIG)")
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check", help="validate a config and summarise its graphs")
    check.add_argument("path", nargs="?", default="config")
    check.set_defaults(func=_cmd_check)

    schema = sub.add_parser("schema", help="print the JSON Schema of the config format")
    schema.set_defaults(func=_cmd_schema)

    demo = sub.add_parser("demo", help="watch one call end to end against the local fake OpenAI")
    demo.add_argument(
        "--config", help="default config/agents.yaml (config/frontdesk_live.yaml with --live)"
    )
    demo.add_argument("--live", action="store_true", help="play the call on GPT-Live")
    demo.set_defaults(func=_cmd_demo)

    replay = sub.add_parser("replay", help="replay recorded calls (cassettes) against a config")
    replay.add_argument("cassettes", nargs="+", help="cassette files or directories")
    replay.add_argument("--config", help="config to replay against (default CALLSERVER_CONFIG)")
    replay.add_argument(
        "--execute", action="append", default=[], metavar="TOOL", help="run TOOL for real"
    )
    replay.add_argument("--execute-all", action="store_true", help="run every tool for real")
    replay.set_defaults(func=_cmd_replay)

    add_outbound_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
