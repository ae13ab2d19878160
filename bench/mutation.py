#!/usr/bin/env python3
"""Mutation testing of the judging code with mutmut: kill rate per module and every survivor.

    python bench/mutation.py                            # the whole judging list (JUDGING)
    python bench/mutation.py analyzer/oauth/checks.py   # the modules you touched
    python bench/mutation.py analyzer/cli.py::main      # some functions of a module only

mutmut (pinned in the ``mutation`` extra; installed into the project's ``.venv`` on first use)
copies the project into ``mutants/`` (git-ignored), writes every mutant of the named modules into
that copy behind a switch, and runs, per mutant, the tests that reach the mutated function
(``[tool.mutmut]`` in pyproject.toml says which tests). This script:

- makes the copy what the tests import: ``PYTHONPATH`` names ``mutants/`` first, so even test
  subprocesses (``python -m analyzer ...``) import the mutants. The project's editable install
  points back at the unmutated tree; had it won, every mutant would survive. After the run it
  checks, in a fresh interpreter, that the judged modules and the compiled native walk
  (``analyzer/sources/_walk*.so``) are imported from ``mutants/``;
- makes ``../shared`` (the public captures) visible from the copy via ``OAUTH_ANALYZER_SHARED``
  (``mutants/`` has no ``../shared`` beside it);
- reads ``bench/equivalent-mutants.txt``: reviewed mutants that cannot change behaviour, each
  with its change and a reason. They are listed apart and the kill rate is computed over the
  others; an entry whose mutant no longer exists or no longer makes that change is reported stale;
- prints per module the kill rate, then every survivor with file:line and its change, and
  writes the same to ``bench/out/mutation.json``.

Exit status: 0, or 1 when a module's kill rate is below ``--fail-under`` or the setup checks
fail, 2 when mutmut itself fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "mutation.json"
EQUIVALENTS = REPO / "bench" / "equivalent-mutants.txt"
MUTANTS = REPO / "mutants"

#: The judging code: module -> the functions judged (empty: the whole module).
JUDGING: dict[str, tuple[str, ...]] = {
    "analyzer/analysis/verify.py": (),
    "analyzer/analysis/handshakes.py": (),
    "analyzer/analysis/findings.py": (),
    "analyzer/analysis/credentials.py": (),
    "analyzer/analysis/scope.py": (),
    "analyzer/analysis/coverage.py": (),
    "analyzer/analysis/tokens.py": (),
    "analyzer/oauth/checks.py": (),
    "analyzer/oauth/keys.py": (),
    "analyzer/oauth/principals.py": (),
    "analyzer/oauth/endpoints.py": ("redact_uri", "_redact_pairs"),  # secret masking
    "analyzer/oauth/tokens.py": ("DecodedToken.public_claims", "_public_claims"),
    "analyzer/cli.py": ("main", "_verify"),  # the exit codes
}


#: Modules whose tests run the command line in a subprocess, where mutmut cannot see coverage:
#: their mutants that mutmut's in-process tests did not kill are run again against these tests
#: (MUTANT_UNDER_TEST reaches the subprocess through the environment, and PYTHONPATH makes it
#: import the mutants). Not only the "no tests" ones: once an in-process test calls ``main``,
#: mutmut runs just that test against the mutant, and the subprocess tests that would kill it
#: are never asked (that left 34 of cli.py's exit-code mutants "surviving" in a whole run).
SUBPROCESS_TESTS: dict[str, tuple[str, ...]] = {
    "analyzer/analysis/verify.py": ("tests/test_verify.py",),
    "analyzer/cli.py": ("tests/test_verify.py", "tests/test_cli.py"),
}


#: Functions that run when their module is imported (a rule registry's decorator): mutmut runs
#: each mutant's tests in a process forked after the import, so those mutants never act there.
#: They are run again, like the subprocess ones, in a fresh pytest process that imports the
#: mutated module itself.
IMPORT_TIME: dict[str, dict[str, tuple[str, ...]]] = {
    "analyzer/analysis/findings.py": {"rule": ("tests/test_findings.py",)},
}


def project_python() -> str:
    """The project's venv interpreter (where the analyzer is installed), else this one."""
    python = REPO / ".venv" / "bin" / "python"
    return str(python if python.exists() else sys.executable)


def ensure_mutmut() -> None:
    """Run under the project's interpreter, with mutmut installed there (the ``mutation``
    extra's pin); re-executes this script when it had to switch or install."""
    python = project_python()
    if Path(sys.executable).absolute() != Path(python).absolute():
        os.execv(python, [python, *sys.argv])
    try:
        import mutmut  # noqa: F401
    except ImportError:
        import tomllib

        extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        pins = extra["optional-dependencies"]["mutation"]
        print(f"mutmut is not installed: installing {' '.join(pins)} into {sys.prefix}")
        print("  (the 'mutation' extra: pip install -e '.[mutation]' does the same)")
        subprocess.run([python, "-m", "pip", "install", "-q", *pins], check=True)
        os.execv(python, [python, *sys.argv])


def selection(args: list[str]) -> dict[str, tuple[str, ...]]:
    """``path`` or ``path::func[,func]`` arguments -> module -> functions; default JUDGING."""
    if not args:
        return dict(JUDGING)
    out: dict[str, tuple[str, ...]] = {}
    for arg in args:
        path, _, funcs = arg.partition("::")
        path = Path(path).resolve().relative_to(REPO).as_posix() if Path(path).exists() else path
        if not (REPO / path).is_file() or not path.endswith(".py"):
            raise SystemExit(f"error: {arg}: not a Python module of this project")
        named = tuple(f for f in funcs.split(",") if f) or JUDGING.get(path, ())
        out[path] = out.get(path, ()) + named if path in out and named else named
    return out


def environment() -> list[str]:
    """Point imports and ``../shared`` at the right places; returns warnings."""
    notes = []
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(MUTANTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    shared = Path(os.environ.get("OAUTH_ANALYZER_SHARED") or REPO.parent / "shared").resolve()
    os.environ["OAUTH_ANALYZER_SHARED"] = str(shared)
    if not (shared / "captures" / "public").is_dir():
        notes.append(f"no public captures at {shared}/captures/public: those tests will skip")
    if not list((REPO / "analyzer" / "sources").glob("_walk*.so")):
        notes.append("native walk not built (pip install -e .): tests run the pure-Python reader")
    return notes


def run_mutmut(modules: dict[str, tuple[str, ...]], max_children: int | None) -> int:
    """mutmut's run over exactly ``modules`` (their mutants only); returns its exit status."""
    from mutation_results import mutant_globs
    from mutmut import configuration
    from mutmut.__main__ import _run

    config = configuration.config()
    configuration._config = dataclasses.replace(config, only_mutate=list(modules))
    # A stale copy of the native walk would be kept by mutmut (it copies missing files only).
    for old in (MUTANTS / "analyzer" / "sources").glob("_walk*.so"):
        old.unlink()
    globs = [g for path, funcs in modules.items() for g in mutant_globs(path, funcs)]
    try:
        _run(globs, max_children)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except AssertionError as exc:  # mutmut asserts that every pattern matched some mutant
        print(f"error: mutmut: {exc}")
        return 2
    return 0


def run_subprocess_tests(modules: dict[str, tuple[str, ...]], workers: int) -> dict[str, str]:
    """Mutant id -> killed / survived for the mutants of SUBPROCESS_TESTS modules not killed,
    each run (``pytest -x``) against that module's subprocess tests, and for the surviving
    mutants of IMPORT_TIME functions, each run against its tests in a fresh process."""
    from concurrent.futures import ThreadPoolExecutor

    from mutation_results import KILLED, load_mutants, mutant_globs

    jobs = [
        (m.name, SUBPROCESS_TESTS[path])
        for path, funcs in modules.items()
        if path in SUBPROCESS_TESTS
        for m in load_mutants(path, mutant_globs(path, funcs), diffs=False)
        if m.status not in KILLED
    ]
    for path, funcs in modules.items():
        for func, tests in IMPORT_TIME.get(path, {}).items():
            if funcs and func not in funcs:
                continue
            jobs += [
                (m.name, tests)
                for m in load_mutants(path, mutant_globs(path, (func,)), diffs=False)
                if m.status not in KILLED
            ]
    if not jobs:
        return {}
    print(f"\nRunning {len(jobs)} mutant(s) in a fresh process ...", flush=True)

    def run(job: tuple[str, tuple[str, ...]]) -> tuple[str, str]:
        name, tests = job
        env = {**os.environ, "MUTANT_UNDER_TEST": name}
        args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        try:
            proc = subprocess.run(
                args, cwd=MUTANTS, env=env, capture_output=True, text=True, timeout=600
            )
        except subprocess.TimeoutExpired:
            return name, "timeout"
        return name, "survived" if proc.returncode == 0 else "killed"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(run, jobs))


def imported_from_mutants(modules: list[str]) -> list[str]:
    """Problems found by importing the judged modules and the native walk in a fresh
    interpreter, with this run's environment, from outside ``mutants/``."""
    names = [m.removesuffix(".py").replace("/", ".") for m in modules]
    names.append("analyzer.sources._walk")
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        out[name] = importlib.import_module(name).__file__\n"
        "    except ImportError as exc:\n"
        "        out[name] = 'not importable: ' + str(exc)\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return [f"import check failed: {proc.stderr.strip()[-500:]}"]
    problems = []
    for name, where in json.loads(proc.stdout).items():
        if not where.startswith(str(MUTANTS) + os.sep):
            problems.append(f"{name} is imported from {where}, not from mutants/")
    return problems


def planted_fault_is_killed(module: str) -> str | None:
    """Plant an obvious fault (an exception at import) in the mutated copy of ``module``, run
    one test that mutmut associated with it, and restore the file. Returns a problem, or None
    when the test failed on the planted fault, which shows the tests import ``mutants/``."""
    os.environ.pop("MUTANT_UNDER_TEST", None)  # mutmut leaves its last mutant named there
    stats_file = MUTANTS / "mutmut-stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    dotted = module.removesuffix(".py").replace("/", ".") + "."
    # The test reaching most of the module's functions: the first test of a run is also
    # credited with what other test modules call while they are collected (module-level
    # constants), and on its own it may not import the module at all.
    reach: dict[str, int] = {}
    for name, found in stats.get("tests_by_mangled_function_name", {}).items():
        if name.startswith(dotted):
            for test in found:
                reach[test] = reach.get(test, 0) + 1
    tests = sorted(reach, key=lambda t: (-reach[t], t)) or list(SUBPROCESS_TESTS.get(module, ()))
    if not tests:
        return f"no test reaches {module}: cannot plant a fault"
    target = MUTANTS / module
    original = target.read_text()
    target.write_text(original + "\nraise RuntimeError('planted fault')\n")
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", tests[0]]
    try:
        planted = subprocess.run(args, cwd=MUTANTS, capture_output=True, text=True, check=False)
    finally:
        target.write_text(original)
    seen = planted.returncode != 0 and (
        "planted fault" in planted.stdout + planted.stderr
        # a subprocess test hides the traceback: then the test must pass without the fault
        or subprocess.run(args, cwd=MUTANTS, capture_output=True, check=False).returncode == 0
    )
    if not seen:
        return f"a fault planted in mutants/{module} was not seen by {tests[0]}"
    print(f"planted fault in mutants/{module}: killed by {tests[0]}")
    return None


def report(
    modules: dict[str, tuple[str, ...]],
    seconds: float,
    notes: list[str],
    rerun: dict[str, str],
) -> tuple[dict, bool]:
    """Print kill rates, survivors and equivalents; return the JSON summary and whether the
    equivalents file is in order."""
    from mutation_results import KILLED, load_mutants, mutant_globs, read_equivalents

    equivalents = {e.name: e for e in read_equivalents(EQUIVALENTS)}
    killed_now = KILLED | {f"{s} (subprocess tests)" for s in KILLED}
    globs = [g for path, funcs in modules.items() for g in mutant_globs(path, funcs)]
    summary: dict = {"seconds": round(seconds, 1), "modules": {}, "notes": notes}
    rows = []
    survivors = []
    listed_equivalent = []
    for path, funcs in modules.items():
        mutants = [
            dataclasses.replace(m, status=f"{rerun[m.name]} (subprocess tests)")
            if m.name in rerun
            else m
            for m in load_mutants(path, mutant_globs(path, funcs))
        ]
        counts = {"mutants": len(mutants), "killed": 0, "survived": 0, "equivalent": 0}
        for m in mutants:
            entry = equivalents.get(m.name)
            if entry is not None and entry.change == m.change and m.status not in killed_now:
                counts["equivalent"] += 1
                listed_equivalent.append((m, entry.why))
            elif m.status.split(" (")[0] in KILLED:
                counts["killed"] += 1
            else:
                counts["survived"] += 1
                survivors.append(m)
        judged = counts["mutants"] - counts["equivalent"]
        counts["kill_rate"] = round(100 * counts["killed"] / judged, 1) if judged else None
        counts["functions"] = list(funcs) or "all"
        summary["modules"][path] = counts
        rows.append((path + ("::" + ",".join(funcs) if funcs else ""), counts))

    print(f"\nMutation testing: {len(modules)} module(s) in {seconds / 60:.1f} min\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'module':<{width}}  mutants  killed  survived  equivalent  kill rate")
    for name, c in rows:
        rate = f"{c['kill_rate']:.1f}%" if c["kill_rate"] is not None else "-"
        print(
            f"{name:<{width}}  {c['mutants']:>7}  {c['killed']:>6}  {c['survived']:>8}  "
            f"{c['equivalent']:>10}  {rate:>9}"
        )
    print(
        "\n(kill rate = killed / (mutants - equivalent); 'no tests' mutants count as survivors;"
        " mutants of SUBPROCESS_TESTS modules not killed in-process were run against those tests)"
    )

    print(f"\nSurvivors ({len(survivors)}):")
    for m in survivors:
        status = "" if m.status == "survived" else f"  [{m.status}]"
        print(f"  {m.path}:{m.line}  {m.name}{status}")
        for line in m.removed:
            print(f"      - {line}")
        for line in m.added:
            print(f"      + {line}")
    summary["survivors"] = [
        {"id": m.name, "where": f"{m.path}:{m.line}", "status": m.status,
         "removed": m.removed, "added": m.added}
        for m in survivors
    ]  # fmt: skip

    print(f"\nEquivalent, reviewed in {EQUIVALENTS.relative_to(REPO)} ({len(listed_equivalent)}):")
    for m, why in listed_equivalent:
        print(f"  {m.path}:{m.line}  {m.name}: {why}")
    summary["equivalent"] = [{"id": m.name, "why": why} for m, why in listed_equivalent]

    listed = {m.name for m, _ in listed_equivalent}
    stale = [
        e
        for name, e in equivalents.items()
        if name not in listed and any(fnmatch.fnmatchcase(name, g) for g in globs)
    ]
    if stale:
        print(f"\nStale entries in {EQUIVALENTS.name} (mutant gone, killed, or changed):")
        for e in stale:
            print(f"  line {e.lineno}: {e.name}")
    summary["stale_equivalents"] = [e.name for e in stale]
    return summary, not stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="path[::func,...] (default: JUDGING)")
    parser.add_argument("--max-children", type=int, help="parallel mutants (default: cores)")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from the last run")
    parser.add_argument(
        "--no-subprocess-tests",
        action="store_true",
        help="no rerun of SUBPROCESS_TESTS modules' in-process survivors (faster)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="print the report of the last run in mutants/ without running anything",
    )
    parser.add_argument("--fail-under", type=float, help="exit 1 below this kill rate (%%)")
    args = parser.parse_args()
    modules = selection(args.modules)
    ensure_mutmut()
    os.chdir(REPO)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    notes = environment()
    for note in notes:
        print(f"note: {note}")
    if args.report_only:
        summary, _ = report(modules, 0.0, notes, {})
        return 0
    if not args.keep and MUTANTS.exists():
        shutil.rmtree(MUTANTS)

    start = time.monotonic()
    status = run_mutmut(modules, args.max_children)
    if (
        status != 0
        and not (MUTANTS / "mutmut-stats.json").exists()
        and all(path in SUBPROCESS_TESTS for path in modules)
    ):
        # mutmut stops when no in-process test reaches any mutant: these modules are reached
        # by subprocess tests only, which run_subprocess_tests runs itself.
        print("note: no in-process test reaches these modules; running their subprocess tests")
    elif status != 0:
        print(f"error: mutmut stopped (status {status}); see its output above")
        return 2
    rerun = (
        {}
        if args.no_subprocess_tests
        else run_subprocess_tests(modules, args.max_children or os.cpu_count() or 2)
    )
    seconds = time.monotonic() - start
    problems = imported_from_mutants(list(modules))
    planted = planted_fault_is_killed(next(iter(modules)))
    problems += [planted] if planted else []
    summary, equivalents_ok = report(modules, seconds, notes, rerun)
    summary["command"] = " ".join(["python bench/mutation.py", *sys.argv[1:]])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten: {OUT.relative_to(REPO)}")
    for problem in problems:
        print(f"error: {problem}: the figures above are not trustworthy")
    low = [
        path
        for path, c in summary["modules"].items()
        if args.fail_under is not None and (c["kill_rate"] or 0) < args.fail_under
    ]
    for path in low:
        print(f"below {args.fail_under}%: {path}")
    return 1 if problems or low or not equivalents_ok else 0


if __name__ == "__main__":
    sys.exit(main())
