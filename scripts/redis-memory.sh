#!/usr/bin/env bash
# Real mode's memory under steady writes (issue 15, item 5): six Redis servers, one controller
# (examples/controller.toml, a local state file), and one writer writing a fixed set of keys
# at a steady rate. Every 10 s it samples the primary's and the backup's `used_memory` and
# write log (`FCALL standby_status`: last position and trimmed position), then prints the
# memory after the first minute beside the memory at the end. Not part of `cargo test`: it
# runs for minutes and wants a quiet machine.
#
#     scripts/redis-memory.sh                       # 10 minutes, a write every 1 ms, 1000 keys
#     scripts/redis-memory.sh --minutes 2 --every-ms 1 --keys 1000
#
# The samples go to target/redis-memory.tsv (one line per sample). Needs redis-server and
# redis-cli (Debian: redis-server, redis-tools). Uses the demo's ports (7101-7113, 7200, 7300)
# and /tmp/standby-memory; stops everything it started on the way out.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
minutes=10 every_ms=1 keys=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --every-ms) every_ms="$2"; shift 2 ;;
        --keys) keys="$2"; shift 2 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "redis-memory: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "redis-memory: $tool is not installed" >&2; exit 2; }
done

RUSTFLAGS="" cargo build --release -p standby --target-dir target/real --bin standby
standby="$repo/target/real/release/standby"
dir=/tmp/standby-memory
out="$repo/target/redis-memory.tsv"
ports=(7101 7102 7103 7111 7112 7113)
controller_pid=""
cleanup() {
    [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null || true
    for port in "${ports[@]}"; do
        [ -f "$dir/$port.pid" ] && kill "$(cat "$dir/$port.pid")" 2>/dev/null || true
    done
}
trap cleanup EXIT

rm -rf "$dir" && mkdir -p "$dir"
sed "s#/tmp/standby-demo#$dir#" examples/controller.toml > "$dir/controller.toml"
cp examples/writer.password "$dir/"
"$standby" redis-setup --config "$dir/controller.toml" --acl-file "$dir/users.acl" > "$dir/redis.conf"
for port in "${ports[@]}"; do
    mkdir -p "$dir/$port"
    redis-server "$dir/redis.conf" --port "$port" --dir "$dir/$port" --daemonize yes \
        --pidfile "$dir/$port.pid" --logfile "$dir/$port.log"
done
"$standby" controller --config "$dir/controller.toml" 2> "$dir/controller.log" &
controller_pid=$!
sleep 3

# The agent may run INFO and the library's status; the writer's password is the example's.
sample() { # port -> used_memory lsn trimmed
    local cli=(redis-cli -p "$1" --user agent --pass change-me-agent --no-auth-warning)
    local used status
    used=$("${cli[@]}" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
    status=$("${cli[@]}" FCALL standby_status 0 | tr '\n' ' ')
    # standby_status: epoch role lsn lease_left now trimmed
    echo "$used $(echo "$status" | awk '{ print $3, $6 }')"
}

seconds=$((minutes * 60))
"$standby" client --config-center 127.0.0.1:7200 --user 0 \
    --writer-password-file "$dir/writer.password" \
    bench --every-ms "$every_ms" --for-s "$seconds" --key-prefix mem: --keys "$keys" \
    > "$dir/bench.log" &
bench_pid=$!
printf 't_s\tprimary_used\tprimary_lsn\tprimary_trimmed\tbackup_used\tbackup_lsn\tbackup_trimmed\n' > "$out"
for t in $(seq 10 10 "$seconds"); do
    sleep 10
    read -r pu pl pt < <(sample 7101)
    read -r bu bl bt < <(sample 7111)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$pu" "$pl" "$pt" "$bu" "$bl" "$bt" | tee -a "$out"
done
wait "$bench_pid"
tail -1 "$dir/bench.log"

awk -F'\t' 'NR > 1 { rows[NR] = $0; if ($1 == 60) { p1 = $2; b1 = $5 } last_p = $2; last_b = $5; t = $1; log_p = $3 - $4; log_b = $6 - $7 }
    END {
        if (p1 == "") { print "redis-memory: no sample at 60 s (run at least 2 minutes)"; exit 1 }
        printf "primary a/0: used_memory %d bytes after 60 s, %d after %d s (%+.1f%%); its log holds %d entries\n", p1, last_p, t, (last_p - p1) * 100 / p1, log_p
        printf "backup  b/0: used_memory %d bytes after 60 s, %d after %d s (%+.1f%%); its log holds %d entries\n", b1, last_b, t, (last_b - b1) * 100 / b1, log_b
    }' "$out"
