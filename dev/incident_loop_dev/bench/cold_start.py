"""`incident-loop bench cold-start`: each function's init beside the floor it cannot go under.

Every function of the built template (.aws-sam/build/template.yaml) is imported from the built
artifact (a private copy of it, so a `make build` meanwhile changes nothing) in a fresh isolated
interpreter (`python -I -S`, the function's CodeUri, its layer and the runtime's boto3 on the path,
Lambda's variables and the function's own; see local/artifact.py).
Its init is the wall clock (and the process CPU time) of importing the handler module, measured
inside the child as lambda_host.py measures it.

The floor is a fresh interpreter with the same path and environment importing boto3,
aws_lambda_powertools, pydantic and psycopg, then every further module of those libraries (and of
their dependencies) that the function's import closure loads: the Powertools utilities it uses, the
X-Ray SDK when its Tracer is real, the parts of pydantic its models need (pydantic 2 imports lazily:
`import pydantic` alone loads no BaseModel). They are found by importing the handler once and
listing sys.modules. What the function pays beyond the floor is its own: its modules, the models
and resolvers they build at import, and any other library (PyYAML, PyJWT). A narrow floor, the four
packages and the Powertools modules only, is measured beside it: against it pydantic's model
machinery and the X-Ray SDK count as the function's. Function and floors run in rotating order,
round after round; times are medians, a ratio the median over rounds of init / floor in the round.

By default the environment is a deployed function's: the template's variables, POWERTOOLS_TRACE_DISABLED
unset, so every function whose handler uses the tracer traces (the template's `Tracing: Active`; the rule
is incident_loop.observability's).
`--trace-disabled` measures the same functions with POWERTOOLS_TRACE_DISABLED=true.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from incident_loop_dev.bench.docs import machine, replace_section
from incident_loop_dev.local.artifact import (
    BuildMissing,
    BuiltFunction,
    base_python,
    build_dir,
    built_functions,
    installed_runtime,
    lambda_environment,
    runtime_site,
)
from incident_loop_dev.local.template import load_template

ROOT = Path(__file__).resolve().parents[3]
BASE = ["boto3", "aws_lambda_powertools", "pydantic", "psycopg"]
# The top-level packages of those four distributions and of what they depend on (the X-Ray SDK and wrapt
# are Powertools' [tracer] extra): their modules count in the floor when the function loads them.
FLOOR_PACKAGES = frozenset({
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six",
    "aws_lambda_powertools", "aws_xray_sdk", "wrapt",
    "pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection",
    "psycopg", "psycopg_binary",
})
# Lambda sets these whatever the function's tracing mode (the X-Ray daemon runs beside every function).
LAMBDA_XRAY = {"AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}

# The child: standard library only. It loads what lambda_host.py loads before it imports the handler,
# so that both sides start from the same interpreter state; then times the imports it is given.
CHILD = r"""
import argparse, importlib, json, os, sys, time, traceback, uuid
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]
wall, cpu = time.perf_counter(), time.process_time()
for name in spec["modules"]:
    module = importlib.import_module(name)
if spec["attr"]:
    getattr(module, spec["attr"])
wall, cpu = (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000
answer = {"wall_ms": wall, "cpu_ms": cpu}
if spec["report"]:
    answer["modules"] = sorted(sys.modules)
sys.stdout.write("\n" + json.dumps(answer) + "\n")
"""


def function_environment(root: Path, fn: BuiltFunction, *, trace_disabled: bool) -> dict[str, str]:
    """What the deployed function sees: Lambda's variables and the template's (refs to resources by name)."""
    template = load_template(build_dir(root) / "template.yaml")
    parameters = template.get("Parameters", {})
    glob = (template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {}
    own = (template["Resources"][fn.logical_id]["Properties"].get("Environment") or {}).get("Variables") or {}
    variables = dict(LAMBDA_XRAY)
    for name, raw in {**glob, **own}.items():
        if isinstance(raw, dict) and isinstance(raw.get("Ref"), str):
            ref = raw["Ref"]
            raw = (parameters.get(ref) or {}).get("Default") or ref  # a resource: its logical id stands in
        variables[name] = raw if isinstance(raw, str | int | float) else f"bench-{name.lower()}"
    if trace_disabled:
        variables["POWERTOOLS_TRACE_DISABLED"] = "true"
    return lambda_environment(fn, {k: str(v) for k, v in variables.items()})


def run_child(fn: BuiltFunction, env: dict[str, str], modules: list[str], *, attr: str = "",
              report: bool = False, runtime: Path | None = None) -> dict[str, Any]:
    """Import `modules` in a fresh isolated interpreter on the function's path; its timings (and sys.modules)."""
    spec = {"path": fn.sys_path(runtime or runtime_site(ROOT)), "modules": modules, "attr": attr, "report": report}
    done = subprocess.run([base_python(), "-I", "-S", "-c", CHILD, json.dumps(spec)], env=env, cwd=fn.code_dir,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{fn.logical_id}: importing {modules[-1]} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def handler_modules(fn: BuiltFunction, env: dict[str, str], runtime: Path | None = None) -> list[str]:
    """sys.modules after the function's handler module is imported (and the handler looked up)."""
    module, _, attr = fn.handler.rpartition(".")
    return list(run_child(fn, env, [module], attr=attr, report=True, runtime=runtime)["modules"])


def floor_modules(loaded: list[str], base_loaded: list[str]) -> list[str]:
    """The floor's imports: the four base packages, then the floor packages' modules the function loaded
    that importing the four does not load already."""
    already = set(base_loaded)
    return BASE + [name for name in loaded if name.split(".")[0] in FLOOR_PACKAGES and name not in already]


def narrow_floor(floor: list[str]) -> list[str]:
    """The floor read narrowly: the four base packages and the Powertools modules only (pydantic as far as
    `import pydantic` loads it, no X-Ray SDK): the parts of the floor that are not Powertools count as init."""
    return [name for name in floor if name in BASE or name.startswith("aws_lambda_powertools.")]


def _paired(runs: dict[str, list[dict[str, float]]], side: str, key: str) -> float:
    """The median over rounds of init / `side`, each round's pair measured within moments of each other
    (a ratio of medians would compare runs minutes apart, under whatever else the machine was doing)."""
    return statistics.median(i[key] / f[key] for i, f in zip(runs["init"], runs[side], strict=True))


@contextmanager
def snapshot(root: Path) -> Iterator[Path]:
    """A private copy of root's build, as a root to measure: others may run `make build` meanwhile."""
    template = build_dir(root) / "template.yaml"
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        copy = Path(tmp) / ".aws-sam" / "build"
        for _ in range(6):
            built_functions(root)  # BuildMissing, saying to run `make build`, when there is none
            installed_runtime(runtime_site(root))  # or `make runtime`
            stamp = template.stat().st_mtime_ns
            shutil.rmtree(copy, ignore_errors=True)
            try:
                shutil.copytree(build_dir(root), copy, symlinks=True)
                if template.stat().st_mtime_ns == stamp:  # no build replaced it while it was copied
                    break
            except (shutil.Error, OSError):
                pass
            time.sleep(5)
        else:
            raise RuntimeError("the build kept changing while it was copied: measure again")
        yield Path(tmp)


def measure(root: Path, rounds: int, *, trace_disabled: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Every function's init beside its floors, from fresh interpreters: medians over `rounds` rounds."""
    with snapshot(root) as copy:
        return _measure(copy, rounds, trace_disabled=trace_disabled, only=only)


def _measure(root: Path, rounds: int, *, trace_disabled: bool, only: list[str] | None) -> dict[str, Any]:
    functions = {k: v for k, v in built_functions(root).items() if not only or k in only}
    plan: dict[str, dict[str, Any]] = {}
    for logical_id, fn in functions.items():
        env = function_environment(root, fn, trace_disabled=trace_disabled)
        loaded = handler_modules(fn, env)  # also the warm-up: bytecode written, page cache filled
        floor = floor_modules(loaded, run_child(fn, env, BASE, report=True)["modules"])
        module, _, attr = fn.handler.rpartition(".")
        sides = {"init": ([module], attr), "floor": (floor, ""), "narrow": (narrow_floor(floor), "")}
        for modules, name in sides.values():
            run_child(fn, env, modules, attr=name)
        plan[logical_id] = {"fn": fn, "env": env, "sides": sides, "runs": {side: [] for side in sides},
                            "tracing": any(name.startswith("aws_xray_sdk") for name in loaded)}
    for i in range(rounds):
        for entry in plan.values():
            order = list(entry["sides"])
            for side in order[i % 3:] + order[:i % 3]:  # each side goes first, second and last in turn
                modules, name = entry["sides"][side]
                entry["runs"][side].append(run_child(entry["fn"], entry["env"], modules, attr=name))
    result: dict[str, Any] = {"functions": {}}
    for logical_id, entry in plan.items():
        runs = entry["runs"]
        median = {(side, key): round(statistics.median(r[key] for r in runs[side]), 1)
                  for side in runs for key in ("wall_ms", "cpu_ms")}
        result["functions"][logical_id] = {
            "init_ms": median["init", "wall_ms"], "floor_ms": median["floor", "wall_ms"],
            "ratio": round(_paired(runs, "floor", "wall_ms"), 3),
            "init_cpu_ms": median["init", "cpu_ms"], "floor_cpu_ms": median["floor", "cpu_ms"],
            "cpu_ratio": round(_paired(runs, "floor", "cpu_ms"), 3),
            "narrow_floor_ms": median["narrow", "wall_ms"],
            "narrow_ratio": round(_paired(runs, "narrow", "wall_ms"), 3),
            "tracing": entry["tracing"], "floor_modules": entry["sides"]["floor"][0],
        }
    measured = result["functions"].values()
    result.update({
        "max_ratio": max((f["ratio"] for f in measured), default=None),
        "max_narrow_ratio": max((f["narrow_ratio"] for f in measured), default=None),
        "rounds": rounds, "machine": machine(),
        "configuration": "POWERTOOLS_TRACE_DISABLED=true" if trace_disabled else
        "deployed environment (template variables, POWERTOOLS_TRACE_DISABLED unset: tracing on)",
        "trace_disabled": trace_disabled,
    })
    return result


def _utilities(floor: list[str]) -> str:
    """The Powertools utilities (and X-Ray) a floor holds, in short: `batch, parser, event_handler, ...`."""
    names: list[str] = []
    for module in floor[len(BASE):]:
        parts = module.split(".")
        if parts[0] == "aws_xray_sdk":
            name = "aws_xray_sdk"
        elif len(parts) > 2 and parts[1] == "utilities":
            name = parts[2]
        elif len(parts) > 1 and parts[1] in ("event_handler",):
            name = "event_handler" + (".openapi" if "openapi" in parts else "")
        else:
            continue
        if name not in names and not name.startswith("_"):
            names.append(name)
    return ", ".join(sorted(names)) or "-"


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['configuration']}; median of {result['rounds']} rounds",
             f"{'function':26} {'init ms':>8} {'floor ms':>9} {'ratio':>6} {'cpu ratio':>9} {'narrow ms':>9}"
             f" {'narrow ratio':>12}  floor utilities"]
    for logical_id, f in sorted(result["functions"].items()):
        lines.append(f"{logical_id:26} {f['init_ms']:8.1f} {f['floor_ms']:9.1f} {f['ratio']:6.2f}"
                     f" {f['cpu_ratio']:9.2f} {f['narrow_floor_ms']:9.1f} {f['narrow_ratio']:12.2f}"
                     f"  {_utilities(f['floor_modules'])}")
    lines.append(f"max ratio {result['max_ratio']} (narrow floor: {result['max_narrow_ratio']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-loop bench cold-start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--trace-disabled", action="store_true", help="POWERTOOLS_TRACE_DISABLED=true everywhere")
    parser.add_argument("--function", action="append", help="only this logical id (repeatable)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--target", type=float, default=1.2, help="exit 1 when a ratio is above it")
    args = parser.parse_args(argv)
    try:
        result = measure(ROOT, args.rounds, trace_disabled=args.trace_disabled, only=args.function)
    except BuildMissing as missing:
        print(f"incident-loop bench cold-start: {missing}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else render(result))
    if args.write_docs:
        _write_docs(result)
    return 0 if result["max_ratio"] is not None and result["max_ratio"] <= args.target else 1


def _write_docs(r: dict[str, Any]) -> None:
    tracing = "off" if r["trace_disabled"] else "on"
    command = "incident-loop bench cold-start --json --write-docs" + (" --trace-disabled" * r["trace_disabled"])
    rows = "".join(
        f"| {lid} | {f['init_ms']} | {f['floor_ms']} | {f['ratio']:.2f}x | {f['cpu_ratio']:.2f}x |"
        f" {f['narrow_floor_ms']} | {f['narrow_ratio']:.2f}x | {_utilities(f['floor_modules'])} |\n"
        for lid, f in sorted(r["functions"].items())
    )
    text = textwrap.fill(
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {r['machine']} by `{command}` after `make build`:"
        f" {r['configuration']}. Each function's handler module imported from the built artifact in a fresh"
        " `python -I -S` interpreter (its CodeUri, the layer, the python3.11 runtime's boto3); the floor is a"
        " fresh interpreter on the same path and environment importing boto3, aws_lambda_powertools, pydantic,"
        " psycopg, then the further modules of those libraries (and their dependencies) that the function's"
        " import closure loads: its Powertools utilities, the X-Ray SDK when it traces, the parts of pydantic"
        " its models need. What is above the floor is the function's own: its modules, the models and resolvers"
        " they build, other libraries. The narrow floor keeps only the four packages and the Powertools modules"
        " (pydantic as far as `import pydantic` goes, which loads no BaseModel; no X-Ray SDK)."
        f" {r['rounds']} rounds, the function and its floors one after the other in rotating order; ms are"
        " medians, a ratio is the median over rounds of init / floor within the round (wall clock; CPU ratio:"
        " process time).", width=110, break_on_hyphens=False, break_long_words=False)
    section = (
        f"## Cold start beside the floor, tracing {tracing}\n\n{text}\n\n"
        "| function | init ms | floor ms | ratio | CPU ratio | narrow floor ms | narrow ratio | floor utilities |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"{rows}\nMax ratio {r['max_ratio']:.2f}x (narrow floor: {r['max_narrow_ratio']:.2f}x; goal: 1.20x).\n"
    )
    replace_section(section)


if __name__ == "__main__":
    raise SystemExit(main())
