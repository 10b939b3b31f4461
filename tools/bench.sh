#!/usr/bin/env bash
# make bench: benchmarks that print ratios measured side by side in one run.
set -eu
exec ./build/dsv4ref bench "$@"
