"""The ``linearity-claims`` command (also ``python -m harness``).

* ``run``: the claims at a tier and seed, a thin wrapper over ``python -m pytest <root>/claims``
  (the pytest command is printed first and can be run directly); exits with pytest's status.
  Arguments after ``--`` go to pytest unchanged.
* ``compare``: two runs record by record (``harness.compare``).
* ``summary``: a tier's summary, rendered from its ``claims.json``.
* ``figures``: the PNG figures redrawn from a ``claims.json``, without measuring.
* ``check``: does a user's network transition to linearity? (``harness.check``): its Table 1 row,
  a JSON record and a PNG; exits 0 whatever the verdict, 2 on a malformed build function.

``summary`` and ``figures`` find ``<report-dir>/<tier>/claims.json`` as the suite writes it
(``--report-dir`` or ``LINEARITY_REPORT_DIR``, default ``reports/``; ``--scale`` or
``LINEARITY_SCALE``, default ``default``), or take a path.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import compare
from harness.provenance import project_root

PROG = "linearity-claims"


class CliError(Exception):
    """A usage error reported in one line (exit status 2)."""


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="a claims.json, a tier directory or a report root (default: from --scale)")
    parser.add_argument("--scale", default=None, help="tier: smoke, default or paper (env LINEARITY_SCALE, default default)")
    parser.add_argument("--report-dir", default=None, help="report root (env LINEARITY_REPORT_DIR, default reports/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Run, compare and read the linearity-claims reports.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run the claims at a tier and seed (a wrapper over pytest)",
        description="Run the claims with pytest: python -m pytest <root>/claims [options] [-- pytest args].",
        epilog="Example: linearity-claims run --seed 0 --report-dir audit -- -x. Exits with pytest's status.",
    )
    run.add_argument("--scale", default=None, help="tier: smoke, default or paper (default: pytest's, env LINEARITY_SCALE)")
    run.add_argument("--seed", default=None, help="base seed of every sweep (default 0, env LINEARITY_SEED)")
    run.add_argument("--report-dir", default=None, help="report root (default reports/ of the checkout); "
                     "use a separate directory to keep the committed reference")
    run.add_argument("--claim", action="append", default=[], metavar="ID", help="only this claim (C2, X1); repeatable")
    run.add_argument("--resume", action="store_true", help="replay the tests a killed run of the same code finished")
    run.add_argument("--dry-run", action="store_true", help="print the pytest command without running it")
    commands.add_parser(
        "compare", help="compare two runs record by record", add_help=False,
        description="See: linearity-claims compare --help",
    )
    summary = commands.add_parser("summary", help="print a tier's summary (from its claims.json)",
                                  description="Print the summary of a tier, rendered from its claims.json.")
    _add_location(summary)
    figures = commands.add_parser("figures", help="redraw the figures from claims.json without measuring",
                                  description="Redraw the PNG figures of a tier from its claims.json.")
    _add_location(figures)
    figures.add_argument("--out", default=None, help="where to write the PNGs (default: beside claims.json)")
    check = commands.add_parser(
        "check", help="does your network transition to linearity? (its row of Table 1)",
        description="Measure ||H|| and tr K / n of the networks BUILD makes at each width, fit their exponents "
        "and judge whether the network transitions to linearity. BUILD is MODULE:FUNCTION or FILE.py:FUNCTION, "
        "a function build(width, key) -> (apply, params, xs).",
        epilog="Example: linearity-claims check examples/mlp_linear_head.py:build --widths 64,256,1024",
    )
    check.add_argument("build", help="MODULE:FUNCTION or FILE.py:FUNCTION")
    check.add_argument("--widths", required=True, help="comma-separated widths, at least three (e.g. 64,256,1024)")
    check.add_argument("--seeds", type=int, default=8, help="networks per width (default 8)")
    check.add_argument("--output", type=int, default=1, help="number of output components of apply (default 1: a scalar)")
    check.add_argument("--train", action="store_true", help="also train by gradient descent and fit Delta K")
    check.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    check.add_argument("--json", default=None, help="write the record here (default <report-dir>/check.json)")
    check.add_argument("--report-dir", default="linearity-check", help="where the JSON and the PNG go (default linearity-check/)")
    return parser


def pytest_command(args: argparse.Namespace, extra: Sequence[str], root: Path | None = None) -> list[str]:
    """The pytest command line that ``run`` executes."""
    root = Path(root or project_root())
    if not (root / "claims").is_dir() or not (root / "conftest.py").is_file():
        raise CliError(f"no claims/ and conftest.py under {root}: run needs the source tree (pip install -e . in a clone)")
    command = [sys.executable, "-m", "pytest", str(root / "claims")]
    for option, value in (("--scale", args.scale), ("--seed", args.seed), ("--report-dir", args.report_dir)):
        if value is not None:
            command += [option, str(value)]
    for claim in args.claim:
        command += ["--claim", claim]
    if getattr(args, "resume", False):
        command.append("--resume")
    return command + list(extra)


def _run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    command = pytest_command(args, extra)
    print(f"{PROG} run: {shlex.join(command)}", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130


def claims_path(args: argparse.Namespace) -> Path:
    """The claims.json that ``summary`` or ``figures`` reads (see the module docstring)."""
    if args.path:
        try:
            return compare.resolve_claims_path(args.path)
        except compare.CompareError as err:
            raise CliError(str(err)) from None
    from harness.tiers import UnknownTierError, get_tier

    try:
        tier = get_tier(args.scale or os.environ.get("LINEARITY_SCALE") or "default")
    except UnknownTierError as err:
        raise CliError(str(err)) from None
    root = Path(args.report_dir or os.environ.get("LINEARITY_REPORT_DIR") or project_root() / "reports")
    path = root / tier.name / "claims.json"
    if not path.is_file():
        raise CliError(f"no report at {path}: run the claims at tier {tier.name} first, or name a claims.json")
    return path


def _load(path: Path) -> dict:
    from harness.records import load_records

    try:
        return load_records(path)
    except (ValueError, OSError) as err:
        raise CliError(f"cannot read {path}: {err}") from None


def _summary(args: argparse.Namespace) -> int:
    from harness.summary import summary_markdown

    print(summary_markdown(_load(claims_path(args))), end="")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from harness.figures import FIGURES

    path = claims_path(args)
    records = _load(path)["records"]
    out = Path(args.out) if args.out else path.parent
    written = [p for figure in FIGURES for p in figure(records, out)]
    for p in written:
        print(p)
    if not written:
        print(f"{PROG} figures: no figure has its records in {path}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from harness import check

    try:
        widths = [int(w) for w in args.widths.split(",") if w.strip()]
    except ValueError:
        raise CliError(f"--widths takes comma-separated integers, got {args.widths!r}") from None
    try:
        build = check.load_build(args.build)
        result = check.check(
            build, widths, seeds=args.seeds, outputs=args.output, train=args.train, base_seed=args.seed,
            progress=lambda line: print(f"{PROG} check: {line}", file=sys.stderr, flush=True),
        )
    except check.BuildError as err:
        raise CliError(str(err)) from None
    out_dir = Path(args.report_dir)
    json_path = check.write_json(result, Path(args.json) if args.json else out_dir / "check.json")
    png = check.plot(result, out_dir / "check.png", title=args.build.rsplit(":", 1)[0])
    print(check.table_row(result))
    print(f"\nwrote {json_path}, {png}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:], prog=f"{PROG} compare")
    extra: list[str] = []
    if argv[:1] == ["run"] and "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1:]
    args = build_parser().parse_args(argv)
    handlers = {
        "run": lambda: _run(args, extra), "summary": lambda: _summary(args), "figures": lambda: _figures(args),
        "check": lambda: _check(args),
    }
    try:
        return handlers[args.command]()
    except CliError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
