#!/usr/bin/env bash
# Installs what the tests need when it is missing: cmocka (C unit tests) and numpy (the
# Python oracle). Runs quietly when everything is there. As root it uses apt-get (cmocka,
# and python3-numpy as a fallback) and pip (numpy for the python3 on PATH); otherwise it
# says what to install and fails.
set -u
need_cmocka=0; need_numpy=0
if ! echo '#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
int main(void){return 0;}' | ${CC:-cc} -x c - -o /dev/null -lcmocka >/dev/null 2>&1; then need_cmocka=1; fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import numpy' >/dev/null 2>&1; then need_numpy=1; fi
[ $need_cmocka = 0 ] && [ $need_numpy = 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  [ $need_cmocka = 1 ] && echo "missing: cmocka — install it with: sudo apt-get install libcmocka-dev" >&2
  [ $need_numpy = 1 ] && echo "missing: numpy for $PY — install it with: $PY -m pip install numpy (or apt-get install python3-numpy)" >&2
  exit 1
fi
if [ $need_cmocka = 1 ]; then
  echo "installing libcmocka-dev (apt-get)..." >&2
  (apt-get update -qq || true) >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcmocka-dev >/dev/null 2>&1 \
    || { echo "error: apt-get install libcmocka-dev failed" >&2; exit 1; }
fi
if [ $need_numpy = 1 ]; then
  echo "installing numpy for $PY (pip)..." >&2
  if ! "$PY" -m pip install -q numpy >/dev/null 2>&1; then
    echo "pip failed; trying apt-get python3-numpy" >&2
    (apt-get update -qq || true) >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy >/dev/null 2>&1 || true
  fi
  "$PY" -c 'import numpy' >/dev/null 2>&1 || { echo "error: numpy still missing for $PY" >&2; exit 1; }
fi
exit 0
