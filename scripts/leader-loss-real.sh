#!/usr/bin/env bash
# The leader-loss benchmark on a real etcd (BENCHMARKS.md, "Leader loss"): the README demo's
# six Redis servers, one etcd and the three replicas of examples/controller-{0,1,2}.toml
# (etcd lease TTL 5 s, heartbeats every 100 ms). RUNS times (default 20): SIGKILL the
# leading replica, and time until another replica's own status says it leads. A replica
# says so once its controller has restored the state from etcd and run its first loop
# iteration, which sends its first heartbeat round. Polled every 20 ms or so (each poll is
# one `standby status` process). Then the killed replica is started again, and stands by.
# Prints each run, then the median and the maximum; the target is at most TTL + one
# heartbeat interval (5,100 ms).
#
#     scripts/leader-loss-real.sh [RUNS]
#
# Needs redis-server and etcd (Debian's redis-server and etcd-server) and builds the real
# binary. Uses /tmp/standby-leader-loss and the demo's ports (7101-7113, 7200-7202,
# 7300-7302, 7379-7380): nothing else may run on them. Stops whatever it started.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"

RUSTFLAGS="" cargo build --release -p standby --target-dir target/real
export PATH="$PWD/target/real/release:$PATH"
dir=/tmp/standby-leader-loss
servers='redis-server .*:(710[123]|711[123])$'
cleanup() {
    pkill -9 -f "standby controller --config examples/controller-" 2>/dev/null || true
    pkill -9 -f "etcd --data-dir $dir/etcd" 2>/dev/null || true
    pkill -9 -f "$servers" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$dir"
mkdir -p "$dir"

standby redis-setup --config examples/controller.toml --acl-file "$dir/users.acl" > "$dir/redis.conf"
for port in 7101 7102 7103 7111 7112 7113; do
    mkdir -p "$dir/$port"
    redis-server "$dir/redis.conf" --port $port --dir "$dir/$port" --daemonize yes \
        --pidfile "$dir/$port.pid" --logfile "$dir/$port.log"
done
(etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:7379 \
    --advertise-client-urls http://127.0.0.1:7379 --listen-peer-urls http://127.0.0.1:7380 \
    --initial-advertise-peer-urls http://127.0.0.1:7380 \
    --initial-cluster default=http://127.0.0.1:7380 2> "$dir/etcd.log" &)
sleep 2
# In a subshell of its own: not a job of this shell, whose kill it would report.
replica() { (standby controller --config "examples/controller-$1.toml" 2>> "$dir/controller-$1.log" &); }
replica 0; replica 1; replica 2
all="--controller 127.0.0.1:7300 --controller 127.0.0.1:7301 --controller 127.0.0.1:7302"

# The replica (0-2) whose own status says it leads, if any but $1.
leading_other() {
    local r
    for r in 0 1 2; do
        [ "$r" = "$1" ] && continue
        if standby status --controller "127.0.0.1:730$r" 2>/dev/null | grep -q "^replica .* (leading)"; then
            echo "$r"
            return 0
        fi
    done
    return 1
}

times=()
for run in $(seq "$runs"); do
    # A leader, and every replica registered, before the kill.
    for _ in $(seq 200); do
        leader=$(standby status $all --leader 2>/dev/null || true)
        if [ -n "$leader" ] && leading_other none >/dev/null \
            && [ "$(standby status $all | grep -c '^  controller-')" = 3 ]; then
            break
        fi
        sleep 0.1
    done
    r="${leader#controller-}"
    start=$(date +%s%N)
    pkill -9 -f "examples/controller-$r.toml"
    until next=$(leading_other "$r"); do :; done
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    times+=("$ms")
    echo "run $run: controller-$r killed; controller-$next leads after $ms ms"
    replica "$r"
    sleep 2
done

sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2) }')
max=$(echo "$sorted" | tail -1)
echo "leader loss on real etcd, $runs runs: median $median ms, max $max ms (target: at most 5100 ms, TTL 5 s + one 100 ms interval)"
