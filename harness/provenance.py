"""Provenance of a run: the source it ran, where it ran, and a fingerprint of what it measured.

Every entry of ``runs`` in ``claims.json`` carries (see ``harness.records.run_metadata``):

* ``commit``, ``dirty``, ``diff_sha256``: the project's git commit, whether the working tree
  differed from it (tracked changes or untracked files, ``reports/`` left out since runs write
  there), and when it did a SHA-256 of the difference (``git diff HEAD`` plus the names and
  contents of the untracked files), so two dirty runs can be told apart. All three are null
  outside a git checkout. The source is read once per process, when the run starts.
* ``versions`` (python, jax, jaxlib, numpy, scipy, statsmodels, matplotlib, pytest), ``backend``
  (the XLA backend), ``device`` / ``device_kind`` / ``device_name`` / ``device_count``, ``x64``,
  ``cpu_model``, ``cpu_count`` and ``command`` (the command line).
* ``fingerprint``: hashes of what was measured, so two runs can be told apart when they did not
  measure the same thing (see :func:`fingerprint`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions go into every run's metadata.
PACKAGES = ("jax", "jaxlib", "numpy", "scipy", "statsmodels", "matplotlib", "pytest")

#: Modules whose settings (constants and keyword defaults) decide how a quantity is estimated.
ESTIMATOR_MODULES = (
    "architectures", "fit", "hessian", "infinite_width", "kernel", "laws", "measure", "models", "networks", "rng",
    "sweep", "train",
)

#: Paths, relative to the project root, left out of the dirty check (runs write their reports there).
UNTRACKED_BY_RUNS = ("reports",)

_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")


def project_root() -> Path:
    """The directory holding ``harness/`` (the repository for an editable install)."""
    return Path(__file__).resolve().parents[1]


def digest(value: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# --------------------------------------------------------------------------------------------------
# Source
def git_output(root: Path, *args: str) -> bytes | None:
    """stdout of ``git -C root args``, or None when git is missing or the command fails."""
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def _untracked_digest(root: Path, names: Sequence[str]) -> bytes:
    parts = []
    for name in sorted(names):
        try:
            content = hashlib.sha256((root / name).read_bytes()).hexdigest()
        except OSError as err:
            content = f"unreadable: {err.strerror}"
        parts.append(f"{name}\0{content}\n")
    return "".join(parts).encode("utf-8")


@functools.lru_cache(maxsize=None)
def _source_state(root: str) -> tuple[str | None, bool | None, str | None]:
    path = Path(root)
    commit = git_output(path, "rev-parse", "--verify", "HEAD")
    if commit is None:
        return None, None, None
    excluded = [f":(exclude){p}" for p in UNTRACKED_BY_RUNS]
    diff = git_output(path, "diff", "HEAD", "--binary", "--", ".", *excluded) or b""
    listing = git_output(path, "ls-files", "--others", "--exclude-standard", "-z", "--", ".", *excluded) or b""
    untracked = [n for n in listing.decode("utf-8", "replace").split("\0") if n]
    if not diff and not untracked:
        return commit.decode().strip(), False, None
    difference = hashlib.sha256(diff + b"\0untracked\0" + _untracked_digest(path, untracked)).hexdigest()
    return commit.decode().strip(), True, difference


def source_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "diff_sha256"}`` of the project, read once per process and root.

    Args:
      root: the checkout (default: :func:`project_root`).
    """
    commit, dirty, difference = _source_state(str(Path(root or project_root()).resolve()))
    return {"commit": commit, "dirty": dirty, "diff_sha256": difference}


# --------------------------------------------------------------------------------------------------
# Environment
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def package_versions() -> dict[str, str | None]:
    """The exact versions of python and of ``PACKAGES`` (None for one not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_state() -> dict[str, Any]:
    """The XLA backend, the first device's kind and name, the device count and whether x64 is on."""
    import jax

    devices = jax.devices()
    first = devices[0]
    return {
        "backend": jax.default_backend(),
        "device": f"{first.platform}: {first.device_kind} x{len(devices)}",
        "device_kind": first.device_kind,
        "device_name": str(first),
        "device_count": len(devices),
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


def environment() -> dict[str, Any]:
    """Versions, device, CPU and platform of this process."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {
        "python": platform.python_version(),
        "versions": package_versions(),
        **device_state(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "platform": platform.platform(),
        "executable": sys.executable,
    }


# --------------------------------------------------------------------------------------------------
# Fingerprint
def _value_text(node: ast.AST) -> Any:
    """A literal's value, else the expression's source text (both are stable across processes)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(node)
    return value if isinstance(value, (bool, int, float, str, type(None))) else ast.unparse(node)


def _defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef, prefix: str) -> dict[str, Any]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    out = {f"{prefix}{a.arg}": _value_text(d) for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults)}
    out.update({f"{prefix}{a.arg}": _value_text(d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
    return out


def source_settings(path: Path) -> dict[str, Any]:
    """The settings a module's source states: UPPER_CASE module constants and keyword defaults.

    Read from the syntax tree, not by importing, so it costs no import and does not depend on
    which modules a run happened to load. Non-literal values enter as their source text.
    """
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    settings: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and _CONSTANT.fullmatch(target.id) and node.value is not None:
                settings[target.id] = _value_text(node.value)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            settings.update(_defaults(node, f"{node.name}."))
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    settings.update(_defaults(item, f"{node.name}.{item.name}."))
    return settings


def _settings_of(paths: Sequence[Path]) -> dict[str, Any]:
    return {p.stem: source_settings(p) for p in sorted(paths) if p.is_file()}


def tier_settings(tier_name: str) -> dict[str, Any]:
    """Every field of the tier (``harness.tiers``): its grids, seeds, dtype and Lanczos settings."""
    from harness.tiers import get_tier

    return dataclasses.asdict(get_tier(tier_name))


def fingerprint(tier_name: str, root: Path | None = None) -> dict[str, str]:
    """Hashes of what a run at this tier measures, part by part, and of all parts together.

    * ``tier``: every field of the tier (grids, seed counts, dtype, Lanczos tolerance and cap);
    * ``estimators``: the UPPER_CASE constants and keyword defaults of the estimator modules
      (``ESTIMATOR_MODULES`` of ``harness/``: fits and their confidence levels, Lanczos, kernels,
      training, sweeps);
    * ``claims``: the same for every ``claims/test_*.py``, which hold each claim's margins,
      floors and limits (each record also carries its own ``target``, ``margin``, ``floor`` or
      ``limit``, which ``harness.compare`` compares record by record);
    * ``sha256``: the three together.

    The code itself is not hashed (the commit and the diff hash identify it): two runs at
    different commits that measured the same grids under the same settings share a fingerprint.
    Each hash is the first 16 hex digits of a SHA-256 of canonical JSON.
    """
    base = Path(root or project_root())
    parts = {
        "tier": digest(tier_settings(tier_name)),
        "estimators": digest(_settings_of([base / "harness" / f"{m}.py" for m in ESTIMATOR_MODULES])),
        "claims": digest(_settings_of(list((base / "claims").glob("test_*.py")))),
    }
    return {"sha256": digest(parts), **parts}


def run_id(tier: str, base_seed: int, source: dict[str, Any], fingerprint_sha: str) -> str:
    """A run's id: what it ran (tier, base seed, source, fingerprint), the same for a rerun of it.

    A rerun of the same code at the same seed thus writes the same id into its records, and only
    the run's metadata (date, wall time, command) changes in ``claims.json``.
    """
    commit = source.get("commit")
    code = commit[:12] if commit else "nogit"
    if source.get("dirty"):
        code += f"-dirty{source['diff_sha256'][:8]}"
    return f"{tier}-seed{base_seed}-{code}-{fingerprint_sha[:8]}"
