source /tmp/fence/bin/run.sh; cd /tmp/fence; rm -rf e4; LIB="\"\$(cat /work/main/src/real/standby.lua)\""
tm() { local t=($(redis-cli -p $1 TIME)); echo $(( ${t[0]} * 1000 + ${t[1]} / 1000 )); }
bin/start.sh 7401 /tmp/fence/e4/a --appendonly yes; bin/start.sh 7402 /tmp/fence/e4/b --appendonly yes --replicaof 127.0.0.1 7401; sleep 1
A="redis-cli -p 7401"; B="redis-cli -p 7402"
echo "## 4a: master a=7401, replica b=7402"
run $A FUNCTION LOAD $LIB
sleep 0.1; run $B FUNCTION LIST "| head -2"
run $B FUNCTION LOAD REPLACE $LIB
run $A FCALL standby_status 0 "| tr '\n' ' '"
run $A FCALL standby_write 1 k1 1 v1
run $B FCALL standby_grant 0 1 backup 0
run $B FCALL standby_status 0 "| tr '\n' ' '"
run $A FCALL standby_grant 0 1 primary '$(( $(tm 7401) + 500 ))'
run $A FCALL standby_write 1 k1 1 v1 "| tr '\\n' ' '"
run $A FCALL standby_write 1 k2 1 v2 "| tr '\\n' ' '"
run $A FCALL standby_del 1 k2 1
run $A FCALL standby_write 1 k2 0 v2
run $A FCALL standby_write 1 k2 2 v2
run $A FCALL standby_status 0 "| tr '\n' ' '"
sleep 0.05
run $B GET k1
run $B GET standby:lsn
run $B XRANGE standby:log - + "| tr '\n' ' '"
run $B FCALL standby_write 1 k3 1 v3
run $B FCALL standby_status 0 "| tr '\n' ' '"
run $A FCALL standby_grant 0 1 primary '$(( $(tm 7401) + 100 ))' "# a renewal with an earlier deadline does not shorten"
sleep 0.5
run $A FCALL standby_write 1 k3 1 v3
run $A FCALL standby_grant 0 0 primary '$(( $(tm 7401) + 5000 ))'
run $A FCALL standby_grant 0 1 primary '$(( $(tm 7401) + 100000 ))'
run $A FCALL standby_fence 0 1
run $A FCALL standby_write 1 k3 1 v3
run $A FCALL standby_grant 0 1 primary '$(( $(tm 7401) + 5000 ))'
run $A FCALL standby_suffix 0 1 "| tr '\n' ' '"
echo "## 4b: SIGSTOP of the master"
for m in queued race race race race race grant; do echo "--- mode $m"; python3 bin/stopwrite.py 7401 e4/a/r7401.pid $m | sed 's/^/    /'; done
echo "## 4e: restart with appendonly yes (kill -9 after grant + write)"
run $A FCALL standby_grant 0 10 primary '$(( $(tm 7401) + 30000 ))'
run $A FCALL standby_write 1 kr 10 before-crash
kill -9 $(cat e4/a/r7401.pid); sleep 0.3; bin/start.sh 7401 /tmp/fence/e4/a --appendonly yes
run $A GET kr
run $A FUNCTION LIST "| head -2"
run $A FCALL standby_status 0 "| tr '\n' ' '"
run $A FCALL standby_write 1 kr 10 after-restart
echo "restart from RDB only (appendonly no, SAVE then kill -9):"
run $A CONFIG SET appendonly no; run $A SAVE
kill -9 $(cat e4/a/r7401.pid); sleep 0.3; bin/start.sh 7401 /tmp/fence/e4/a --appendonly no
run $A GET kr; run $A FCALL standby_status 0 "| tr '\n' ' '"; run $A FCALL standby_write 1 kr 0 x
for p in 7401 7402; do redis-cli -p $p SHUTDOWN NOSAVE >/dev/null; done
echo "## 4c: kill -9 -> connection refused (5 runs)"
for i in 1 2 3 4 5; do bin/start.sh 7409 /tmp/fence/e4/k; python3 bin/kill9.py 7409 e4/k/r7409.pid | sed 's/^/    /'; done
