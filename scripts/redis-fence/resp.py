# minimal RESP2 client for experiments (no deps)
import socket
class R:
    def __init__(s, port, host='127.0.0.1', timeout=None):
        s.s = socket.create_connection((host, port), timeout=timeout); s.f = s.s.makefile('rb')
    def send(s, *a):
        out = b'*%d\r\n' % len(a)
        for x in a:
            x = x if isinstance(x, bytes) else str(x).encode()
            out += b'$%d\r\n%s\r\n' % (len(x), x)
        s.s.sendall(out)
    def read(s):
        l = s.f.readline()
        if not l: raise ConnectionError('closed')
        t, r = l[:1], l[1:-2]
        if t == b'+': return r.decode()
        if t == b'-': return Err(r.decode())
        if t == b':': return int(r)
        if t == b'$':
            n = int(r)
            if n < 0: return None
            d = s.f.read(n + 2)[:-2]
            try: return d.decode()
            except: return d
        if t == b'*':
            n = int(r)
            return None if n < 0 else [s.read() for _ in range(n)]
        raise ValueError(l)
    def __call__(s, *a):
        s.send(*a); return s.read()
class Err(str):
    def __repr__(s): return '(error) ' + str.__str__(s)
