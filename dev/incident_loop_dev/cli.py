"""`incident-loop`: migrate the catalog, run the application locally, run benchmarks."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _migrate(args: argparse.Namespace) -> int:
    from incident_loop import migrate

    applied = migrate.apply(args.database_url, Path(args.dir) if args.dir else None)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ", up to date"))
    return 0


def _run(args: argparse.Namespace) -> int:
    # Quiet logs and no EMF on stdout unless asked: the story is the output.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "DEBUG" if args.verbose else "ERROR")
    from incident_loop import migrate
    from incident_loop_dev.local.demo import StoryRunner, render
    from incident_loop_dev.local.runner import LocalApp
    from incident_loop_dev.local.services import function_role_url, moto_server, postgres

    with postgres(os.environ.get("DATABASE_URL"), ROOT / ".pgdata") as database_url, moto_server() as endpoint:
        migrate.apply(database_url)
        app = LocalApp(ROOT, endpoint, function_role_url(database_url))  # functions: not the owner
        app.provision()
        story = StoryRunner(app, f"tenant-demo-{uuid.uuid4().hex[:6]}", ROOT / "events").run()
    if args.json:
        print(json.dumps(story.to_dict(), indent=2, default=str))
    else:
        print(render(story))
    return 0 if story.graduation.get("graduated") and not any(story.dead_letters.values()) else 1


def _backfill(args: argparse.Namespace) -> int:
    from incident_loop_dev import backfill

    paths = backfill.files_of(Path(args.dir) if args.dir else None, Path(args.file) if args.file else None)
    if not paths:
        print("no .json/.jsonl files found", file=sys.stderr)
        return 2
    with contextlib.redirect_stdout(sys.stderr):
        summary = backfill.run(paths, args.database_url, dry_run=args.dry_run, verify=args.verify,
                               batch_size=args.batch_size, progress=not args.no_progress)
    report = summary.to_dict()
    if args.verify:
        report = {k: report[k] for k in ("read", "verified", "missing", "mismatched", "invalid")}
    elif args.dry_run:
        report = {k: report[k] for k in ("read", "already_stored", "invalid")}
    else:
        report = {k: report[k] for k in ("read", "inserted", "duplicates", "invalid")}
    print(json.dumps(report, indent=2))
    failed = report.get("invalid") or report.get("missing") or report.get("mismatched")
    return 1 if failed else 0


def _sync_catalog(args: argparse.Namespace) -> int:
    from incident_loop.catalog.lookup import Catalog
    from incident_loop.catalog.sync import sync
    from incident_loop.db import connect

    catalog = Catalog.from_file(Path(args.file)) if args.file else Catalog.from_file()
    with connect(args.database_url) as conn:
        new = sync(conn, catalog)
        conn.commit()
    print(f"synced {len(catalog.entries)} catalog entries: {new} new, {len(catalog.entries) - new} already stored")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from incident_loop_dev import synth

    # Metrics flushed along the way (CloudWatch EMF) are log lines: they go to stderr, the report to stdout.
    with contextlib.redirect_stdout(sys.stderr):
        report = synth.run(args.count, args.tenants, validate=args.validate, dsn=args.database_url,
                           progress=not args.no_progress)
    print(json.dumps(report, indent=2))
    return 0 if report.get("valid", True) and set(report["results"]) == {"stored"} else 1


def _benchmarks() -> list[str]:
    """Every module of bench/ with a main(): its name, dashed, is the benchmark's name on the command line."""
    import pkgutil

    from incident_loop_dev import bench

    return sorted(info.name.replace("_", "-") for info in pkgutil.iter_modules(bench.__path__)
                  if "\ndef main(" in (Path(bench.__path__[0]) / f"{info.name}.py").read_text())


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    module = args.what.replace("-", "_")  # each choice names its module in bench/
    bench = __import__(f"incident_loop_dev.bench.{module}", fromlist=["main"])
    return int(bench.main(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    parser = argparse.ArgumentParser(prog="incident-loop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="apply pending migrations (advisory lock, checksums)")
    m.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    m.add_argument("--dir", help="migrations folder (default: the repository's migrations/)")
    r = sub.add_parser("run", help="run the loop locally on moto + PostgreSQL and print each loop")
    r.add_argument("--json", action="store_true", help="print the loop statuses as JSON")
    r.add_argument("--verbose", action="store_true", help="show the functions' logs")
    bf = sub.add_parser("backfill-provenance", help="load historical CostSim provenance from JSON/JSONL files")
    source = bf.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", help="every .json/.jsonl/.ndjson file under this folder")
    source.add_argument("--file", help="one .json or .jsonl file")
    bf.add_argument("--dry-run", action="store_true", help="read and validate only; write nothing")
    bf.add_argument("--verify", action="store_true", help="check the stored rows against the files")
    bf.add_argument("--batch-size", type=int, default=5000)
    bf.add_argument("--no-progress", action="store_true")
    bf.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    sc = sub.add_parser("sync-catalog", help="load the error catalog (new versions) into error_catalog")
    sc.add_argument("--file", help="catalog file (default: the shipped incident_loop/catalog/errors.yaml)")
    sc.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    sy = sub.add_parser("synth-failures", help="synthetic failures through the real persistence path")
    sy.add_argument("--count", type=int, default=1000)
    sy.add_argument("--tenants", type=int, default=5)
    sy.add_argument("--validate", action="store_true", help="check every failure was stored as generated")
    sy.add_argument("--no-progress", action="store_true")
    sy.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    # Its own -h: `bench NAME --help` is the benchmark's help (its flags), `bench --help` the list.
    b = sub.add_parser("bench", help="benchmarks that print figures", add_help=False,
                       description="A benchmark's own options: incident-loop bench NAME --help")
    b.add_argument("-h", "--help", action="store_true", help="this help, or with NAME the benchmark's own")
    b.add_argument("what", nargs="?", choices=_benchmarks(), metavar="NAME", help=", ".join(_benchmarks()))
    from incident_loop_dev import workflow
    from incident_loop_dev.local import commands as local_commands

    local_commands.add_parsers(sub)
    workflow.add_parser(sub)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        if args.what is None:
            b.print_help()
            return 0 if args.help else 2
        return _bench(args, ["--help", *rest] if args.help else rest)
    if args.command in ("local", "token") and not rest:
        return local_commands.run(args, ROOT)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "workflow":
        return workflow.main(args, ROOT)
    commands = {"migrate": _migrate, "run": _run, "backfill-provenance": _backfill, "synth-failures": _synth,
                "sync-catalog": _sync_catalog}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
