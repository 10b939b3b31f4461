#!/usr/bin/env python3
"""The OpenMP kernel set gives the reference's bits on every golden file (spec/backends.md [BK-4]).

For each file of golden/official/: `$DSV4REF_BIN check FILE --backend ref --dump A` and
`--backend omp --dump B` at OMP_NUM_THREADS = 1, 2, 3; A and B must be identical byte for
byte (every tap of every call, the whole forward: attention, indexer, compressor, MoE, mHC,
head; the V3.2 MLA/DSA file too). Official numerics (the file's) at 1, 2 and 3 threads, exact
numerics at 3 threads. `check` may report a comparison failure against the golden file
(exit 1): that is the reference's business; only an error (exit 2) or a missing dump fails here.

Fast mode (only the files under 2 MB): DSV4REF_OMP_GOLDEN=quick, or automatically when the
binary is a sanitizer build (its path contains /asan/ or /ubsan/). Pure standard library.
Last line: "N passed, M failed". Likely bugs on failure: a reduction split across threads, a
scratch buffer shared between threads, a kernel whose omp twin differs in one rounding step.
"""
import filecmp
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_check(binary, path, backend, numerics, threads, dump):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [binary, "check", path, "--backend", backend, "--dump", dump]
    if numerics:
        cmd += ["--numerics", numerics]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode not in (0, 1) or not os.path.isfile(dump):
        msg = (r.stderr or r.stdout).strip().splitlines()
        return f"exit {r.returncode}: {msg[-1] if msg else '?'}"
    return None


def main():
    binary = os.environ.get("DSV4REF_BIN", os.path.join(ROOT, "build", "dsv4ref"))
    if not os.path.isfile(binary):
        print(f"error: {binary} not built (make ref)")
        print("0 passed, 1 failed")
        return 1
    quick = os.environ.get("DSV4REF_OMP_GOLDEN") == "quick" or \
        any(s in binary for s in ("/asan/", "/ubsan/"))
    gdir = os.path.join(ROOT, "golden", "official")
    files = sorted(f for f in os.listdir(gdir) if ".safetensors" in f)
    if quick:
        files = [f for f in files if os.path.getsize(os.path.join(gdir, f)) < 2 << 20]
        print(f"quick mode: {', '.join(files)}")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="dsv4ref-omp-") as tmp:
        for name in files:
            path = os.path.join(gdir, name)
            for numerics, threads in ((None, (1, 2, 3)), ("exact", (3,))):
                label = numerics or "file's numerics"
                ref = os.path.join(tmp, "ref.safetensors")
                err = run_check(binary, path, "ref", numerics, 1, ref)
                if err:
                    print(f"FAIL {name} [{label}] ref: {err}")
                    failed += 1
                    continue
                for t in threads:
                    omp = os.path.join(tmp, f"omp{t}.safetensors")
                    err = run_check(binary, path, "omp", numerics, t, omp)
                    if err:
                        print(f"FAIL {name} [{label}] omp x{t}: {err}")
                        failed += 1
                    elif not filecmp.cmp(ref, omp, shallow=False):
                        print(f"FAIL {name} [{label}] omp x{t}: dump differs from ref — likely bug: "
                              f"a reduction split across threads or an omp kernel rounding "
                              f"differently (compare: dsv4ref compare A B)")
                        failed += 1
                    else:
                        print(f"ok   {name} [{label}] omp x{t}: every tap identical to ref")
                        passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
