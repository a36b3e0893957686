"""`incident-loop`: migrate the catalog, run the application locally, run benchmarks."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _migrate(args: argparse.Namespace) -> int:
    from incident_loop import migrate

    applied = migrate.apply(args.database_url, Path(args.dir) if args.dir else None)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ", up to date"))
    return 0


def _run(args: argparse.Namespace) -> int:
    # Quiet logs and no EMF on stdout unless asked: the story is the output.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "DEBUG" if args.verbose else "ERROR")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from incident_loop import migrate
    from incident_loop.local.demo import StoryRunner, render
    from incident_loop.local.runner import LocalApp
    from incident_loop.local.services import moto_server, postgres

    with postgres(os.environ.get("DATABASE_URL"), ROOT / ".pgdata") as database_url, moto_server() as endpoint:
        migrate.apply(database_url)
        app = LocalApp(ROOT, endpoint, database_url)
        app.provision()
        story = StoryRunner(app, f"tenant-demo-{uuid.uuid4().hex[:6]}", ROOT / "events").run()
    if args.json:
        print(json.dumps(story.to_dict(), indent=2, default=str))
    else:
        print(render(story))
    return 0 if story.graduation.get("graduated") and not any(story.dead_letters.values()) else 1


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    if args.what == "grouping":
        from incident_loop.bench import grouping

        return int(grouping.main(rest) or 0)
    raise SystemExit(f"unknown benchmark {args.what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="apply pending migrations (advisory lock, checksums)")
    m.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    m.add_argument("--dir", help="migrations folder (default: the repository's migrations/)")
    r = sub.add_parser("run", help="run the loop locally on moto + PostgreSQL and print each loop")
    r.add_argument("--json", action="store_true", help="print the loop statuses as JSON")
    r.add_argument("--verbose", action="store_true", help="show the functions' logs")
    b = sub.add_parser("bench", help="benchmarks that print figures")
    b.add_argument("what", choices=["grouping"])
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"migrate": _migrate, "run": _run}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
