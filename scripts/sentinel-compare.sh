#!/usr/bin/env bash
# standby beside Redis Sentinel on the same six Redis servers, the same faults and the same
# writers (issue 8, part 5). Not part of `cargo test`: it takes a while and wants a quiet
# machine. Run it from anywhere; paths are relative to the repository root.
#
# The full campaign (20 kill runs and 6 pause runs per tool and setting; appends one JSON line
# per run to target/sentinel-compare.jsonl, then prints the markdown tables):
#
#     scripts/sentinel-compare.sh --runs-kill 20 --runs-pause 6 --settings 1000,300
#
# A quick smoke run (2 kill runs and 1 pause run per cell):
#
#     scripts/sentinel-compare.sh --runs-kill 2 --runs-pause 1 --out target/sentinel-smoke.jsonl
#
# The tables of a results file, without running anything:
#
#     scripts/sentinel-compare.sh --report target/sentinel-compare.jsonl
#
# Other flags: --tools standby,sentinel  --faults kill,pause  --interval-ms 50  --lease-ms 150
# --client-route-wait-ms 2000  --keep (keep every run's directory; failed runs' are always kept).
# `--help` lists them all.
#
# Needs redis-server and redis-sentinel (Redis 7; Debian packages `redis-server` and
# `redis-sentinel`). Builds `standby` and the example into STANDBY_TARGET_DIR (default
# target/real), without the simulator's `--cfg madsim`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target_dir="${STANDBY_TARGET_DIR:-target/real}"

report_only=no
for arg in "$@"; do
    case "$arg" in
        --report | --report=* | -h | --help) report_only=yes ;;
    esac
done

missing=()
if [ "$report_only" = no ]; then
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "sentinel-compare: not installed: ${missing[*]}." >&2
    echo "Install Redis 7 with its Sentinel, e.g. on Debian or Ubuntu:" >&2
    echo "    sudo apt-get install -y redis-server redis-sentinel" >&2
    exit 2
fi

# RUSTFLAGS="" drops the `--cfg madsim` of .cargo/config.toml: a real build.
RUSTFLAGS="" cargo build --release -p standby --target-dir "$target_dir" \
    --bin standby --example sentinel_compare

exec "$target_dir/release/examples/sentinel_compare" \
    --standby-bin "$target_dir/release/standby" "$@"
