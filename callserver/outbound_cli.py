"""``callserver call`` and ``callserver campaign ...``: outbound calls against a running
instance, through its admin API (``--url`` / ``CALLSERVER_URL``, ``--token`` /
``CALLSERVER_ADMIN_TOKEN``). Thin: files are read and checked here (nothing is sent from a
file with an error), everything else is the server's.

Exit codes: 0 done; 1 the call or campaign did not go as asked (refused, failed, invalid
file); 2 bad usage or settings; 3 the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL_CAMPAIGN_STATES = ("completed", "cancelled")
POLL_S = 0.5
BAR_WIDTH = 30
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _client(args: argparse.Namespace) -> httpx.Client:
    token = args.token or os.environ.get("CALLSERVER_ADMIN_TOKEN")
    if not token:
        raise CliError("no admin token: pass --token or set CALLSERVER_ADMIN_TOKEN", 2)
    url = (args.url or os.environ.get("CALLSERVER_URL") or DEFAULT_URL).rstrip("/")
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout
    )


def _request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {client.base_url}: {type(exc).__name__}", 3) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"error": response.text[:300]}
    return data if isinstance(data, dict) else {"error": str(data)[:300]}


def _print(args: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=2) if args.json else data)


# ---- callserver call -------------------------------------------------------------------------


def _variables(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--var {pair!r}: write NAME=VALUE", 2)
        values[name.strip()] = value
    return values


def cmd_call(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to, "graph": args.graph, "variables": _variables(args.var)}
    if args.from_:
        body["from"] = args.from_
    if args.dialer:
        body["dialer"] = args.dialer
    with _client(args) as client:
        response = _request(client, "POST", "/admin/calls", json=body)
        data = _json(response)
        if response.status_code == 400:
            raise CliError(f"refused ({data.get('field')}): {data.get('error')}")
        if response.status_code >= 400 and "call" not in data:
            raise CliError(f"HTTP {response.status_code}: {data.get('error')}")
        call = data.get("call", data)
        print(f"call {call.get('id')}: {call.get('status')}", file=sys.stderr)
        if response.status_code >= 400:
            raise CliError(f"not placed ({call.get('outcome')}): {data.get('error')}")
        if not args.wait:
            if args.json:
                _print(args, call)
            return 0
        call = _follow_call(client, str(call["id"]), args)
    if args.json:
        _print(args, call)
    outcome = call.get("outcome")
    print(f"call {call.get('id')}: ended, outcome {outcome}", file=sys.stderr)
    return 0 if outcome in ("completed", "voicemail") else 1


def _follow_call(client: httpx.Client, call_id: str, args: argparse.Namespace) -> dict[str, Any]:
    shown = None
    while True:
        response = _request(client, "GET", f"/admin/calls/{call_id}")
        call = _json(response)
        if response.status_code != 200:
            raise CliError(f"HTTP {response.status_code}: {call.get('error')}")
        status = call.get("status")
        if status != shown:
            shown = status
            print(f"call {call_id}: {status}", file=sys.stderr)
        if status == "ended":
            return call
        time.sleep(POLL_S)


# ---- callserver campaign ---------------------------------------------------------------------


def _day_list(text: str) -> list[str]:
    days: list[str] = []
    for part in text.lower().split(","):
        start, sep, end = part.strip().partition("-")
        if start not in DAYS or (sep and end not in DAYS):
            raise CliError(f"--days {text!r}: use e.g. mon-fri or mon,wed,fri", 2)
        if sep:
            first, last = DAYS.index(start), DAYS.index(end)
            days += [DAYS[(first + n) % 7] for n in range((last - first) % 7 + 1)]
        else:
            days.append(start)
    return days


def _retry(specs: list[str]) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    for spec in specs:
        outcome, sep, rule = spec.partition("=")
        attempts, slash, backoff = rule.partition("/")
        if not sep or not attempts.isdigit():
            raise CliError(
                f"--retry {spec!r}: write OUTCOME=MAX_ATTEMPTS[/BACKOFF], e.g. busy=3/10m", 2
            )
        policy[outcome] = {"max_attempts": int(attempts)}
        if slash:
            policy[outcome]["backoff"] = backoff
    return policy


def cmd_campaign_start(args: argparse.Namespace) -> int:
    from callserver.outbound.campaigns.files import CampaignFileError, read_campaign_file
    from callserver.outbound.dnc import DncError, read_dnc_file

    try:
        parsed = read_campaign_file(args.file, args.format)
    except CampaignFileError as exc:
        print(f"callserver: {exc}\nnothing was sent, nothing dialed", file=sys.stderr)
        return 1
    body: dict[str, Any] = {
        "graph": args.graph,
        "rows": parsed.rows,
        "calls_per_minute": args.calls_per_minute,
        "max_concurrent": args.max_concurrent,
        "name": args.name or Path(args.file).name,
    }
    if args.window:
        start, sep, end = args.window.partition("-")
        if not sep:
            raise CliError(f"--window {args.window!r}: write START-END, e.g. 09:00-20:00", 2)
        body["window"] = {"start": start, "end": end}
        if args.days:
            body["window"]["days"] = _day_list(args.days)
    for key, value in (("timezone", args.timezone), ("from", args.from_), ("dialer", args.dialer)):
        if value:
            body[key] = value
    if args.retry:
        body["retry"] = _retry(args.retry)
    if args.dnc:
        try:
            body["do_not_call"] = sorted(read_dnc_file(Path(args.dnc)))
        except DncError as exc:
            raise CliError(f"--dnc: {exc}", 2) from None
    with _client(args) as client:
        response = _request(client, "POST", "/admin/campaigns", json=body)
        data = _json(response)
        if response.status_code == 400:
            for error in data.get("errors") or [data]:
                line = parsed.line_of(error.get("row"))
                where = f"{args.file}:{line} " if line else ""
                print(
                    f"callserver: {where}{error.get('column') or error.get('field')}: "
                    f"{error.get('message') or error.get('error')}",
                    file=sys.stderr,
                )
            print("campaign refused: nothing dialed", file=sys.stderr)
            return 1
        if response.status_code != 201:
            raise CliError(f"HTTP {response.status_code}: {data.get('error')}")
        campaign_id = str(data["id"])
        print(f"campaign {campaign_id}: {data['total']} rows, {data['state']}", file=sys.stderr)
        if args.json and not args.follow:
            _print(args, data)
        if not args.follow:
            print(campaign_id)
            return 0
        try:
            data = _follow_campaign(client, campaign_id)
        except KeyboardInterrupt:
            print(f"\nstopped following; campaign {campaign_id} goes on", file=sys.stderr)
            return 0
    if args.json:
        _print(args, data)
    return 0 if data.get("state") == "completed" else 1


def progress_line(data: dict[str, Any]) -> str:
    """``[#####-----]  45/100  45%  completed 30  busy 5 ...  in flight 3``."""
    total = int(data.get("total") or 0)
    finished = int(data.get("finished") or 0)
    share = finished / total if total else 1.0
    bar = "#" * int(share * BAR_WIDTH)
    outcomes = "  ".join(f"{k} {v}" for k, v in (data.get("outcomes") or {}).items())
    return (
        f"[{bar:<{BAR_WIDTH}}] {finished:>{len(str(total))}}/{total} {share:4.0%}  "
        f"{data.get('state')}  in flight {data.get('in_flight', 0)}  {outcomes}"
    ).rstrip()


def _follow_campaign(client: httpx.Client, campaign_id: str) -> dict[str, Any]:
    tty = sys.stderr.isatty()
    last_print = 0.0
    while True:
        response = _request(client, "GET", f"/admin/campaigns/{campaign_id}")
        data = _json(response)
        if response.status_code != 200:
            raise CliError(f"HTTP {response.status_code}: {data.get('error')}")
        final = data.get("state") in FINAL_CAMPAIGN_STATES
        line = progress_line(data)
        if tty:
            print(f"\r{line}\x1b[K", end="\n" if final else "", file=sys.stderr, flush=True)
        elif final or time.monotonic() - last_print >= 5:
            last_print = time.monotonic()
            print(line, file=sys.stderr, flush=True)
        if final:
            return data
        if data.get("state") == "paused" and data.get("reason"):
            print(f"\ncampaign paused: {data['reason']}", file=sys.stderr)
            return data
        time.sleep(POLL_S)


def cmd_campaign_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.campaign_id is None:
            response = _request(client, "GET", "/admin/campaigns")
            data = _json(response)
            for item in data.get("campaigns", []):
                print(f"{item['id']}  {item.get('name') or '-'}  {progress_line(item)}")
            return 0 if response.status_code == 200 else 1
        response = _request(client, "GET", f"/admin/campaigns/{args.campaign_id}")
        data = _json(response)
    if response.status_code != 200:
        raise CliError(f"HTTP {response.status_code}: {data.get('error')}")
    if args.json:
        _print(args, data)
    else:
        print(f"{data['id']}  {data.get('name') or '-'}  graph {data['graph']}")
        print(progress_line(data))
        if data.get("reason"):
            print(f"reason: {data['reason']}")
    return 0


def cmd_campaign_action(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = _request(client, "POST", f"/admin/campaigns/{args.campaign_id}/{args.action}")
    data = _json(response)
    if response.status_code != 200:
        raise CliError(f"HTTP {response.status_code}: {data.get('error')}")
    print(f"campaign {data['id']}: {data['state']}")
    return 0


def cmd_campaign_export(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = _request(
            client,
            "GET",
            f"/admin/campaigns/{args.campaign_id}/results",
            params={"format": args.format},
        )
    if response.status_code != 200:
        raise CliError(f"HTTP {response.status_code}: {_json(response).get('error')}")
    if args.output:
        Path(args.output).write_text(response.text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(response.text)
    return 0


# ---- wiring ----------------------------------------------------------------------------------


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help=f"callserver's base URL (CALLSERVER_URL, default {DEFAULT_URL})"
    )
    parser.add_argument("--token", help="the admin token (CALLSERVER_ADMIN_TOKEN)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except CliError as exc:
            print(f"callserver: {exc}", file=sys.stderr)
            return exc.code

    return run


def add_commands(sub: Any) -> None:
    """Add ``call`` and ``campaign`` to the ``callserver`` command line."""
    call = sub.add_parser("call", help="place one outbound call through a running instance")
    call.add_argument("to", help="E.164 number, e.g. +14155550123")
    call.add_argument("--graph", required=True)
    call.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    call.add_argument("--from", dest="from_", metavar="NUMBER", help="caller number (E.164)")
    call.add_argument("--dialer", choices=["live", "twilio"])
    call.add_argument("--no-wait", dest="wait", action="store_false", help="do not follow it")
    _connection(call)
    call.set_defaults(func=_run(cmd_call))

    campaign = sub.add_parser("campaign", help="outbound campaigns on a running instance")
    actions = campaign.add_subparsers(dest="campaign_command", required=True)
    start = actions.add_parser("start", help="start a campaign from a CSV or JSON Lines file")
    start.add_argument("file")
    start.add_argument("--graph", required=True)
    start.add_argument("--format", choices=["csv", "jsonl"], help="default: by file extension")
    start.add_argument(
        "--cpm",
        dest="calls_per_minute",
        type=float,
        default=10.0,
        help="calls per minute (default 10)",
    )
    start.add_argument("--max-concurrent", type=int, default=5, help="calls at once (default 5)")
    start.add_argument("--window", help="calling hours in the callee's time, e.g. 09:00-20:00")
    start.add_argument("--days", help="days the window opens, e.g. mon-fri")
    start.add_argument("--timezone", help="for rows without one (default: the graph's)")
    start.add_argument("--retry", action="append", default=[], metavar="OUTCOME=N[/BACKOFF]")
    start.add_argument("--dnc", help="a do-not-call file (one number per line)")
    start.add_argument("--name")
    start.add_argument("--from", dest="from_", metavar="NUMBER")
    start.add_argument("--dialer", choices=["live", "twilio"])
    start.add_argument(
        "--no-follow", dest="follow", action="store_false", help="print the id and return"
    )
    _connection(start)
    start.set_defaults(func=_run(cmd_campaign_start))

    status = actions.add_parser("status", help="progress of one campaign (or all)")
    status.add_argument("campaign_id", nargs="?")
    _connection(status)
    status.set_defaults(func=_run(cmd_campaign_status))
    for action in ("pause", "resume", "cancel"):
        parser = actions.add_parser(action, help=f"{action} a campaign")
        parser.add_argument("campaign_id")
        _connection(parser)
        parser.set_defaults(func=_run(cmd_campaign_action), action=action)
    export = actions.add_parser("export", help="per-row results as JSON Lines or CSV")
    export.add_argument("campaign_id")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    _connection(export)
    export.set_defaults(func=_run(cmd_campaign_export))
