#!/usr/bin/env python3
"""Hold N idle keep-alive connections to one server, for benches/load/bench.py's memory test.

    python3 idle_connections.py HOST PORT N PATH EXPECTED_BODY_BYTES

Opens N TCP connections (at most BATCH connects in flight at once, so that no listen backlog
overflows), sends one complete `GET PATH HTTP/1.1` on each, and reads each full response
(status 200, a Content-Length of EXPECTED_BODY_BYTES, that many body bytes, no
`Connection: close`). Then every connection stays open and idle, and it prints

    READY open=N

and waits for one line on stdin (bench.py measures the server's memory in between). On that
line it checks that the server has closed none of the N (a connection the server closed reads
as end-of-file), prints

    STILL_OPEN k

closes them all and exits 0. Any failure (refused, reset, a wrong answer, a timeout) is a
line on stderr and exit status 1, so that a peer can't look lean by answering something else.
Python 3 standard library only (socket, selectors).
"""
import selectors
import socket
import sys
import time

BATCH = 128
TIMEOUT = 120.0  # seconds for opening and answering all N


def fail(msg):
    sys.stderr.write("idle_connections.py: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(1)


class Conn:
    __slots__ = ("sock", "state", "buf", "need", "n")

    def __init__(self, sock, n):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.need = -1  # total bytes of head + body once the head is parsed
        self.n = n


def main():
    if len(sys.argv) != 6:
        fail("usage: idle_connections.py HOST PORT N PATH EXPECTED_BODY_BYTES")
    host, port, n, path, body_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < n + 64:
            want = n + 64 if hard == resource.RLIM_INFINITY else min(hard, n + 64)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass
    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: idle_connections.py\r\n\r\n" % (path, host, port)).encode()

    sel = selectors.DefaultSelector()
    conns = []
    started = answered = 0
    deadline = time.monotonic() + TIMEOUT

    def start_one():
        nonlocal started
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            err = s.connect_ex((host, port))
        except OSError as e:
            fail("connection %d: connect: %s" % (started, e))
        if err not in (0, 115, 11):  # 0, EINPROGRESS, EAGAIN
            fail("connection %d: connect: errno %d" % (started, err))
        c = Conn(s, started)
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
        started += 1

    while answered < n:
        while started < n and started - answered < BATCH:
            start_one()
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timeout: %d of %d connections answered after %.0f s" % (answered, n, TIMEOUT))
        for key, _ in sel.select(timeout=min(left, 1.0)):
            c = key.data
            s = c.sock
            if c.state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail("connection %d: connect failed: errno %d" % (c.n, err))
                try:
                    s.sendall(request)  # a few dozen bytes: fits the empty send buffer
                except OSError as e:
                    fail("connection %d: send: %s" % (c.n, e))
                c.state = "reading"
                sel.modify(s, selectors.EVENT_READ, c)
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail("connection %d: recv: %s" % (c.n, e))
            if not data:
                fail("connection %d: closed by the server before the whole response (%d bytes read)" % (c.n, len(c.buf)))
            c.buf += data
            if c.need < 0:
                end = c.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(c.buf) > 65536:
                        fail("connection %d: response head over 64 KiB" % c.n)
                    continue
                head = c.buf[:end].decode("latin-1").split("\r\n")
                status = head[0].split(" ")
                if len(status) < 2 or status[1] != "200":
                    fail("connection %d: expected status 200, got %r" % (c.n, head[0]))
                length = None
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    value = value.strip()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and "close" in value.lower():
                        fail("connection %d: the server answered with Connection: close" % c.n)
                if length != body_len:
                    fail("connection %d: expected Content-Length %d, got %r" % (c.n, body_len, length))
                c.need = end + 4 + length
            if len(c.buf) > c.need:
                fail("connection %d: %d bytes more than the response" % (c.n, len(c.buf) - c.need))
            if len(c.buf) == c.need:
                c.state = "idle"
                c.buf = b""
                sel.unregister(s)
                answered += 1

    sys.stdout.write("READY open=%d\n" % n)
    sys.stdout.flush()
    sys.stdin.readline()

    # A connection the server has closed is readable (end-of-file); an open idle one is not.
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    closed = 0
    for key, _ in sel.select(timeout=0):
        try:
            if key.data.sock.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    sys.stdout.write("STILL_OPEN %d\n" % (n - closed))
    sys.stdout.flush()
    for c in conns:
        sel.unregister(c.sock)
        c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
