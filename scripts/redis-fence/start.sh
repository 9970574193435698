#!/bin/bash
# start.sh PORT DIR [extra redis-server args...]
p=$1; d=$2; shift 2; mkdir -p $d
redis-server --port $p --save '' --appendonly no --daemonize yes --dir $d --pidfile $d/r$p.pid --logfile $d/r$p.log --repl-diskless-sync-delay 0 --enable-debug-command local "$@"
for i in $(seq 50); do redis-cli -p $p PING >/dev/null 2>&1 && break; sleep 0.05; done
