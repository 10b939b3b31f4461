#!/usr/bin/env python3
"""The worked example of spec/validating-your-implementation.md runs as documented:
tools/examples/compressor_numpy.py (numpy only, written from the spec) recomputes the V4
compressor of the unit golden files, dumps it, and `dsv4ref compare` passes it; with the
planted RoPE-layout bug (pitfall 2) the compare fails and names the tensor.
Prints "N passed, M failed"."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("DSV4REF_BIN", os.path.join(ROOT, "build", "ref", "dsv4ref"))
EX = os.path.join(ROOT, "tools", "examples", "compressor_numpy.py")
TMP = tempfile.mkdtemp(prefix="dsv4ref-example-")


def run(golden, *extra):
    dump = os.path.join(TMP, os.path.basename(golden))
    r = subprocess.run([sys.executable, EX, os.path.join(ROOT, "golden", golden), dump, "--compare", BIN, *extra],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    passed = failed = 0
    cases = [
        ("compressor_hca_exact.safetensors", (), 0, None,
         "the spec-only numpy compressor (ratio 8) must pass compare; likely bug: the spec page and the golden disagree"),
        ("compressor_csa_exact.safetensors", (), 0, None,
         "the spec-only numpy compressor (ratio 4, overlap) must pass compare"),
        ("compressor_hca_exact.safetensors", ("--bug", "rope-half"), 1, "FAIL taps.6.layers.0.attn.compressor",
         "a half-split RoPE (pitfall 2) must fail compare and name the tap"),
    ]
    for golden, extra, want_rc, want_text, why in cases:
        rc, out = run(golden, *extra)
        ok = rc == want_rc and (want_text is None or want_text in out)
        name = f"{golden} {' '.join(extra)}".strip()
        print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {rc}")
        if not ok:
            print(f"     expected exit {want_rc}{' and ' + repr(want_text) if want_text else ''}: {why}")
            print("     | " + out.replace("\n", "\n     | "))
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
