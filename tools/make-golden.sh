#!/usr/bin/env bash
# make golden: regenerates golden/ with the reference (deterministic RNG, fixed order).
set -eu
exec ./build/dsv4ref golden --out golden
