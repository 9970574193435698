source /tmp/fence/bin/run.sh; cd /tmp/fence; rm -rf e1; bin/start.sh 7101 /tmp/fence/e1
R="redis-cli -p 7101"
echo "## 1a: ACL inside FCALL"
run $R FUNCTION LOAD "\"#!lua name=t
redis.register_function('wset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
redis.register_function{function_name='rget', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}\""
run $R ACL SETUSER u1 on '\>p1' +fcall +get "'~*'"
run $R ACL SETUSER u2 on '\>p2' +@read +fcall "'%R~*'"
run $R ACL SETUSER u3 on '\>p3' +@read +fcall +set "'%R~*'"
run $R ACL SETUSER u4 on '\>p4' +@read +fcall +fcall_ro "'%R~*'"
for u in 1 2 3; do run redis-cli -p 7101 --user u$u --pass p$u --no-auth-warning FCALL wset 1 k v; run redis-cli -p 7101 --user u$u --pass p$u --no-auth-warning SET k v; run redis-cli -p 7101 --user u$u --pass p$u --no-auth-warning FCALL rget 1 k; done
run redis-cli -p 7101 --user u4 --pass p4 --no-auth-warning FCALL_RO rget 1 k
run redis-cli -p 7101 --user u4 --pass p4 --no-auth-warning FCALL rget 0
run $R COMMAND INFO fcall "| tr '\n' ' '"
echo; echo "## 1b: the ACL design with standby.lua"
run $R FUNCTION LOAD REPLACE "\"\$(cat /work/main/src/real/standby.lua)\""
run $R ACL SETUSER agent on '\>pa' "'~standby:*'" +fcall +fcall_ro +echo +time +get +ping
run $R ACL SETUSER writer on '\>pw' "'~*'" +@read +fcall +fcall_ro +time +set +del +incr +xadd
run $R ACL SETUSER reader on '\>pr' "'~*'" +@read +fcall_ro
AG="redis-cli -p 7101 --user agent --pass pa --no-auth-warning"; WR="redis-cli -p 7101 --user writer --pass pw --no-auth-warning"; RD="redis-cli -p 7101 --user reader --pass pr --no-auth-warning"
NOW=$($R TIME | head -1)000
run $WR FCALL standby_grant 0 1 primary $((NOW+5000))
run $RD FCALL_RO standby_grant 0 1 primary $((NOW+5000))
run $RD FCALL_RO standby_fence 0 1
run $AG FCALL standby_grant 0 1 primary $((NOW+5000))
run $WR FCALL standby_write 1 d:k 1 v
run $RD FCALL standby_write 1 d:k 1 v
run $RD SET d:k v
run $RD FCALL_RO standby_status 0
run $AG FCALL standby_write 1 standby:x 1 v
run $WR SET d:k plain
run $AG FCALL standby_fence 0 2
run $WR FCALL standby_write 1 d:k 1 v
run $WR SET d:k plain-after-fence
redis-cli -p 7101 SHUTDOWN NOSAVE
