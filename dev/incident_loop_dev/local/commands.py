"""`incident-loop local invoke | start-api | token` and `incident-loop token issue`: sam local's verbs, no Docker.

`local invoke` and `local start-api` run the functions from the built artifact (`make build`), on
moto's server and PostgreSQL (DATABASE_URL, else the embedded server in .pgdata). Migrations run
as the database's owner (the URL given); the functions connect as the function role, which row-level
security binds to one tenant per transaction.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from incident_loop.auth.tokens import OPERATOR, issue


def add_parsers(sub: Any) -> None:
    local = sub.add_parser("local", help="run the built application locally (sam local's verbs, without Docker)")
    verbs = local.add_subparsers(dest="verb", required=True)
    inv = verbs.add_parser("invoke", help="run one function from .aws-sam/build with an event; response on stdout")
    inv.add_argument("function", help="the function's logical id in template.yaml, e.g. LoopApiFunction")
    inv.add_argument("-e", "--event", required=True, help="event JSON file ('-' for stdin)")
    inv.add_argument("--env-vars", help="JSON file: {\"LogicalId\": {\"VAR\": \"value\"}, \"Parameters\": {...}}")
    api = verbs.add_parser("start-api", help="serve the template's API (through its authorizer) and run every "
                                             "queue consumer")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=3000)
    api.add_argument("--env-vars", help="as for invoke")
    tok = verbs.add_parser("token", help="a bearer token `local start-api` accepts (the last line printed)")
    _token_arguments(tok)
    issue_ = sub.add_parser("token", help="tokens for a deployed stack").add_subparsers(dest="verb", required=True)
    dep = issue_.add_parser("issue", help="sign a token with the stack's ApiSigningSecret (Secrets Manager)")
    _token_arguments(dep)
    dep.add_argument("--secret-arn", required=True, help="the stack's ApiSigningSecretArn output")


def _token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--role", choices=[OPERATOR], default=None)
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="seconds the token is valid (default 12 h)")
    parser.add_argument("--subject", help="who the token is for (default: <tenant>/client)")


@contextlib.contextmanager
def _database(root: Path) -> Iterator[tuple[str, str]]:
    """(admin URL, function-role URL) with migrations applied."""
    from incident_loop import migrate
    from incident_loop_dev.local.services import function_role_url, postgres

    with postgres(os.environ.get("DATABASE_URL"), root / ".pgdata") as admin_url:
        migrate.apply(admin_url, root / "migrations")
        yield admin_url, function_role_url(admin_url)


@contextlib.contextmanager
def _cloud(root: Path, env_vars: str | None, logs: Any) -> Iterator[Any]:
    from incident_loop_dev.local.cloud import LocalCloud, read_env_vars
    from incident_loop_dev.local.services import moto_server

    with _database(root) as (admin_url, function_url), moto_server() as endpoint:
        cloud = LocalCloud(root, admin_url, function_url, endpoint,
                           env_vars=read_env_vars(Path(env_vars) if env_vars else None), logs=logs)
        try:
            yield cloud
        finally:
            cloud.close()


def invoke(args: argparse.Namespace, root: Path) -> int:
    from incident_loop_dev.local.artifact import InvocationError

    event = json.loads(sys.stdin.read() if args.event == "-" else Path(args.event).read_text())
    # Everything but the response goes to stderr, as `sam local invoke` does.
    with contextlib.redirect_stdout(sys.stderr), _cloud(root, args.env_vars, sys.stderr) as cloud:
        try:
            response: Any = cloud.invoke(args.function, event)
            failed = False
        except InvocationError as exc:
            response = {k: exc.payload.get(k) for k in ("errorType", "errorMessage", "stackTrace")}
            failed = True
    print(json.dumps(response, default=str))
    return 1 if failed else 0


def start_api(args: argparse.Namespace, root: Path) -> int:
    from incident_loop_dev.local.cloud import QueuePollers
    from incident_loop_dev.local.gateway import LocalApiServer

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.redirect_stdout(sys.stderr), _cloud(root, args.env_vars, sys.stderr) as cloud:
        pollers = QueuePollers(cloud)
        server = LocalApiServer((args.host, args.port), cloud, pollers)
        pollers.start()
        host, port = server.server_address[:2]
        for fn in cloud.app.spec.functions.values():
            for schedule in fn.schedules:
                print(f"scheduled {fn.logical_id} ({schedule}): POST /_local/functions/{fn.logical_id}/invoke")
        print(f"listening on http://{host}:{port}", file=sys.__stdout__, flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            pollers.stop()
    return 0


def local_token(args: argparse.Namespace, root: Path) -> int:
    from incident_loop_dev.local.keys import local_keys
    from incident_loop_dev.local.services import postgres

    with contextlib.redirect_stdout(sys.stderr), postgres(os.environ.get("DATABASE_URL"), root / ".pgdata") as url:
        keys = local_keys(url)
    print(issue(keys, args.tenant, args.role, ttl_s=args.ttl, subject=args.subject))
    return 0


def deployed_token(args: argparse.Namespace) -> int:
    import boto3

    from incident_loop.auth.tokens import KeySet

    document = boto3.client("secretsmanager").get_secret_value(SecretId=args.secret_arn)["SecretString"]
    print(issue(KeySet.parse(document), args.tenant, args.role, ttl_s=args.ttl, subject=args.subject))
    return 0


def run(args: argparse.Namespace, root: Path) -> int:
    if args.command == "token":
        return deployed_token(args)
    return {"invoke": invoke, "start-api": start_api, "token": local_token}[args.verb](args, root)
