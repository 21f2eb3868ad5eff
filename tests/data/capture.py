#!/usr/bin/env python3
"""Capture raw QMP / QGA transcripts from a real QEMU and a real qemu-ga.

Usage:
    python3 capture.py [OUTDIR]          # default OUTDIR: this script's directory
    python3 capture.py --oob-stats N     # only measure how often the oob reply
                                         # overtakes an in-band one (N fresh QEMUs)

For every scenario NAME it writes NAME.tx (the exact bytes the client wrote to the
socket, concatenated in order) and NAME.rx (the exact bytes the server wrote back,
concatenated in order, greeting included).  Nothing else goes in those files.

Programs are found on PATH (override with $QEMU and $QEMU_GA).  Every socket, pid
file and state directory lives in a temporary directory created at run time and
removed at the end.  Every process started is killed and reaped.
Standard library only.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
QEMU_GA = os.environ.get("QEMU_GA", "qemu-ga")

SCENARIO_TIMEOUT = 30.0  # seconds, overall per scenario
# The brief asked for ~50 retries, but the oob reply overtakes an in-band reply in
# only ~2% of fresh QEMU 7.2 runs here (14 of 650 measured), so 50 would fail
# about 1 run in 3; 500 fails about once in 60,000 runs.
OOB_MAX_ATTEMPTS = 500


class CaptureError(Exception):
    pass


# ---------------------------------------------------------------------------
# processes


class Proc:
    """A child process that is always killed and reaped."""

    def __init__(self, argv, workdir, name, env=None):
        # The child runs with its temporary directory as working directory.
        self.argv = argv
        self.logpath = os.path.join(workdir, name + ".log")
        self.log = open(self.logpath, "wb")
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )

    def check_alive(self):
        rc = self.p.poll()
        if rc is not None:
            raise CaptureError(
                "%s exited with %s; log:\n%s" % (self.argv[0], rc, self.read_log())
            )

    def read_log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        else:
            self.p.wait()
        self.log.close()


def connect_unix(path, proc, deadline):
    while True:
        proc.check_alive()
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
        if time.monotonic() > deadline:
            raise CaptureError("could not connect to %s" % path)
        time.sleep(0.01)


# ---------------------------------------------------------------------------
# connection that records every byte


class Conn:
    """Records tx/rx bytes; parses LF-separated JSON messages from rx.

    QMP lines end in CR LF, QGA lines in LF.  A QGA line may start with 0xFF
    (the sync delimiter): it is stripped for parsing and noted in the message
    list as ("delim", None).  A line that is not JSON raises CaptureError.
    """

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.tx = bytearray()
        self.rx = bytearray()
        self._buf = bytearray()
        self.msgs = []  # list of ("delim", None) | ("json", obj)
        self._seen = 0  # index into msgs already handed out by next_msg

    def send(self, data):
        self.tx += data
        self.sock.sendall(data)

    def _recv_some(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CaptureError("timeout; messages so far: %r" % self.msgs)
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise CaptureError("timeout; messages so far: %r" % self.msgs)
        if not chunk:
            raise CaptureError("server closed the connection; messages: %r" % self.msgs)
        self._feed(chunk)

    def _feed(self, chunk):
        self.rx += chunk
        self._buf += chunk
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            body = line
            while body.startswith(b"\xff"):
                self.msgs.append(("delim", None))
                body = body[1:]
            body = body.strip(b"\r\n")
            if not body:
                continue
            try:
                self.msgs.append(("json", json.loads(body)))
            except ValueError:
                raise CaptureError("not JSON from server: %r" % line)

    def next_msg(self):
        while self._seen >= len(self.msgs):
            self._recv_some()
        m = self.msgs[self._seen]
        self._seen += 1
        return m

    def wait_for(self, pred, what):
        """Read until a message satisfying pred arrives; return it."""
        try:
            while True:
                kind, obj = self.next_msg()
                if kind == "json" and pred(obj):
                    return obj
        except CaptureError as e:
            raise CaptureError("waiting for %s: %s" % (what, e))

    def wait_reply(self, rid):
        return self.wait_for(
            lambda o: "id" in o and o["id"] == rid and ("return" in o or "error" in o),
            "reply %r" % (rid,),
        )

    def settle(self, seconds):
        """Collect whatever else the server sends within `seconds` (non-fatal)."""
        end = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < end:
            self.sock.settimeout(max(0.001, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self._feed(chunk)


def cmd(name, rid, arguments=None, oob=False):
    d = {("exec-oob" if oob else "execute"): name}
    if arguments is not None:
        d["arguments"] = arguments
    if rid is not None:
        d["id"] = rid
    return json.dumps(d, separators=(",", ":")).encode("ascii")


def expect(cond, msg):
    if not cond:
        raise CaptureError(msg)


def is_error(o, cls=None):
    return "error" in o and (cls is None or o["error"].get("class") == cls)


def summarize(conn):
    out = []
    for kind, o in conn.msgs:
        if kind == "delim":
            out.append("0xFF")
        elif "QMP" in o:
            out.append("greeting")
        elif "event" in o:
            out.append("event:" + o["event"])
        elif "error" in o:
            out.append("error(%s)%s" % (o["error"].get("class"),
                                        ("#%r" % (o["id"],)) if "id" in o else "#noid"))
        elif "return" in o:
            out.append("return" + (("#%r" % (o["id"],)) if "id" in o else "#noid"))
        else:
            out.append("other")
    return out


# ---------------------------------------------------------------------------
# sessions


QMP_BASE = [QEMU, "-nodefaults", "-display", "none"]


class QmpSession:
    def __init__(self, extra_args):
        self.tmp = tempfile.mkdtemp(prefix="qmp-capture-")
        self.path = os.path.join(self.tmp, "qmp.sock")
        self.proc = None
        self.sock = None
        self.deadline = time.monotonic() + SCENARIO_TIMEOUT
        # Relative socket path (QEMU's cwd is self.tmp): query-chardev then shows
        # "unix:qmp.sock,server=on" instead of a random temporary path.
        argv = QMP_BASE + extra_args + ["-qmp", "unix:qmp.sock,server=on,wait=off"]
        try:
            self.proc = Proc(argv, self.tmp, "qemu")
            self.sock = connect_unix(self.path, self.proc, self.deadline)
        except BaseException:
            self.close()
            raise
        self.conn = Conn(self.sock, self.deadline)

    def greeting(self):
        g = self.conn.wait_for(lambda o: "QMP" in o, "greeting")
        return g

    def close(self):
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class QgaSession:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="qga-capture-")
        self.path = os.path.join(self.tmp, "qga.sock")
        statedir = os.path.join(self.tmp, "state")
        os.mkdir(statedir)
        self.proc = None
        self.sock = None
        self.deadline = time.monotonic() + SCENARIO_TIMEOUT
        env = dict(os.environ)
        # Do not pick up a host /etc/qemu/qemu-ga.conf: point at a missing file.
        env["QGA_CONF"] = os.path.join(self.tmp, "no-such-qemu-ga.conf")
        argv = [QEMU_GA, "-m", "unix-listen", "-p", self.path,
                "-t", statedir, "-f", os.path.join(self.tmp, "qemu-ga.pid")]
        try:
            self.proc = Proc(argv, self.tmp, "qemu-ga", env=env)
            self.sock = connect_unix(self.path, self.proc, self.deadline)
        except BaseException:
            self.close()
            raise
        self.conn = Conn(self.sock, self.deadline)

    def close(self):
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_session(factory, body):
    s = None
    try:
        s = factory()
        body(s)
        return s
    finally:
        if s is not None:
            s.close()


QMP_NL = b"\r\n"
QGA_NL = b"\n"


def qmp_roundtrip(s, name, rid, arguments=None):
    s.conn.send(cmd(name, rid, arguments) + QMP_NL)
    return s.conn.wait_reply(rid)


def caps(s, oob):
    args = {"enable": ["oob"]} if oob else None
    r = qmp_roundtrip(s, "qmp_capabilities", 0, args)
    expect(r.get("return") == {}, "qmp_capabilities failed: %r" % r)


# ---------------------------------------------------------------------------
# scenarios


def sc_qmp_queries(s):
    s.greeting()
    caps(s, oob=True)
    queries = ["query-version", "query-status", "query-name", "query-uuid",
               "query-kvm", "query-target", "query-commands", "query-chardev",
               "query-machines", "query-cpu-definitions",
               "query-command-line-options", "query-qmp-schema"]
    rid = 0
    for q in queries:
        rid += 1
        r = qmp_roundtrip(s, q, rid)
        expect("return" in r, "%s failed: %r" % (q, r))
    rid += 1
    r = qmp_roundtrip(s, "no-such-command", rid)
    expect(is_error(r, "CommandNotFound"), "no-such-command: %r" % r)
    rid += 1
    r = qmp_roundtrip(s, "device_del", rid, {"id": "nope"})
    expect(is_error(r), "device_del: %r" % r)
    rid += 1
    r = qmp_roundtrip(s, "query-status", rid)
    expect("return" in r, "query-status: %r" % r)
    # the query-qmp-schema reply (id 12) is one line of about 200 KiB
    for line in bytes(s.conn.rx).split(b"\r\n"):
        if line.endswith(b'"id": 12}'):
            expect(len(line) > 150 * 1024, "schema reply only %d bytes" % len(line))
            break
    else:
        raise CaptureError("schema reply line not found")


def sc_qmp_stop_cont(s):
    s.greeting()
    caps(s, oob=False)
    r = qmp_roundtrip(s, "query-status", 1)
    expect(r["return"].get("status") == "running", "not running: %r" % r)
    r = qmp_roundtrip(s, "stop", 2)
    expect(r.get("return") == {}, "stop: %r" % r)
    r = qmp_roundtrip(s, "query-status", 3)
    expect(r["return"].get("status") == "paused", "not paused: %r" % r)
    r = qmp_roundtrip(s, "cont", 4)
    expect(r.get("return") == {}, "cont: %r" % r)
    # wait until RESUME arrived (it may already be there)
    if not any(k == "json" and o.get("event") == "RESUME" for k, o in s.conn.msgs):
        s.conn.wait_for(lambda o: o.get("event") == "RESUME", "RESUME event")
    r = qmp_roundtrip(s, "query-status", 5)
    expect(r["return"].get("status") == "running", "not running: %r" % r)
    events = [o["event"] for k, o in s.conn.msgs if k == "json" and "event" in o]
    expect("STOP" in events and "RESUME" in events, "events: %r" % events)


def sc_qmp_oob_attempt(s):
    s.greeting()
    caps(s, oob=True)
    s.conn.send(cmd("query-status", 1) + QMP_NL
                + cmd("query-name", 2) + QMP_NL
                + cmd("migrate-pause", 3, oob=True) + QMP_NL)
    order = []
    while len(order) < 3:
        kind, o = s.conn.next_msg()
        if kind == "json" and o.get("id") in (1, 2, 3) and ("return" in o or "error" in o):
            order.append(o["id"])
    r3 = [o for k, o in s.conn.msgs if k == "json" and o.get("id") == 3][0]
    expect(is_error(r3), "migrate-pause did not fail: %r" % r3)
    s.order = order


def sc_qmp_parse_error(s):
    s.greeting()
    caps(s, oob=False)
    s.conn.send(b'{"execute": }' + QMP_NL)
    e = s.conn.wait_for(lambda o: "error" in o, "parse error")
    expect("id" not in e, "parse error has an id: %r" % e)
    r = qmp_roundtrip(s, "query-status", 1)
    expect("return" in r, "no recovery: %r" % r)
    s.conn.send(b'{"execute":"query-status","id":2,"foo":1}' + QMP_NL)
    # The reply may or may not carry the id: accept the next error.
    s.conn.wait_for(lambda o: "error" in o, "bad-member error")
    # collect anything else that follows quickly (nothing expected)
    s.conn.settle(0.3)


QGA_SYNC_ID = 123456789
QGA_STALE_SYNC_ID = 987654321


def qga_sync(s, sync_id):
    s.conn.send(b"\xff" + json.dumps(
        {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}},
        separators=(",", ":")).encode("ascii") + QGA_NL)
    r = s.conn.wait_for(lambda o: o.get("return") == sync_id, "sync return")
    return r


def qga_roundtrip(s, name, rid):
    s.conn.send(cmd(name, rid) + QGA_NL)
    r = s.conn.wait_for(lambda o: "return" in o or "error" in o, name)
    # qemu-ga may or may not echo "id"; if it does, it must be ours.
    expect(r.get("id", rid) == rid, "%s: reply for another id: %r" % (name, r))
    return r


def sc_qga_sync(s):
    qga_sync(s, QGA_SYNC_ID)
    for rid, name in ((1, "guest-info"), (2, "guest-ping"), (3, "guest-get-osinfo")):
        r = qga_roundtrip(s, name, rid)
        expect("return" in r, "%s: %r" % (name, r))
    s.conn.settle(0.3)


def sc_qga_stale(s):
    s.conn.send(b'{"execute":"guest-ping","argu')
    time.sleep(0.2)
    qga_sync(s, QGA_STALE_SYNC_ID)
    r = qga_roundtrip(s, "guest-ping", 1)
    expect("return" in r, "guest-ping: %r" % r)
    s.conn.settle(0.3)


# ---------------------------------------------------------------------------


def write_pair(outdir, name, conn):
    for ext, data in (("tx", conn.tx), ("rx", conn.rx)):
        p = os.path.join(outdir, "%s.%s" % (name, ext))
        tmp = p + ".tmp"
        with open(tmp, "wb") as f:
            f.write(bytes(data))
        os.replace(tmp, p)
    print("%-16s tx=%7d rx=%7d  %s" % (name, len(conn.tx), len(conn.rx),
                                       " ".join(summarize(conn))))


def qmp(extra=None):
    return lambda: QmpSession(extra if extra is not None else ["-machine", "none"])


def oob_attempts(max_attempts, stop_on_success):
    """Return (kept_session_or_None, list of orders)."""
    orders = []
    kept = None
    for i in range(max_attempts):
        s = run_session(qmp(), sc_qmp_oob_attempt)
        orders.append(s.order)
        overtook = s.order.index(3) < 2  # reply 3 came before at least one in-band reply
        if overtook and kept is None:
            kept = (i + 1, s)
            if stop_on_success:
                break
    return kept, orders


def main(argv):
    if len(argv) >= 2 and argv[1] == "--oob-stats":
        n = int(argv[2]) if len(argv) > 2 else OOB_MAX_ATTEMPTS
        _, orders = oob_attempts(n, stop_on_success=False)
        counts = {}
        for o in orders:
            counts[tuple(o)] = counts.get(tuple(o), 0) + 1
        for o, c in sorted(counts.items(), key=lambda kv: -kv[1]):
            print("order %s: %d/%d" % (",".join(map(str, o)), c, n))
        return 0

    outdir = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    os.makedirs(outdir, exist_ok=True)

    s = run_session(qmp(), sc_qmp_queries)
    write_pair(outdir, "qmp-queries", s.conn)

    s = run_session(qmp(["-machine", "pc", "-accel", "tcg"]), sc_qmp_stop_cont)
    write_pair(outdir, "qmp-stop-cont", s.conn)

    kept, orders = oob_attempts(OOB_MAX_ATTEMPTS, stop_on_success=True)
    if kept is None:
        raise CaptureError("oob reply never overtook an in-band reply in %d attempts: %r"
                           % (OOB_MAX_ATTEMPTS, orders))
    attempt, s = kept
    print("qmp-oob: overtaking on attempt %d; reply order %s" % (attempt, s.order))
    write_pair(outdir, "qmp-oob", s.conn)

    s = run_session(qmp(), sc_qmp_parse_error)
    write_pair(outdir, "qmp-parse-error", s.conn)

    s = run_session(QgaSession, sc_qga_sync)
    write_pair(outdir, "qga-sync", s.conn)

    s = run_session(QgaSession, sc_qga_stale)
    write_pair(outdir, "qga-stale", s.conn)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except CaptureError as e:
        print("capture failed: %s" % e, file=sys.stderr)
        sys.exit(1)
