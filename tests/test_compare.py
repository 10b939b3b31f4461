#!/usr/bin/env python3
"""Tests of `dsv4ref compare` (tools/cmd_compare.c, tools/dumpcmp.c; spec/tolerances.md):
what someone validating another implementation relies on.  Each test names the bug it
traps.  Prints "N passed, M failed".  Needs numpy and the built CLI ($DSV4REF_BIN)."""
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "oracle"))
import safetensors_np as stn  # noqa: E402

BIN = os.environ.get("DSV4REF_BIN", os.path.join(ROOT, "build", "ref", "dsv4ref"))
TMP = tempfile.mkdtemp(prefix="dsv4ref-compare-")
TESTS = []
rng = np.random.default_rng(7)


def test(fn):
    TESTS.append(fn)
    return fn


def write(name, tensors, meta=None):
    p = os.path.join(TMP, name)
    stn.save(p, tensors, meta or {"format": "dsv4-golden-1", "numerics": "official"})
    return p


def compare(a, b, *extra):
    r = subprocess.run([BIN, "compare", a, b, *extra], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def base():
    x = rng.standard_normal((2, 30, 4, 24))            # Block streams [B, S, hc, dim]
    att = rng.standard_normal((2, 30, 24))
    logits = rng.standard_normal((1, 50))
    idx = np.stack([rng.permutation(40)[:6] for _ in range(60)]).reshape(2, 30, 6)
    idx[0, 0, 3:] = -1                                 # fewer candidates than k in an early row
    return {"taps.0.layers.0": ("F32", x), "taps.0.layers.0.attn": ("F32", att),
            "taps.0.logits": ("F32", logits), "taps.0.layers.1.attn.indexer": ("I64", idx),
            "layers.0.attn.wq_a.weight": ("BF16", rng.standard_normal((8, 24)))}


B = base()
EXPECTED = write("expected.safetensors", B)


@test
def identical_files_pass():
    rc, out = compare(EXPECTED, EXPECTED)
    assert rc == 0, f"identical files must pass (rc {rc}); likely bug: a self-comparison fails\n{out}"
    assert "4 passed, 0 failed" in out, f"4 taps (weights not compared when taps exist) expected\n{out}"


@test
def perturbed_tensor_fails_and_is_named():
    t = dict(B)
    a = B["taps.0.layers.0.attn"][1].copy()
    a[1, 17, :] *= 1.2                                  # one token row 20% off: an outlier row
    t["taps.0.layers.0.attn"] = ("F32", a)
    rc, out = compare(EXPECTED, write("one-outlier.safetensors", t))
    assert rc == 0, f"1 outlier row in 60 is allowed (1%, at least 1) (rc {rc})\n{out}"
    a[0, 3, :] *= 0.9                                   # a second outlier row: over the allowance
    t["taps.0.layers.0.attn"] = ("F32", a)
    rc, out = compare(EXPECTED, write("perturbed.safetensors", t))
    assert rc == 1, f"2 outlier rows in 60 must fail (rc {rc}); likely bug: outlier rule not applied\n{out}"
    line = [ln for ln in out.splitlines() if "taps.0.layers.0.attn " in ln + " "]
    assert line and line[0].startswith("FAIL"), f"the failing line must name taps.0.layers.0.attn\n{out}"
    assert "[1, 17," in line[0], f"the worst position [1, 17, ...] must be reported\n{out}"


@test
def bf16_actual_of_the_same_values_passes():
    t = {k: (("BF16", v[1]) if v[0] == "F32" else v) for k, v in B.items()}
    rc, out = compare(EXPECTED, write("bf16.safetensors", t))
    assert rc == 0, f"bf16 storage (2^-9 relative) must pass official mode (rc {rc}); likely bug: dtype not converted\n{out}"
    rc, out = compare(EXPECTED, write("bf16.safetensors", t), "--numerics", "exact")
    assert rc == 1, f"bf16 storage must fail exact mode (1e-6) (rc {rc})\n{out}"


@test
def f64_actual_passes_exact():
    t = {k: (("F64", v[1]) if v[0] == "F32" else v) for k, v in B.items()}
    rc, out = compare(EXPECTED, write("f64.safetensors", t), "--numerics", "exact")
    assert rc == 0, f"F64 of the same values must pass exact mode (rc {rc}); likely bug: F64 misread\n{out}"


@test
def small_error_passes_official_fails_exact():
    t = dict(B)
    t["taps.0.logits"] = ("F32", B["taps.0.logits"][1] * (1 + 1e-4))
    p = write("small.safetensors", t)
    rc, out = compare(EXPECTED, p)
    assert rc == 0, f"1e-4 relative must pass official (limit 2e-2) (rc {rc})\n{out}"
    rc, out = compare(EXPECTED, p, "--numerics", "exact")
    assert rc == 1 and "FAIL taps.0.logits" in out, f"1e-4 relative must fail exact (1e-6) (rc {rc})\n{out}"


@test
def permuted_index_rows_pass():
    t = dict(B)
    idx = B["taps.0.layers.1.attn.indexer"][1].copy()
    idx = idx[..., ::-1].copy()                         # same sets, another order (the -1s move too)
    t["taps.0.layers.1.attn.indexer"] = ("I64", idx)
    rc, out = compare(EXPECTED, write("perm.safetensors", t))
    assert rc == 0, f"index rows are sets: a permutation must pass (rc {rc}); likely bug: compared in order\n{out}"


@test
def changed_index_sets_fail():
    t = dict(B)
    idx = B["taps.0.layers.1.attn.indexer"][1].copy()
    idx[..., 0] = 39 - idx[..., 0] + 100                # one member of every row replaced
    t["taps.0.layers.1.attn.indexer"] = ("I64", idx)
    rc, out = compare(EXPECTED, write("sets.safetensors", t))
    assert rc == 1 and "FAIL taps.0.layers.1.attn.indexer" in out, f"changed sets must fail (rc {rc})\n{out}"


@test
def missing_tensor_fails():
    t = dict(B)
    del t["taps.0.logits"]
    rc, out = compare(EXPECTED, write("missing.safetensors", t))
    assert rc == 1 and "taps.0.logits" in out and "missing" in out, f"a missing tap is a failure (rc {rc})\n{out}"


@test
def wrong_shape_fails():
    t = dict(B)
    t["taps.0.layers.0.attn"] = ("F32", B["taps.0.layers.0.attn"][1][:, :29])
    rc, out = compare(EXPECTED, write("shape.safetensors", t))
    assert rc == 1 and "shape" in out, f"a shape mismatch is a failure (rc {rc})\n{out}"


@test
def nan_fails():
    t = dict(B)
    a = B["taps.0.layers.0.attn"][1].copy()
    a[0, 0, 0] = np.nan
    t["taps.0.layers.0.attn"] = ("F32", a)
    rc, out = compare(EXPECTED, write("nan.safetensors", t))
    assert rc == 1 and "non-finite" in out, f"a NaN where expected is finite must fail (rc {rc})\n{out}"


@test
def only_prefix_restricts():
    t = dict(B)
    del t["taps.0.logits"]
    rc, out = compare(EXPECTED, write("only.safetensors", t), "--only", "taps.0.layers.")
    assert rc == 0 and "3 passed" in out, f"--only taps.0.layers. must skip the logits (rc {rc})\n{out}"
    rc, out = compare(EXPECTED, write("only.safetensors", t), "--only", "layers.1.")
    assert rc == 0 and "1 passed" in out, f"--only layers.1. (a module path) must select the indexer tap (rc {rc})\n{out}"


@test
def bad_input_exits_2():
    junk = os.path.join(TMP, "junk.safetensors")
    with open(junk, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for args in ([EXPECTED, junk], [junk, EXPECTED], [EXPECTED, os.path.join(TMP, "absent.safetensors")],
                 [EXPECTED], [EXPECTED, EXPECTED, "--numerics", "fuzzy"]):
        r = subprocess.run([BIN, "compare", *args], capture_output=True, text=True)
        assert r.returncode == 2, f"compare {args}: bad input must exit 2, got {r.returncode}\n{r.stdout}{r.stderr}"
        assert r.returncode != 2 or r.stderr.strip(), f"compare {args}: exit 2 needs a one-line error"


def main():
    passed = failed = 0
    for t in TESTS:
        try:
            t()
            print(f"ok   {t.__name__}")
            passed += 1
        except Exception:   # noqa: BLE001
            print(f"FAIL {t.__name__}")
            traceback.print_exc(limit=1, file=sys.stdout)
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
