#!/usr/bin/env python3
"""perf/soak.py - the Python parts of perf/soak.sh (standard library only).

Subcommands:
  ws-origin  an HTTP/1.1 origin that answers `Upgrade: websocket` with 101 and then
             echoes bytes (a tunnel); other requests get a short 200 (health checks too)
  upgrade    clients that upgrade through the proxy and exchange echo messages
  slow       slow clients: trickled heads, slow readers, slow uploads, idlers, stalled
             heads (408 expected), clients that leave mid-response
  accesslog  reads ringproxy's JSON access log from a FIFO; counts by frontend, status
             and termination state; writes a JSON snapshot every 10 s and at EOF
  sample     every INTERVAL s: the proxy's RSS, fd count, threads, CPU and counters
             from /stats.json, appended to a CSV
  analyze    the summary table and the leak verdict (exit 1 on a leak)

Clients run until --until (a Unix time), finish what they are doing (bounded) and write
their counts as JSON to --out: {"kind": {"ok": n, "error: cause": n, "expected: what": n,
"requests": n, ...}}.
"""

import argparse
import collections
import json
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.request

# --------------------------------------------------------------------------- helpers --


class Counts:
    """Thread-safe nested counters: kind -> key -> n."""

    def __init__(self):
        self.lock = threading.Lock()
        self.data = collections.defaultdict(collections.Counter)

    def add(self, kind, key, n=1):
        with self.lock:
            self.data[kind][key] += n

    def dump(self, path):
        with self.lock:
            snapshot = {k: dict(v) for k, v in sorted(self.data.items())}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snapshot, f, indent=1, sort_keys=True)
        os.replace(tmp, path)


def cause(exc):
    """A short, stable name for an exception (what went wrong, not where)."""
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    if isinstance(exc, EOFError):
        return "eof: " + (str(exc) or "unexpected")
    if isinstance(exc, ProtocolError):
        return str(exc)
    return type(exc).__name__ + (": " + str(exc) if str(exc) else "")


class ProtocolError(Exception):
    pass


class Reader:
    """Buffered reads of HTTP/1.1 responses from a socket."""

    def __init__(self, sock, chunk=65536):
        self.sock = sock
        self.buf = b""
        self.chunk = chunk

    def fill(self, what):
        data = self.sock.recv(self.chunk)
        if not data:
            raise EOFError(what)
        self.buf += data

    def head(self):
        """Returns (status, {lowercase name: value}); raises EOFError, ProtocolError."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ProtocolError("response head too large")
            self.fill("before the response head" if not self.buf else "inside the response head")
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError("bad status line")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return int(parts[1]), fields

    def exactly(self, n, what="inside the body"):
        while len(self.buf) < n:
            self.fill(what)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill("inside a chunk line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def body(self, fields, sink=None):
        """Reads the body the fields frame; returns its length. sink(n) is called per read
        (slow readers sleep there)."""
        if "chunked" in fields.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    return total
                self.exactly(size)
                self.exactly(2)
                total += size
        if "content-length" in fields:
            n = int(fields["content-length"])
            got = min(n, len(self.buf))
            self.buf = self.buf[got:]
            while got < n:
                data = self.sock.recv(min(self.chunk, n - got))
                if not data:
                    raise EOFError("body cut at %d of %d bytes" % (got, n))
                got += len(data)
                if sink:
                    sink(len(data))
            return n
        # Close-delimited.
        total = len(self.buf)
        self.buf = b""
        while True:
            data = self.sock.recv(self.chunk)
            if not data:
                return total
            total += len(data)


def connect(host, port, timeout=10.0, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def close_quietly(s):
    try:
        s.close()
    except OSError:
        pass


def run_workers(args, workers, counts):
    """Starts one thread per (kind, fn); dumps counts every 10 s and at the end."""
    threads = []
    for kind, fn in workers:
        t = threading.Thread(target=fn, args=(kind,), daemon=True)
        t.start()
        threads.append(t)
    stop = threading.Event()

    def on_term(*_):
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    # Workers end by themselves after --until; give them GRACE s to finish their cycle.
    hard_end = args.until + args.grace
    while any(t.is_alive() for t in threads) and not stop.is_set() and time.time() < hard_end:
        counts.dump(args.out)
        stop.wait(min(10.0, max(0.1, hard_end - time.time())))
    for t in threads:
        if t.is_alive():
            counts.add("_runner", "threads still running at the end")
    counts.dump(args.out)


# --------------------------------------------------------------------- ws-origin --


class WsHandler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(600)
        r = Reader(s)
        try:
            while True:
                while b"\r\n\r\n" not in r.buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    r.buf += data
                raw, r.buf = r.buf.split(b"\r\n\r\n", 1)
                lines = raw.decode("latin-1").split("\r\n")
                version = lines[0].rsplit(" ", 1)[-1]
                fields = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip().lower()
                n = int(fields.get("content-length", "0") or 0)
                if n:
                    r.exactly(n)
                if "upgrade" in fields.get("connection", "") and fields.get("upgrade"):
                    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\n")
                    if r.buf:
                        s.sendall(r.buf)
                    while True:
                        data = s.recv(65536)
                        if not data:
                            break
                        s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                    return
                close = fields.get("connection") == "close" or (
                    version == "HTTP/1.0" and fields.get("connection") != "keep-alive")
                head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                if close:
                    head += "Connection: close\r\n"
                elif version == "HTTP/1.0":
                    head += "Connection: keep-alive\r\n"
                s.sendall(head.encode() + b"\r\nok\n")
                if close:
                    s.shutdown(socket.SHUT_WR)
                    return
        except (OSError, EOFError, ValueError):
            return


class ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def cmd_ws_origin(args):
    host, port = args.listen.rsplit(":", 1)
    with ThreadingServer((host, int(port)), WsHandler) as server:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        server.serve_forever()


# ----------------------------------------------------------------------- upgrade --


def cmd_upgrade(args):
    counts = Counts()

    def one_tunnel(kind, messages, pause):
        s = connect(args.host, args.port)
        try:
            key = "%016x" % random.getrandbits(64)
            s.sendall(("GET /ws/echo HTTP/1.1\r\nHost: soak\r\nConnection: Upgrade\r\n"
                       "Upgrade: websocket\r\nSec-WebSocket-Key: %s\r\n\r\n" % key).encode())
            r = Reader(s)
            status, fields = r.head()
            counts.add(kind, "requests")
            if status != 101:
                try:
                    r.body(fields)
                except (OSError, EOFError, ValueError, ProtocolError):
                    pass
                raise ProtocolError("status %d" % status)
            for i in range(messages):
                msg = (b"%s-%d-" % (key.encode(), i)) * random.randint(1, 200) + b"\n"
                s.sendall(msg)
                if r.exactly(len(msg), "during the echo") != msg:
                    raise ProtocolError("echo mismatch")
                counts.add(kind, "messages")
                time.sleep(pause)
            s.shutdown(socket.SHUT_WR)
            rest = s.recv(1)
            if rest:
                raise ProtocolError("bytes after the echo")
        finally:
            close_quietly(s)

    def worker(kind):
        long_lived = kind == "upgrade-long"
        while time.time() < args.until:
            try:
                if long_lived:
                    one_tunnel(kind, 30, 2.0)
                else:
                    one_tunnel(kind, random.randint(5, 40), random.uniform(0.01, 0.1))
                counts.add(kind, "ok")
            except Exception as e:  # noqa: BLE001 - every failure is counted by cause
                counts.add(kind, "error: " + cause(e))
                time.sleep(0.2)

    workers = [("upgrade-long", worker)] + [("upgrade", worker)] * args.workers
    run_workers(args, workers, counts)


# -------------------------------------------------------------------------- slow --


def request_once(s, r, head, kind, counts, expect=200, sink=None, body_len=None):
    """Sends head (bytes, already sent if None), reads one response; counts it."""
    if head is not None:
        s.sendall(head)
    status, fields = r.head()
    counts.add(kind, "requests")
    n = r.body(fields, sink)
    if status != expect:
        raise ProtocolError("status %d" % status)
    if body_len is not None and n != body_len:
        raise ProtocolError("body of %d bytes, not %d" % (n, body_len))
    return fields


def cmd_slow(args):
    counts = Counts()
    H, P, T = args.host, args.port, args.tcp_port

    def trickle(kind):
        # The head a byte at a time (~2 s: under timeout_http_request), three requests on
        # one connection.
        s = connect(H, P)
        try:
            r = Reader(s)
            for _ in range(3):
                head = b"GET / HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak-trickle\r\nX-Pad: " + b"p" * 10 + b"\r\n\r\n"
                for b in head:
                    s.sendall(bytes([b]))
                    time.sleep(0.025)
                request_once(s, r, None, kind, counts)
        finally:
            close_quietly(s)

    def slowread(kind, port, size=1048576, step=16384, pause=0.05):
        # A small receive buffer, read STEP bytes every PAUSE s (~3 s per MiB).
        s = connect(H, port, timeout=30, rcvbuf=8192)
        try:
            r = Reader(s, chunk=step)
            request_once(s, r, b"GET /bytes/%d HTTP/1.1\r\nHost: soak\r\n\r\n" % size, kind, counts,
                         sink=lambda n: time.sleep(pause * n / step), body_len=size)
        finally:
            close_quietly(s)

    def slowupload(kind):
        # A 64 KiB body sent 4 KiB every 0.1 s.
        s = connect(H, P)
        try:
            n = 65536
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\n"
                      b"Content-Length: %d\r\n\r\n" % n)
            try:
                for _ in range(n // 4096):
                    s.sendall(b"u" * 4096)
                    time.sleep(0.1)
            except OSError as e:
                # The proxy may have answered (a 502) and closed: say what it answered.
                try:
                    s.settimeout(2)
                    status, _ = Reader(s).head()
                    counts.add(kind, "requests")
                except Exception:  # noqa: BLE001 - no answer: the send error is the cause
                    raise e from None
                raise ProtocolError("status %d, body cut short (%s)" % (status, cause(e))) from None
            request_once(s, Reader(s), None, kind, counts)
        finally:
            close_quietly(s)

    def idler(kind):
        # Requests 8 s apart on one kept-alive connection (timeout_http_keep_alive is 10 s),
        # then 12 s of silence: the proxy must have closed it.
        s = connect(H, P, timeout=30)
        try:
            r = Reader(s)
            req = b"GET / HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak-idler\r\n\r\n"
            for i in range(3):
                if i:
                    time.sleep(8)
                request_once(s, r, req, kind, counts)
            time.sleep(12)
            s.settimeout(5)
            try:
                data = s.recv(1)
            except ConnectionResetError:
                data = None
            if data:
                raise ProtocolError("bytes on an idle connection")
            counts.add(kind, "expected: closed by the proxy after keep-alive timeout"
                       if data == b"" else "expected: reset by the proxy after keep-alive timeout")
        finally:
            close_quietly(s)

    def stall(kind):
        # Half a head, then nothing: 408 after timeout_http_request, then close.
        s = connect(H, P, timeout=30)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n")
            r = Reader(s)
            status, fields = r.head()
            counts.add(kind, "requests")
            r.body(fields)
            if status != 408:
                raise ProtocolError("status %d, not 408" % status)
            if s.recv(1) != b"":
                raise ProtocolError("bytes after the 408")
            counts.add(kind, "expected: 408 and close")
        finally:
            close_quietly(s)

    def abort(kind, port):
        # Leaves after the first 100 KiB of a 1 MiB response (RST if data is pending).
        s = connect(H, port)
        try:
            s.sendall(b"GET /bytes/1048576 HTTP/1.1\r\nHost: soak\r\n\r\n")
            r = Reader(s)
            status, _ = r.head()
            counts.add(kind, "requests")
            if status != 200:
                raise ProtocolError("status %d" % status)
            got = len(r.buf)
            while got < 100 * 1024:
                data = s.recv(65536)
                if not data:
                    raise EOFError("before 100 KiB")
                got += len(data)
            counts.add(kind, "expected: left mid-response")
        finally:
            close_quietly(s)
        time.sleep(0.5)

    def loop(fn, *a):
        def run(kind):
            while time.time() < args.until:
                try:
                    fn(kind, *a)
                    counts.add(kind, "ok")
                except Exception as e:  # noqa: BLE001 - every failure is counted by cause
                    counts.add(kind, "error: " + cause(e))
                    time.sleep(0.5)
        return run

    workers = [
        ("trickle", loop(trickle)), ("trickle", loop(trickle)),
        ("slowread-http", loop(slowread, P)), ("slowread-http", loop(slowread, P, 262144, 4096, 0.05)),
        ("slowread-tcp", loop(slowread, T)),
        ("slowupload", loop(slowupload)),
        ("idler", loop(idler)), ("idler", loop(idler)),
        ("stall", loop(stall)),
        ("abort-http", loop(abort, P)), ("abort-tcp", loop(abort, T)),
    ]
    run_workers(args, workers, counts)


# --------------------------------------------------------------------- accesslog --


def cmd_accesslog(args):
    by_status = collections.Counter()    # (frontend, status, termination) -> n
    per_frontend = collections.Counter()
    retried = collections.Counter()
    bad_lines = 0
    last = 0.0
    # Slow phases: counts at or above 100 ms and the five slowest records of each timer.
    slow = collections.Counter()
    slowest = {k: [] for k in ("tc_ms", "tr_ms")}

    def dump():
        out = {
            "lines": sum(per_frontend.values()),
            "bad_lines": bad_lines,
            "slow_100ms": dict(slow),
            "slowest": {k: [r for _, r in sorted(v, key=lambda x: -x[0])] for k, v in slowest.items()},
            "per_frontend": dict(per_frontend),
            "retried": dict(retried),
            "by_status_termination": [[f, s, t, n] for (f, s, t), n in sorted(by_status.items(), key=lambda kv: -kv[1])],
        }
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.out)

    signal.signal(signal.SIGTERM, lambda *_: (dump(), sys.exit(0)))
    with open(args.fifo, "rb", buffering=1 << 20) as f:
        for line in f:
            try:
                rec = json.loads(line)
                fe = rec.get("frontend") or "-"
                st = rec.get("status")
                by_status[(fe, "-" if st is None else str(st), rec.get("termination") or "??")] += 1
                per_frontend[fe] += 1
                if rec.get("retries"):
                    retried[fe] += 1
                for k, v in slowest.items():
                    t = rec.get(k)
                    if t is None:
                        continue
                    if t >= 100:
                        slow["%s %s" % (fe, k)] += 1
                    if len(v) < 5 or t > v[-1][0]:
                        v.append((t, rec))
                        v.sort(key=lambda x: -x[0])
                        del v[5:]
            except (ValueError, AttributeError):
                bad_lines += 1
            now = time.time()
            if now - last >= 10:
                dump()
                last = now
    dump()


# ------------------------------------------------------------------------ sample --

COLUMNS = [
    "time", "elapsed_s", "phase", "rss_kib", "fds", "threads", "cpu_s",
    "cur_sessions", "total_sessions", "total_requests",
    "fe_requests", "fe_2xx", "fe_3xx", "fe_4xx", "fe_5xx", "fe_request_errors", "fe_client_aborts",
    "be_connect_errors", "be_connect_timeouts", "be_response_errors", "be_server_timeouts",
    "be_retries", "be_redispatches", "be_client_aborts", "be_server_aborts", "be_killed",
    "be_no_server", "be_queue_timeouts", "be_unclean_closes", "be_connections", "be_pool_reused",
    "health_transitions", "servers_down", "sockets", "pipes", "other_fds", "stats_ok",
]


def proc_sample(pid):
    rss = threads = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(") ", 1)[1].split()
    cpu = (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    return rss, fds, threads, cpu


def fd_kinds(pid):
    """(sockets, pipes, other) among the process's fds, by their /proc link."""
    sockets = pipes = other = 0
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if link.startswith("socket:"):
            sockets += 1
        elif link.startswith("pipe:"):
            pipes += 1
        else:
            other += 1
    return sockets, pipes, other


def stats_row(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        d = json.load(resp)
    row = {
        "cur_sessions": d["info"]["current_sessions"],
        "total_sessions": d["info"]["total_sessions"],
        "total_requests": d["info"]["total_requests"],
    }
    fe = collections.Counter()
    for f in d["frontends"]:
        fe.update(f["counters"])
    be = collections.Counter()
    transitions = down = 0
    for b in d["backends"]:
        be.update(b["counters"])
        for s in b.get("servers", []):
            transitions += s.get("health_transitions", 0)
            down += 0 if s.get("up") else 1
    row.update({
        "fe_requests": fe["requests_total"], "fe_2xx": fe["responses_2xx_total"],
        "fe_3xx": fe["responses_3xx_total"], "fe_4xx": fe["responses_4xx_total"],
        "fe_5xx": fe["responses_5xx_total"], "fe_request_errors": fe["request_errors_total"],
        "fe_client_aborts": fe["client_aborts_total"],
        "health_transitions": transitions, "servers_down": down,
    })
    for key in ["connect_errors", "connect_timeouts", "response_errors", "server_timeouts", "retries",
                "redispatches", "client_aborts", "server_aborts", "killed", "no_server",
                "queue_timeouts", "unclean_closes", "connections", "pool_reused"]:
        row["be_" + key] = be[key + "_total"]
    return row


def cmd_sample(args):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    new = not os.path.exists(args.out) or os.path.getsize(args.out) == 0
    with open(args.out, "a", buffering=1) as out:
        if new:
            out.write(",".join(COLUMNS) + "\n")
        t0 = args.t0 or time.time()
        nxt = time.time()
        while True:
            try:
                rss, fds, threads, cpu = proc_sample(args.pid)
                sockets, pipes, other = fd_kinds(args.pid)
            except (OSError, IndexError):
                return  # the proxy is gone
            try:
                row = stats_row(args.stats_url)
                row["stats_ok"] = 1
            except Exception:  # noqa: BLE001 - a failed fetch is recorded, not fatal
                row = {"stats_ok": 0}
            try:
                with open(args.phase_file) as f:
                    phase = f.read().strip() or "-"
            except OSError:
                phase = "-"
            now = time.time()
            row.update({"time": "%.1f" % now, "elapsed_s": "%.1f" % (now - t0), "phase": phase,
                        "rss_kib": rss, "fds": fds, "threads": threads, "cpu_s": "%.2f" % cpu,
                        "sockets": sockets, "pipes": pipes, "other_fds": other})
            out.write(",".join(str(row.get(c, "")) for c in COLUMNS) + "\n")
            if args.once:
                return
            nxt += args.interval
            time.sleep(max(0.0, nxt - time.time()))


# ----------------------------------------------------------------------- analyze --


def read_csv(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = []
        for line in f:
            vals = line.strip().split(",")
            if len(vals) != len(header):
                continue
            row = dict(zip(header, vals))
            for k in header:
                if k != "phase":
                    try:
                        row[k] = float(row[k])
                    except ValueError:
                        row[k] = None
            rows.append(row)
    return rows


def slope(points):
    """Least-squares slope of (x, y) points; None with fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def growth(warm, key, t_warm, t_end):
    """How `key` grows over the samples after warm-up: the least-squares slope (per s) of
    the second half and over all of them, the second half's slope projected over the whole
    time after warm-up (the growth had it run at that rate since), and the rise from the
    first quarter's median to the last quarter's."""
    mid = t_warm + (t_end - t_warm) / 2
    s2 = slope([(r["time"], r[key]) for r in warm if r["time"] >= mid]) or 0.0
    s_all = slope([(r["time"], r[key]) for r in warm]) or 0.0
    q = max(2, len(warm) // 4)
    rise = median([r[key] for r in warm[-q:]]) - median([r[key] for r in warm[:q]])
    return {"slope": s2, "slope_all": s_all, "span": t_end - t_warm, "projected": s2 * (t_end - t_warm), "rise": rise}


def median(values):
    v = sorted(values)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def parse_wrk(path):
    """The SOAK line of perf/soak.sh's wrk script: requests and errors by kind."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("SOAK "):
                    return dict((k, int(v)) for k, v in (kv.split("=") for kv in line.split()[1:]))
    except OSError:
        pass
    return None


def parse_ab(path):
    import re
    tot = collections.Counter()
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return None
    for block in text.split("\f"):
        if not block.strip():
            continue
        tot["runs"] += 1
        m = re.search(r"^Complete requests:\s+(\d+)", block, re.M)
        if not m:
            tot["runs without a result"] += 1
            for line in block.splitlines():
                if line.startswith(("apr_", "ab exit")):
                    tot["ab: " + line.split("(")[0].strip()] += 1
            continue
        tot["complete"] += int(m.group(1))
        m = re.search(r"^Failed requests:\s+(\d+)", block, re.M)
        if m:
            tot["failed"] += int(m.group(1))
        m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", block)
        if m:
            for name, v in zip(["connect", "receive", "length", "exceptions"], m.groups()):
                tot["failed: " + name] += int(v)
        m = re.search(r"^Non-2xx responses:\s+(\d+)", block, re.M)
        if m:
            tot["non-2xx"] += int(m.group(1))
        for line in block.splitlines():
            if line.startswith("apr_"):
                tot["ab: " + line.split("(")[0].strip()] += 1
    return tot


def parse_large(path):
    per = collections.defaultdict(collections.Counter)
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) != 5:
                    continue
                kind, code, size, rc, want = p
                per[kind]["requests"] += 1
                if rc == "0" and code == "200" and size == want:
                    per[kind]["ok"] += 1
                elif rc != "0":
                    per[kind]["error: curl exit %s%s" % (rc, CURL_EXIT.get(rc, ""))] += 1
                elif code != "200":
                    per[kind]["error: status %s" % code] += 1
                else:
                    per[kind]["error: body of %s bytes" % size] += 1
    except OSError:
        pass
    return per


CURL_EXIT = {"7": " (connect failed)", "18": " (transfer cut short)", "28": " (timeout)",
             "52": " (empty reply)", "56": " (receive failure)"}


def fmt_causes(c, skip=("ok", "requests", "messages")):
    items = [(k, v) for k, v in sorted(c.items(), key=lambda kv: -kv[1]) if k not in skip and v]
    return "; ".join("%s: %d" % (k, v) for k, v in items) or "–"


def mib(kib):
    return "–" if kib is None else "%.1f MiB" % (kib / 1024)


SERVER_SIDE_ERRORS = ["be_connect_errors", "be_response_errors", "be_server_timeouts", "be_server_aborts",
                      "be_killed", "be_no_server"]


def write_rates(rows, path):
    """Per sample interval: requests/s, 5xx/s and server-side errors/s from the counters."""
    with open(path, "w") as f:
        f.write("elapsed_s,requests_per_s,5xx_per_s,server_errors_per_s\n")
        prev = None
        for r in rows:
            if not r.get("stats_ok"):
                continue
            if prev is not None and r["elapsed_s"] > prev["elapsed_s"]:
                dt = r["elapsed_s"] - prev["elapsed_s"]
                try:
                    req = (r["total_requests"] - prev["total_requests"]) / dt
                    e5 = (r["fe_5xx"] - prev["fe_5xx"]) / dt
                    err = sum(r[k] - prev[k] for k in SERVER_SIDE_ERRORS) / dt
                except TypeError:
                    prev = r
                    continue
                f.write("%.1f,%.2f,%.3f,%.3f\n" % (r["elapsed_s"], req, e5, err))
            prev = r


def cmd_analyze(args):
    out = args.dir
    rows = read_csv(os.path.join(out, "samples.csv"))
    lines = []
    p = lines.append
    verdict_ok = True
    problems = []

    # ---- traffic, from the load tools.
    p("## Traffic (load tools' own counts)\n")
    p("| kind | tool | requests | ok | errors | error causes / notes |")
    p("|---|---|---:|---:|---:|---|")
    for name, label in [("wrk-http", "keep-alive, http frontend: `wrk -t1 -c%s`" % args.wrk_http_conns),
                        ("wrk-tcp", "keep-alive, tcp frontend: `wrk -t1 -c%s`" % args.wrk_tcp_conns)]:
        w = parse_wrk(os.path.join(out, "load", name + ".txt"))
        if w is None:
            p("| %s | wrk | – | – | – | no result (see load/%s.txt) |" % (name, name))
            problems.append("%s: wrk printed no result" % name)
            continue
        errs = {k: w[k] for k in ("connect", "read", "write", "status", "timeout")}
        p("| %s | %s | %d | %d | %d | %s; latency p50 %.2f ms, p99 %.2f ms, max %.0f ms |" % (
            name, label, w["requests"], w["requests"] - w["status"], sum(errs.values()), fmt_causes(errs),
            w.get("p50_us", 0) / 1000, w.get("p99_us", 0) / 1000, w.get("max_us", 0) / 1000))
    ab = parse_ab(os.path.join(out, "load", "ab.txt"))
    if ab:
        errs = {k: v for k, v in ab.items() if k.startswith(("failed:", "ab:")) or k == "non-2xx"}
        p("| ab-close | no keep-alive, HTTP/1.0: `ab -c2 -n%s` in a loop (%d runs) | %d | %d | %d | %s |" % (
            args.ab_n, ab["runs"], ab["complete"], ab["complete"] - ab["failed"] - ab["non-2xx"],
            ab["failed"] + ab["non-2xx"], fmt_causes(errs)))
    for kind, c in sorted(parse_large(os.path.join(out, "load", "large.txt")).items()):
        p("| %s | 1 MiB bodies: curl in a loop | %d | %d | %d | %s |" % (
            kind, c["requests"], c["ok"], c["requests"] - c["ok"], fmt_causes(c)))
    for fname, tool in [("upgrade.json", "python: 101 + echo"), ("slow.json", "python slow clients")]:
        try:
            data = json.load(open(os.path.join(out, "load", fname)))
        except (OSError, ValueError):
            p("| %s | %s | – | – | – | no result |" % (fname, tool))
            problems.append("%s: no result" % fname)
            continue
        for kind, c in sorted(data.items()):
            c = collections.Counter(c)
            errors = sum(v for k, v in c.items() if k.startswith("error"))
            note = fmt_causes(c)
            if kind.startswith("upgrade"):
                note = "%d echo messages; %s" % (c["messages"], note)
            p("| %s | %s | %d | %d | %d | %s |" % (kind, tool, c["requests"], c["ok"], errors, note))
    p("")
    p("wrk counts a non-2xx/3xx response as a `status` error; ab's `length` failures are "
      "responses whose length differs from the first one (an error page). Slow clients: "
      "`ok` counts whole cycles (several requests for trickle and idler); `expected:` "
      "outcomes are the behaviour asked for (408 to a stalled head, a close after the "
      "keep-alive timeout, a client leaving mid-response).\n")

    # ---- the proxy's view.
    p("## Errors by cause (the proxy's statistics and access log)\n")
    try:
        st = json.load(open(os.path.join(out, "stats-end.json")))
        p("| frontend | sessions | requests | 2xx | 3xx | 4xx | 5xx | request errors | client aborts |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for f in st["frontends"]:
            c = f["counters"]
            p("| %s (%s) | %d | %d | %d | %d | %d | %d | %d | %d |" % (
                f["name"], f["mode"], c["sessions_total"], c["requests_total"], c["responses_2xx_total"],
                c["responses_3xx_total"], c["responses_4xx_total"], c["responses_5xx_total"],
                c["request_errors_total"], c["client_aborts_total"]))
        p("")
        keys = ["connect_errors", "connect_timeouts", "response_errors", "server_timeouts", "retries",
                "redispatches", "client_aborts", "server_aborts", "killed", "no_server", "queue_timeouts",
                "unclean_closes", "pool_closed_by_server"]
        p("| backend/server | status | transitions | requests | 5xx | " + " | ".join(k.replace("_", " ") for k in keys) + " | connections | pool reused |")
        p("|---|---|---:|---:|---:|" + "---:|" * len(keys) + "---:|---:|")
        for b in st["backends"]:
            c = b["counters"]
            p("| **%s** | | | %d | %d | %s | %d | %d |" % (
                b["name"], c["requests_total"], c["responses_5xx_total"],
                " | ".join(str(c[k + "_total"]) for k in keys), c["connections_total"], c["pool_reused_total"]))
            for s in b.get("servers", []):
                c = s["counters"]
                p("| %s/%s | %s | %d | %d | %d | %s | %d | %d |" % (
                    b["name"], s["name"], s["status"], s["health_transitions"], c["requests_total"],
                    c["responses_5xx_total"], " | ".join(str(c[k + "_total"]) for k in keys),
                    c["connections_total"], c["pool_reused_total"]))
        p("")
        info = st["info"]
        p("Process: %d sessions, %d requests, stats snapshots dropped %d, access-log records dropped %d.\n" % (
            info["total_sessions"], info["total_requests"], info["ring_drops"], info["log_drops"]))
    except (OSError, ValueError, KeyError) as e:
        p("(no final statistics: %s)\n" % e)
        problems.append("no final statistics")
    try:
        al = json.load(open(os.path.join(out, "accesslog.json")))
        p("Access log (%d lines, %d unreadable): every status and termination state other than "
          "a 1xx-3xx with `--` (http), or `--` (tcp), by frontend:\n" % (al["lines"], al["bad_lines"]))
        p("| frontend | status | termination | count |")
        p("|---|---:|---|---:|")
        shown = 0
        for fe, status, term, n in al["by_status_termination"]:
            normal = term == "--" and (status == "-" or status[0] in "123")
            if not normal:
                p("| %s | %s | %s | %d |" % (fe, status, term, n))
                shown += 1
        if not shown:
            p("| – | – | – | 0 |")
        p("\nRequests that were retried (access log `retries` > 0): %s." % (
            ", ".join("%s %d" % kv for kv in sorted(al["retried"].items())) or "none"))
        mx = {k: (v[0]["%s" % k] if v else None) for k, v in al.get("slowest", {}).items()}
        p("Slow connects or server responses (≥ 100 ms): %s; longest connect %s ms, longest "
          "server response %s ms (the slowest records are in accesslog.json).\n" % (
              ", ".join("%s %d" % kv for kv in sorted(al.get("slow_100ms", {}).items())) or "none",
              mx.get("tc_ms"), mx.get("tr_ms")))
    except (OSError, ValueError, KeyError) as e:
        p("(no access log summary: %s)\n" % e)

    # ---- resources and the leak verdict.
    load = [r for r in rows if r["phase"] == "load" and r["rss_kib"] is not None]
    base = [r for r in rows if r["phase"] == "baseline" and r["rss_kib"] is not None]
    end = [r for r in rows if r["phase"] == "end" and r["rss_kib"] is not None]
    t_load0, t_warm, t_load1 = args.load_start, args.warm_end, args.load_end
    warm = [r for r in load if r["time"] >= t_warm]
    p("## Resources\n")
    if len(load) >= 2:
        cpu = load[-1]["cpu_s"] - load[0]["cpu_s"]
        span = load[-1]["time"] - load[0]["time"]
        req = (load[-1]["total_requests"] or 0) - (load[0]["total_requests"] or 0)
        if span > 0:
            p("Proxy CPU during the load: %.1f s in %.0f s (%.0f %% of one core), %.0f http requests/s.\n" % (
                cpu, span, cpu / span * 100, req / span))
    p("| when | t (s) | RSS | fds | sockets | pipes | other fds | threads | sessions |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def row_at(label, r):
        if r is None:
            p("| %s | – | – | – | – | – | – | – | – |" % label)
        else:
            p("| %s | %.0f | %s | %d | %d | %d | %d | %d | %s |" % (
                label, r["elapsed_s"], mib(r["rss_kib"]), r["fds"], r["sockets"], r["pipes"], r["other_fds"],
                r["threads"], "–" if r["cur_sessions"] is None else "%d" % r["cur_sessions"]))

    row_at("start (before load)", base[-1] if base else None)
    row_at("after warm-up", warm[0] if warm else None)
    row_at("load, peak RSS", max(load, key=lambda r: r["rss_kib"]) if load else None)
    row_at("load, peak fds", max(load, key=lambda r: r["fds"]) if load else None)
    row_at("end of load", load[-1] if load else None)
    row_at("after cool-down", end[-1] if end else None)
    p("")
    p("Pipes are the splice relays' per-shard cache of empty pipes (`l4::splice`, up to %d "
      "per shard, never shrunk): they follow the peak number of concurrent splicing relays, "
      "so they are checked for steady growth after warm-up, not against the baseline.\n" % 512)

    # fds: sockets and other descriptors back to the baseline once connections are closed;
    # the pipe cache no larger at the end than it was in the first half after warm-up.
    checks = []
    last = end[-1] if end else None
    for kind in ("sockets", "other_fds"):
        b = median([r[kind] for r in base]) if base else None
        if b is None or last is None:
            checks.append(("%s back to baseline" % kind.replace("_", " "), "not measured", False))
            continue
        checks.append(("%s back to baseline (± %d)" % (kind.replace("_", " "), args.fd_slack),
                       "baseline %d, after cool-down %d" % (b, last[kind]), last[kind] <= b + args.fd_slack))
    if len(warm) >= 6:
        g = growth(warm, "pipes", t_warm, t_load1)
        leak = g["projected"] > args.pipe_slack and g["rise"] > args.pipe_slack
        checks.append(("pipe cache not growing after warm-up",
                       "second half slope %+.1f/min (× %.0f s after warm-up: %+.0f); last quarter − first quarter "
                       "(medians) %+.0f; threshold %d pipe fds" % (
                           g["slope"] * 60, g["span"], g["projected"], g["rise"], args.pipe_slack), not leak))
    sess_end = last["cur_sessions"] if last else None
    checks.append(("no session left open", "current sessions after cool-down: %s" % (
        "–" if sess_end is None else "%d" % sess_end), sess_end == 0))
    # RSS: no steady growth after warm-up. The slope of the second half of the load phase
    # (least squares), projected over that half, and the rise from the first post-warm-up
    # quarter to the last quarter (medians): a leak needs both above the threshold.
    if len(warm) >= 6:
        g = growth(warm, "rss_kib", t_warm, t_load1)
        threshold = max(args.rss_slack_kib, warm[0]["rss_kib"] * args.rss_slack_pct / 100)
        leak = g["projected"] > threshold and g["rise"] > threshold
        checks.append(("RSS flat after warm-up",
                       "second half slope %+.1f KiB/min (× %.0f s after warm-up: %+.0f KiB); whole time after warm-up %+.1f KiB/min; "
                       "last quarter − first quarter (medians) %+.0f KiB; threshold %.0f KiB" % (
                           g["slope"] * 60, g["span"], g["projected"], g["slope_all"] * 60, g["rise"], threshold),
                       not leak))
        rss_cool = end[-1]["rss_kib"] if end else None
        if rss_cool is not None:
            checks.append(("RSS after cool-down not above the load's level",
                           "%s after cool-down, %s at the end of load" % (mib(rss_cool), mib(load[-1]["rss_kib"])),
                           rss_cool <= load[-1]["rss_kib"] + threshold))
    else:
        checks.append(("RSS flat after warm-up", "too few samples after warm-up (%d)" % len(warm), True))
    if args.proxy_exit not in ("", "0"):
        checks.append(("proxy ran to the end and stopped cleanly", "exit status %s" % args.proxy_exit, False))
    else:
        checks.append(("proxy ran to the end and stopped cleanly", "exit status 0", True))
    checks.append(("no panic in the proxy's log", "%s panic line(s)" % args.panics, args.panics == "0"))
    p("## Leak verdict\n")
    p("| check | measured | result |")
    p("|---|---|---|")
    for name, measured, ok in checks:
        p("| %s | %s | %s |" % (name, measured, "pass" if ok else "**FAIL**"))
        verdict_ok = verdict_ok and ok
    p("")
    for pr in problems:
        p("Note: %s." % pr)
    p("**%s**" % ("No leak detected." if verdict_ok else "LEAK OR FAILURE DETECTED (see the checks above)."))
    text = "\n".join(lines) + "\n"
    if args.rates:
        write_rates(rows, args.rates)
    with open(os.path.join(out, "summary-body.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0 if verdict_ok else 1


# -------------------------------------------------------------------------- main --


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ws-origin")
    a.add_argument("--listen", required=True)
    for name in ("upgrade", "slow"):
        a = sub.add_parser(name)
        a.add_argument("--host", default="127.0.0.1")
        a.add_argument("--port", type=int, required=True)
        a.add_argument("--tcp-port", type=int)
        a.add_argument("--until", type=float, required=True)
        a.add_argument("--grace", type=float, default=60)
        a.add_argument("--workers", type=int, default=4)
        a.add_argument("--out", required=True)
    a = sub.add_parser("accesslog")
    a.add_argument("--fifo", required=True)
    a.add_argument("--out", required=True)
    a = sub.add_parser("sample")
    a.add_argument("--pid", type=int, required=True)
    a.add_argument("--stats-url", required=True)
    a.add_argument("--phase-file", required=True)
    a.add_argument("--interval", type=float, default=10)
    a.add_argument("--t0", type=float, default=0)
    a.add_argument("--once", action="store_true")
    a.add_argument("--out", required=True)
    a = sub.add_parser("analyze")
    a.add_argument("--dir", required=True)
    a.add_argument("--load-start", type=float, required=True)
    a.add_argument("--warm-end", type=float, required=True)
    a.add_argument("--load-end", type=float, required=True)
    a.add_argument("--fd-slack", type=int, default=4)
    a.add_argument("--pipe-slack", type=int, default=16)
    a.add_argument("--rss-slack-kib", type=float, default=2048)
    a.add_argument("--rss-slack-pct", type=float, default=5)
    a.add_argument("--proxy-exit", default="")
    a.add_argument("--panics", default="0")
    a.add_argument("--wrk-http-conns", default="?")
    a.add_argument("--wrk-tcp-conns", default="?")
    a.add_argument("--ab-n", default="?")
    a.add_argument("--rates")
    args = ap.parse_args()
    fn = {"ws-origin": cmd_ws_origin, "upgrade": cmd_upgrade, "slow": cmd_slow,
          "accesslog": cmd_accesslog, "sample": cmd_sample, "analyze": cmd_analyze}[args.cmd]
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
