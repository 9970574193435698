source /tmp/fence/bin/run.sh; cd /tmp/fence; rm -rf e4d; LIB="\"\$(cat /work/main/src/real/standby.lua)\""
tm() { local t=($(redis-cli -p $1 TIME)); echo $(( ${t[0]} * 1000 + ${t[1]} / 1000 )); }
echo "## 4d: old master with a divergent suffix rejoins as replica of the promoted one"
bin/start.sh 7411 /tmp/fence/e4d/a; bin/start.sh 7412 /tmp/fence/e4d/b --replicaof 127.0.0.1 7411; sleep 1
A="redis-cli -p 7411"; B="redis-cli -p 7412"
run $A FUNCTION LOAD $LIB
run $A FCALL standby_grant 0 1 primary '$(( $(tm 7411) + 20000 ))'
for i in 1 2 3; do run $A FCALL standby_write 1 x$i 1 v$i "| head -1"; done
sleep 0.1
echo "stop replication, promote b (stop point = b's lsn)"
run $B REPLICAOF NO ONE
run $B FCALL standby_status 0 "| tr '\n' ' '"
run $A INFO replication "| grep -E 'master_replid:|master_repl_offset'"
run $B INFO replication "| grep -E 'master_replid|second_repl_offset|master_repl_offset'"
echo "a still holds its lease: divergent writes"
for i in 4 5; do run $A FCALL standby_write 1 x$i 1 v$i "| head -1"; done
run $A FCALL standby_fence 0 2
run $B FCALL standby_grant 0 2 primary '$(( $(tm 7412) + 20000 ))'
run $B FCALL standby_write 1 y4 2 w4 "| head -1"
run $A FCALL standby_suffix 0 3 "| tr '\n' ' '"
run $A INFO replication "| grep -E 'master_repl_offset'"
run $A REPLICAOF 127.0.0.1 7412
until $A INFO replication | grep -q link_status:up; do sleep 0.1; done
run "grep -E 'Partial|Full resync|keys loaded' e4d/a/r7411.log | cut -c1-140"
run "grep -E 'Partial|Full resync|psync' e4d/b/r7412.log | cut -c1-160"
run $A KEYS "'*'" "| sort | tr '\n' ' '"
run $A FCALL standby_suffix 0 3 "| tr '\n' ' '"
run $A FCALL standby_status 0 "| tr '\n' ' '"
echo "## 4d': same, but a takes no write after the stop point"
bin/start.sh 7413 /tmp/fence/e4d/a2; bin/start.sh 7414 /tmp/fence/e4d/b2 --replicaof 127.0.0.1 7413; sleep 1
A2="redis-cli -p 7413"; B2="redis-cli -p 7414"
$A2 FUNCTION LOAD "$(cat /work/main/src/real/standby.lua)" >/dev/null; $A2 FCALL standby_grant 0 1 primary $(( $(tm 7413) + 20000 )) >/dev/null
for i in 1 2 3; do $A2 FCALL standby_write 1 x$i 1 v$i >/dev/null; done; sleep 0.1
run $B2 REPLICAOF NO ONE; run $A2 FCALL standby_fence 0 2
run $A2 REPLICAOF 127.0.0.1 7414
until $A2 INFO replication | grep -q link_status:up; do sleep 0.1; done
run "grep -E 'Partial|Full resync' e4d/a2/r7413.log | cut -c1-140"
echo "again after a waits 12 s (no writes, but a master pings its replicas every repl-ping-replica-period=10 s)"
run $A2 REPLICAOF NO ONE; run $B2 REPLICAOF 127.0.0.1 7413; until $B2 INFO replication | grep -q link_status:up; do sleep 0.1; done
run $A2 INFO replication "| grep -E 'master_repl_offset|connected_slaves'"
sleep 0.2; run $B2 REPLICAOF NO ONE; run $A2 INFO replication "| grep -E 'master_repl_offset|connected_slaves'"; sleep 12; run $A2 INFO replication "| grep -E 'master_repl_offset'"
run $A2 REPLICAOF 127.0.0.1 7414
until $A2 INFO replication | grep -q link_status:up; do sleep 0.1; done
run "grep -E 'Partial|Full resync' e4d/a2/r7413.log | tail -2 | cut -c1-140"
for p in 7411 7412 7413 7414; do redis-cli -p $p SHUTDOWN NOSAVE >/dev/null; done
