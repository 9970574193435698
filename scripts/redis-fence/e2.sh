source /tmp/fence/bin/run.sh; cd /tmp/fence; rm -rf e2; mkdir -p e2/m e2/r
echo "## 2a: rename-command (same renames on master and replica, appendonly yes)"
mk() { { echo "port $1"; echo "dir /tmp/fence/e2/$2"; echo "save ''"; echo "appendonly yes"; echo "daemonize yes"; echo "pidfile /tmp/fence/e2/$2/r.pid"; echo "logfile /tmp/fence/e2/$2/r.log"; echo "repl-diskless-sync-delay 0"
    for c in set del incrbyfloat xadd pexpire unlink hset incr getex; do echo "rename-command $c sb_$c"; done; echo "$3"; } > /tmp/fence/e2/$2/redis.conf; }
mk 7201 m ""; mk 7202 r "replicaof 127.0.0.1 7201"; grep rename e2/m/redis.conf | tr '\n' ';'; echo
redis-server e2/m/redis.conf; redis-server e2/r/redis.conf; sleep 1.5
M="redis-cli -p 7201"; S="redis-cli -p 7202"
run $M SET a 1
run $M FUNCTION LOAD "\"#!lua name=w
redis.register_function('w', function(keys, args) return redis.call(args[1], keys[1], unpack(args, 2)) end)\""
run $M FCALL w 1 a SET 2
run $M FCALL w 1 a sb_set 2
run $M FCALL w 1 f sb_incrbyfloat 2.5
run $M FCALL w 1 e sb_set x PX 300
run $M FCALL w 1 q sb_set 1 EX 100
run $M FCALL w 1 g sb_set y
run $M FCALL w 1 g sb_getex EX 100
run $M FCALL w 1 s sb_xadd "'*'" f v
sleep 0.6; run $M GET e
sleep 0.3
run $M KEYS "'*'" "| sort | tr '\n' ' '"
run $S KEYS "'*'" "| sort | tr '\n' ' '"
run $S INFO replication "| grep link_status"
run grep -o "'CRITICAL.*'" e2/r/r.log
run "cat -v e2/m/appendonlydir/*.incr.aof | tr -d '\r' | grep -A1 -E '^(SET|DEL|PEXPIREAT|sb_.*)$' | grep -vE '^(\\$|--)' | tr '\n' ' '"
run $M SHUTDOWN NOSAVE; sleep 0.3; redis-server e2/m/redis.conf; sleep 1; run $M PING; run "tail -1 e2/m/r.log | cut -c1-200"
$S SHUTDOWN NOSAVE >/dev/null
echo "## 2b: COMMAND counts"
bin/start.sh 7203 /tmp/fence/e2/c
run redis-cli -p 7203 COMMAND COUNT
run redis-cli -p 7203 COMMAND LIST FILTERBY ACLCAT write "| wc -l"
run redis-cli -p 7203 COMMAND LIST FILTERBY ACLCAT write "| grep -c '|'"
python3 -c "
import sys; sys.path.insert(0,'/tmp/fence/bin'); from resp import R
r=R(7203); cmds=r('COMMAND')
top=[c[0] for c in cmds if 'write' in c[2]]; sub=[s[0] for c in cmds for s in (c[9] or []) if 'write' in s[2]]
print('    top-level commands with flag write:', len(top), '; subcommands with flag write:', len(sub), sub)"
redis-cli -p 7203 SHUTDOWN NOSAVE
echo "## 2c: min-replicas-to-write 1, min-replicas-max-lag 1"
bin/start.sh 7301 /tmp/fence/e2/mr --min-replicas-to-write 1 --min-replicas-max-lag 1
bin/start.sh 7302 /tmp/fence/e2/mr --replicaof 127.0.0.1 7301; sleep 1.5
M="redis-cli -p 7301"
run $M INFO replication "| grep -E 'min_slaves|slave0'"
run $M FUNCTION LOAD "\"#!lua name=t
redis.register_function('w', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\""
kill -STOP $(cat e2/mr/r7302.pid); sleep 3
run $M SET k 1; run $M FCALL w 1 k 1; run $M EVAL "\"return redis.call('SET','k','4')\"" 0; run $M EVAL "\"#!lua flags=no-writes
return 1\"" 0; run $M INFO replication "| grep -E 'min_slaves|slave0'"
kill -CONT $(cat e2/mr/r7302.pid); sleep 2
echo "replica SIGSTOP -> first NOREPLICAS on master (SET every 10 ms):"
for i in 1 2 3 4 5 6; do
 $M SET k x >/dev/null; sleep 0.$((RANDOM%9+1)); kill -STOP $(cat e2/mr/r7302.pid); T0=$(date +%s%N)
 while true; do out=$($M SET k 2); [ "$out" != OK ] && break; sleep 0.01; done; T1=$(date +%s%N); echo -n "$(( (T1-T0)/1000000 )) ms; "
 kill -CONT $(cat e2/mr/r7302.pid); sleep 2.5; done; echo
echo "master SIGSTOP + replica SIGSTOP (partition), SET queued during the pause, master SIGCONT after 4 s:"
for i in 1 2 3 4 5; do
 sleep 1.5; $M SET k x >/dev/null
 kill -STOP $(cat e2/mr/r7301.pid); (redis-cli -p 7301 SET k during-pause-$i > e2/mr/out$i 2>&1 &) ; sleep 0.1; kill -STOP $(cat e2/mr/r7302.pid); sleep 4; kill -CONT $(cat e2/mr/r7301.pid); sleep 0.3
 echo "    run $i: reply=$(cat e2/mr/out$i) value=$($M GET k)"; $M SET k after >/dev/null 2>&1; kill -CONT $(cat e2/mr/r7302.pid); sleep 1
done
echo "## 2d: CLIENT PAUSE WRITE"
$M CONFIG SET min-replicas-to-write 0 >/dev/null
run $M CLIENT PAUSE 1500 WRITE; T0=$(date +%s%N); run $M FCALL w 1 k paused; T1=$(date +%s%N); echo "    (FCALL w returned after $(( (T1-T0)/1000000 )) ms)"
run $M CLIENT PAUSE 1000 WRITE; T0=$(date +%s%N); run $M SET k p2; run $M GET k; T1=$(date +%s%N); echo "    (SET+GET took $(( (T1-T0)/1000000 )) ms)"
for p in 7201 7301 7302; do redis-cli -p $p SHUTDOWN NOSAVE >/dev/null 2>&1; done
