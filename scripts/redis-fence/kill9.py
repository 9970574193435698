# kill -9 a redis-server and measure: time until an open connection sees EOF/RST, and until a
# new connect() is refused (trying every 1 ms). usage: kill9.py PORT PIDFILE
import os, signal, socket, sys, time
port, pid = int(sys.argv[1]), int(open(sys.argv[2]).read())
s = socket.create_connection(('127.0.0.1', port)); s.sendall(b'PING\r\n'); s.recv(64); s.setblocking(False)
t0 = time.monotonic(); os.kill(pid, signal.SIGKILL)
eof = refused = None; tries = 0
while eof is None or refused is None:
    if eof is None:
        try:
            if s.recv(64) == b'': eof = time.monotonic() - t0
        except BlockingIOError: pass
        except OSError as e: eof = time.monotonic() - t0
    if refused is None:
        tries += 1
        try:
            c = socket.create_connection(('127.0.0.1', port), timeout=0.5); c.close()
        except ConnectionRefusedError: refused = time.monotonic() - t0
    time.sleep(0.001)
    if time.monotonic() - t0 > 5: break
print('open conn EOF after %.2f ms; first ECONNREFUSED after %.2f ms (%d connect attempts)' % (eof * 1000, refused * 1000, tries))
