source /tmp/fence/bin/run.sh; cd /tmp/fence; rm -rf e3
echo "## 3b: node state in a hash written with redis.set_repl(redis.REPL_AOF)"
bin/start.sh 7351 /tmp/fence/e3/m --appendonly yes; bin/start.sh 7352 /tmp/fence/e3/r --replicaof 127.0.0.1 7351; sleep 1
M="redis-cli -p 7351"; S="redis-cli -p 7352"
run $M FUNCTION LOAD "\"#!lua name=h
redis.register_function('hgrant', function(keys, args)
  redis.set_repl(redis.REPL_AOF)
  redis.call('HSET', 'standby:node', 'epoch', args[1], 'role', 'primary')
  redis.set_repl(redis.REPL_ALL)
  return redis.call('TIME')[1]
end)\""
run $M FCALL hgrant 0 7
sleep 0.2
run $M HGETALL standby:node
run $S HGETALL standby:node "# replica after the command stream"
run $S FCALL hgrant 0 8
run "tr -d '\r' < e3/m/appendonlydir/*.incr.aof | grep -c standby:node"
echo "full sync: restart the replica without its dump.rdb so it cannot partially resync"
run $S SHUTDOWN NOSAVE; rm -f e3/r/dump.rdb; bin/start.sh 7352 /tmp/fence/e3/r --replicaof 127.0.0.1 7351; sleep 1.5
run "grep -E 'Full resync|Partial|keys loaded' e3/r/r7352.log | tail -2 | cut -c1-120"
run $S HGETALL standby:node "# replica after full sync"
echo "master restart from its AOF (kill -9):"
kill -9 $(cat e3/m/r7351.pid); sleep 0.3; bin/start.sh 7351 /tmp/fence/e3/m --appendonly yes
until $S INFO replication | grep -q link_status:up; do sleep 0.1; done
run $M HGETALL standby:node
echo "## 3c: state in a Lua upvalue (what standby.lua does)"
run $M FUNCTION LOAD "\"#!lua name=u
local st = {n = 0}
redis.register_function{function_name='bump', flags={'no-writes'}, callback=function(keys, args) st.n = st.n + 1; return st.n end}
redis.register_function{function_name='glob', flags={'no-writes'}, callback=function(keys, args) xyz = 1; return 1 end}\""
run $M FCALL bump 0; run $M FCALL bump 0; run $S FCALL bump 0; run $S FCALL bump 0; run $S FCALL bump 0; run $M FCALL bump 0
run $M FCALL glob 0
run $M FUNCTION LOAD REPLACE "\"#!lua name=u
local st = {n = 100}
redis.register_function{function_name='bump', flags={'no-writes'}, callback=function(keys, args) st.n = st.n + 1; return st.n end}\""
sleep 0.1; run $M FCALL bump 0; run $S FCALL bump 0 "# replica: library replaced by replication"
run $M FUNCTION LOAD "\"#!lua name=other
redis.register_function{function_name='nop', flags={'no-writes'}, callback=function() return 1 end}\""
run $M FCALL bump 0 "# loading another library leaves u's state"
run $M DEBUG RELOAD; run $M FCALL bump 0 "# after DEBUG RELOAD"
for p in 7351 7352; do redis-cli -p $p SHUTDOWN NOSAVE >/dev/null; done
