# SIGSTOP scenarios against a master running standby.lua. usage: stopwrite.py PORT PIDFILE MODE
#  MODE=queued : SIGSTOP, then send FCALL write (+ a plain SET) during the pause, SIGCONT after 2 s
#  MODE=race   : send FCALL write, SIGSTOP immediately (no wait), SIGCONT after 2 s
#  MODE=grant  : SIGSTOP, send a grant whose absolute deadline is now+800ms, SIGCONT after 2 s, then write
import os, signal, sys, time, threading
sys.path.insert(0, '/tmp/fence/bin'); from resp import R
port, pid, mode = int(sys.argv[1]), int(open(sys.argv[2]).read()), sys.argv[3]
ctl = R(port)
def ms(t): return int(t * 1000)
now = lambda: int(ctl('TIME')[0]) * 1000 + int(ctl('TIME')[1]) // 1000
def redis_ms():
    t = ctl('TIME'); return int(t[0]) * 1000 + int(t[1]) // 1000
ctl('FCALL', 'standby_fence', 0, 0)  # no-op if epoch already higher; resets lease
st = ctl('FCALL', 'standby_status', 0); ep = st[0] + 1
if mode != 'grant':
    print('grant epoch', ep, 'lease 1000 ms ->', ctl('FCALL', 'standby_grant', 0, ep, 'primary', redis_ms() + 1000))
    print('write before pause ->', ctl('FCALL', 'standby_write', 1, 'k', ep, 'before'))
c1, c2 = R(port), R(port)
t0 = time.time()
if mode == 'queued':
    os.kill(pid, signal.SIGSTOP); time.sleep(0.02)
    c1.send('FCALL', 'standby_write', 1, 'k', ep, 'sent-during-pause'); c2.send('SET', 'plain', 'sent-during-pause')
elif mode == 'race':
    c1.send('FCALL', 'standby_write', 1, 'k', ep, 'sent-just-before-pause'); os.kill(pid, signal.SIGSTOP)
elif mode == 'grant':
    dl = redis_ms() + 800
    os.kill(pid, signal.SIGSTOP); time.sleep(0.02)
    c1.send('FCALL', 'standby_grant', 0, ep, 'primary', dl)
print('sent at +%d ms (server stopped at +0)' % ms(time.time() - t0))
time.sleep(2); os.kill(pid, signal.SIGCONT); t1 = time.time()
r1 = c1.read(); t2 = time.time(); print('reply +%d ms after SIGCONT: %r' % (ms(t2 - t1), r1))
if isinstance(r1, list):
    el = ms(t2 - t0); print('client: send->reply %d ms > ms left at execution %d ms -> %s' % (el, r1[1], 'UNKNOWN FATE, not acked' if el >= r1[1] else 'acked'))
if mode == 'queued': print('plain SET reply:', repr(c2.read()), '; GET plain =', ctl('GET', 'plain'))
if mode == 'grant': print('write after ->', repr(ctl('FCALL', 'standby_write', 1, 'k', ep, 'after-late-grant')))
print('GET k =', ctl('GET', 'k'), '; status =', ctl('FCALL', 'standby_status', 0))
