"""harness.check: the public contract for users' networks, its errors, its verdicts, CLI and fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from harness import check
from harness.check import BuildError, load_build
from harness.models import FullyConnected

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

#: Small-scale settings for the example tests: three widths over a decade and a half, 4 seeds.
#: A bottleneck net is cheap (~14 m weights) and its Omega(1) limit needs the wider grid of C9.
WIDTHS = (32, 128, 512)
BOTTLENECK_WIDTHS = (64, 1024, 16384)
SEEDS = 4


def _example(name: str):
    return load_build(f"{EXAMPLES / name}.py:build")


# -- the contract's errors: one line, before any measurement ---------------------------------------
def _good(width, key):
    w = jax.random.normal(key, (3, width), dtype=jnp.float64)
    xs = jnp.ones((4, 3), dtype=jnp.float64)
    return (lambda p, x: jnp.tanh(x @ p / jnp.sqrt(3.0)).sum() / jnp.sqrt(p.shape[1])), w, xs


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda w, k: (_good(w, k)[0], _good(w, k)[1]), "must return \\(apply, params, xs\\)"),
        (lambda w, k: ("apply", _good(w, k)[1], _good(w, k)[2]), "apply is not callable"),
        (lambda w, k: (_good(w, k)[0], {}, _good(w, k)[2]), "non-empty pytree of arrays"),
        (lambda w, k: (_good(w, k)[0], _good(w, k)[1], jnp.ones(3)), "xs must be an \\(n, d\\) array"),
        (lambda w, k: ((lambda p, x: jnp.tanh(x @ p)), _good(w, k)[1], _good(w, k)[2]), "must return a scalar, got shape"),
        (lambda w, k: ((lambda p, x: jnp.nan * jnp.sum(p)), _good(w, k)[1], _good(w, k)[2]), "is not finite"),
        (lambda w, k: (_good(w, k)[0], jnp.full((3, w), jnp.inf), _good(w, k)[2]), "params hold non-finite values"),
        (lambda w, k: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_a_malformed_build_is_a_one_line_error_before_any_work(build, match):
    with pytest.raises(BuildError, match=match) as info:
        check.check(build, [4, 8, 16], seeds=2)
    assert "\n" not in str(info.value)


def test_vector_output_hint_and_too_few_widths_or_seeds():
    vector = lambda w, k: ((lambda p, x: jnp.tanh(x @ p)[:2]), _good(w, k)[1], _good(w, k)[2])
    with pytest.raises(BuildError, match="pass outputs=2"):
        check.check(vector, [4, 8, 16], seeds=2)
    with pytest.raises(BuildError, match="at least 3 distinct widths"):
        check.check(_good, [4, 8, 8], seeds=2)
    with pytest.raises(BuildError, match="at least 2 seeds"):
        check.check(_good, [4, 8, 16], seeds=1)


def test_load_build_names_what_is_missing(tmp_path):
    with pytest.raises(BuildError, match="MODULE:FUNCTION"):
        load_build("examples/mlp_linear_head.py")
    with pytest.raises(BuildError, match="no such file"):
        load_build(f"{tmp_path}/none.py:build")
    with pytest.raises(BuildError, match="has no function 'nope'"):
        load_build(f"{EXAMPLES}/mlp_linear_head.py:nope")
    with pytest.raises(BuildError, match="cannot import module"):
        load_build("no_such_module_here:build")


# -- the built-in networks through the public contract give the suite's Table 1 ----------------------
def _builtin(head: str, hidden):
    def build(width, key):
        net = FullyConnected(8, hidden(width), "tanh", head=head)
        params, fixed = net.init(key, jnp.float64)
        x = jax.random.normal(jax.random.fold_in(key, 1), (8, 8), dtype=jnp.float64)
        xs = jnp.sqrt(8.0) * x / jnp.linalg.norm(x, axis=1, keepdims=True)
        return (lambda p, x: net.apply(p, fixed, x)), params, xs

    return build


@pytest.mark.slow
def test_a_builtin_network_gets_the_suites_verdict():
    """The suite's own network (C10's linear-output row), built by a user's function, gets the verdict
    the claims give it. Table 1's other rows through the contract are the examples below (a swish
    head, a bottleneck), which a user writes without the harness."""
    result = check.check(_builtin("linear", lambda m: (m, m)), WIDTHS, seeds=SEEDS)
    assert result.transition == "yes", result.reason
    assert result.verdicts["kernel_order_one"].verdict != "refuted"


# -- each example gets the verdict the theory predicts -----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "name,expected",
    [("mlp_linear_head", "yes"), ("mlp_swish_head", "no"), ("bottleneck", "no"), ("skip_connections", "yes"), ("dominant_unit", "no")],
)
def test_examples_through_the_cli(name, expected, tmp_path, capsys):
    """The command's whole path in this process (``test_cli_malformed_build_exits_2_with_one_line``
    runs it as a subprocess): a JAX start-up per example would cost more than the example."""
    from harness import cli

    out = tmp_path / name
    widths = BOTTLENECK_WIDTHS if name == "bottleneck" else WIDTHS
    code = cli.main(["check", f"{EXAMPLES / name}.py:build", "--widths", ",".join(map(str, widths)),
                     "--seeds", str(SEEDS), "--report-dir", str(out)])
    result = capsys.readouterr()
    assert code == 0, result.err[-2000:]
    record = json.loads((out / "check.json").read_text())
    assert record["transition"] == expected, record["reason"]
    for key in ("hessian_slope", "hessian_ci", "kernel_slope", "kernel_ci", "points"):
        assert key in record
    assert len(record["points"]) == len(widths) * SEEDS
    assert (out / "check.png").stat().st_size > 0
    assert f"| {expected} |" in result.out
    assert "check width" in result.err  # progress lines


def test_cli_malformed_build_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def build(width, key):\n    return 1, 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "harness", "check", f"{bad}:build", "--widths", "4,8,16", "--report-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "must return (apply, params, xs)" in result.stderr


def test_training_records_the_kernel_change(tmp_path):
    result = check.check(_example("mlp_linear_head"), (16, 32, 64), seeds=2, hessian_inputs=1, train=True)
    assert result.kernel_change is not None
    assert all(p["kernel_change"] > 0 for p in result.points)
    assert "kernel_change_slope" in result.to_json()


def test_the_fixture_is_installed(tmp_path):
    """A user's suite outside this project gets ``linearity_check`` from the installed package."""
    (tmp_path / "test_mine.py").write_text(
        "from harness.check import load_build\n"
        f"build = load_build({str(EXAMPLES / 'mlp_linear_head.py') + ':build'!r})\n\n"
        "def test_mine(linearity_check):\n"
        "    result = linearity_check(build, [8, 16, 32], seeds=2, hessian_inputs=1)\n"
        "    assert result.transition in ('yes', 'no', 'undetermined')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "test_mine.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_vector_outputs_measure_every_component():
    """--output k: the Hessian norm is the largest over the k components (a softmax-free 2-output net)."""

    def build(width, key):
        w1 = jax.random.normal(key, (3, width), dtype=jnp.float64)
        w2 = jax.random.normal(jax.random.fold_in(key, 1), (width, 2), dtype=jnp.float64)
        xs = jax.random.normal(jax.random.fold_in(key, 2), (4, 3), dtype=jnp.float64)
        apply = lambda p, x: jnp.tanh(x @ p[0] / jnp.sqrt(3.0)) @ p[1] / jnp.sqrt(p[1].shape[0])
        return apply, (w1, w2), xs

    result = check.check(build, [8, 16, 32], seeds=2, outputs=2, hessian_inputs=1)
    assert len(result.points) == 6
    assert all(p["hessian_norm"] > 0 for p in result.points)
