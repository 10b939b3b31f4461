#!/usr/bin/env python3
"""Every golden file of golden/official/ (made by DeepSeek's official code) against dsv4ref.

For each file, two runs of `$DSV4REF_BIN check FILE`:
  teacher  --teacher-forcing --dump D: each Block fed the golden previous output; every tap
           judged (by `check` itself and by official_compare.py --mode teacher on D);
  free     --dump D: the whole schedule on our own outputs; only the logits judged
           (official_compare.py --mode free).
official_compare.py is found through $DSV4REF_SHARED (set by tools/run-tests.sh); without it
the test is skipped with a message. Pure standard library. Last line: "N passed, M failed,
K skipped".

KNOWN lists the runs that fail for a measured, documented reason (spec/model.md,
"Verification against the official golden files"); they are still run and printed with their
numbers, counted as skipped while they fail, and an unexpected pass (XPASS) FAILS the test so
that the list is kept true.
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KNOWN = {}   # every run passes (2026-11-28); a future documented failure goes here


def main():
    binary = os.environ.get("DSV4REF_BIN", os.path.join(ROOT, "build", "dsv4ref"))
    shared = os.environ.get("DSV4REF_SHARED", os.path.join(ROOT, "..", "shared"))
    judge = os.path.join(shared, "tools", "official_compare.py")
    if not os.path.isfile(judge):
        print(f"skip: {judge} not found (set DSV4REF_SHARED to the shared material)")
        print("0 passed, 0 failed")
        return 0
    if not os.path.isfile(binary):
        print(f"error: {binary} not built (make ref)")
        print("0 passed, 1 failed")
        return 1
    gdir = os.path.join(ROOT, "golden", "official")
    files = sorted(f for f in os.listdir(gdir) if ".safetensors" in f)
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory(prefix="dsv4ref-official-") as tmp:
        for name in files:
            path = os.path.join(gdir, name)
            for mode in ("teacher", "free"):
                dump = os.path.join(tmp, f"{name}.{mode}.safetensors")
                cmd = [binary, "check", path, "--dump", dump]
                if mode == "teacher":
                    cmd.insert(3, "--teacher-forcing")
                r = subprocess.run(cmd, capture_output=True, text=True)
                ok_check = r.returncode == 0
                summary = [l for l in r.stdout.splitlines() if l.startswith(("FAIL", "ok   logits"))]
                if r.returncode == 2 or not os.path.isfile(dump):
                    print(f"FAIL {name} [{mode}]: dsv4ref check exit {r.returncode}: "
                          f"{(r.stderr or r.stdout).strip().splitlines()[-1:] }")
                    failed += 1
                    continue
                j = subprocess.run([sys.executable, judge, path, dump, "--mode", mode],
                                   capture_output=True, text=True)
                ok_judge = j.returncode == 0
                jl = j.stdout.strip().splitlines()
                ok = ok_check and ok_judge
                known = KNOWN.get((name.split(".")[0], mode))
                tag = ("XPASS" if known else "ok  ") if ok else ("xfail" if known else "FAIL")
                print(f"{tag} {name} [{mode}]: check exit {r.returncode}, official_compare: "
                      f"{jl[-1] if jl else '?'}" + (f" (known: {known})" if known and not ok else ""))
                if not ok:
                    for line in summary[:8]:
                        print("     check:", line)
                    for line in [l for l in jl if l.startswith("FAIL")][:8]:
                        print("     judge:", line)
                if ok and known:
                    print("     XPASS: this run now passes; remove it from KNOWN")
                    failed += 1
                elif ok:
                    passed += 1
                elif known:
                    skipped += 1
                else:
                    failed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
