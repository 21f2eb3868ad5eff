#!/bin/sh
# Captures the QMP lines the typed decode bench (benches/benches/typed.rs)
# decodes, exactly as QEMU wrote them, one message per line:
#   query-status.json    the reply to query-status on a running VM
#   query-block.json     the reply to query-block with five block devices:
#                        virtio-blk and ide-hd on raw files, an empty ide-cd,
#                        scsi-hd on a raw file and on a null-co node
#   events.json          STOP, RESUME (stop, cont) and DEVICE_DELETED (the
#                        scsi-hd on null-co, unplugged by device_del)
#   VERSION              the QEMU build they came from
#
# Program: $QMP_QEMU (default qemu-system-x86_64). Machine pc with TCG, no
# guest. Needs python3 (to talk to the monitor on QEMU's stdio).
set -eu

out=$(cd "$(dirname "$0")" && pwd)
qemu=${QMP_QEMU:-qemu-system-x86_64}
python=$(command -v python3) || { echo "capture: needs python3" >&2; exit 2; }

"$python" - "$out" "$qemu" <<'PY'
import json, os, select, subprocess, sys, tempfile, time

out, qemu = sys.argv[1:]
tmp = tempfile.mkdtemp()
for name in ("a.raw", "b.raw", "c.raw"):
    with open(os.path.join(tmp, name), "wb") as f:
        f.truncate(64 << 20)
argv = [qemu, "-machine", "pc", "-accel", "tcg", "-nodefaults", "-display", "none",
        "-qmp", "stdio",
        "-drive", "if=none,id=drive0,file=a.raw,format=raw",
        "-device", "virtio-blk-pci,drive=drive0,id=disk0",
        "-drive", "if=none,id=drive1,file=b.raw,format=raw,discard=unmap",
        "-device", "ide-hd,drive=drive1,id=ide0,bus=ide.0",
        "-device", "ide-cd,id=cd0,bus=ide.1",
        "-device", "virtio-scsi-pci,id=scsi0",
        "-drive", "if=none,id=drive2,file=c.raw,format=raw,cache=none,aio=threads",
        "-device", "scsi-hd,drive=drive2,id=sd0",
        "-blockdev", "driver=null-co,node-name=null0,size=1073741824",
        "-device", "scsi-hd,drive=null0,id=sd1"]
# Images named relative to QEMU's working folder, so the replies carry no
# path of the machine they were captured on.
qemu_proc = subprocess.Popen(argv, cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
buf = b""

def line(deadline=10.0):
    """The next line QEMU wrote, as bytes without its line end."""
    global buf
    end = time.time() + deadline
    while b"\n" not in buf:
        left = end - time.time()
        if left <= 0 or not select.select([qemu_proc.stdout], [], [], left)[0]:
            sys.exit(f"capture: QEMU wrote nothing in time; so far {buf!r}")
        chunk = os.read(qemu_proc.stdout.fileno(), 65536)
        if not chunk:
            sys.exit("capture: QEMU exited")
        buf += chunk
    one, buf = buf.split(b"\n", 1)
    return one.rstrip(b"\r")

events = []

def execute(name, args=None):
    cmd = {"execute": name, "id": name}
    if args:
        cmd["arguments"] = args
    qemu_proc.stdin.write(json.dumps(cmd).encode() + b"\n")
    qemu_proc.stdin.flush()
    while True:
        raw = line()
        msg = json.loads(raw)
        if "event" in msg:
            events.append(raw)
        elif msg.get("id") == name:
            if "return" not in msg:
                sys.exit(f"capture: {name}: {msg}")
            return raw

greeting = json.loads(line())
execute("qmp_capabilities")
replies = {"query-status": execute("query-status"), "query-block": execute("query-block")}
execute("stop")
execute("cont")
execute("device_del", {"id": "sd1"})
while not any(json.loads(e)["event"] == "DEVICE_DELETED" for e in events):
    events.append(line())
execute("quit")
qemu_proc.wait(timeout=30)

for name, raw in replies.items():
    with open(os.path.join(out, name + ".json"), "wb") as f:
        f.write(raw + b"\n")
wanted = [e for e in events if json.loads(e)["event"] in ("STOP", "RESUME", "DEVICE_DELETED")]
with open(os.path.join(out, "events.json"), "wb") as f:
    f.write(b"".join(e + b"\n" for e in wanted))
v = greeting["QMP"]["version"]
pkg = v.get("package", "").strip()
with open(os.path.join(out, "VERSION"), "w") as f:
    f.write(f"QEMU {v['qemu']['major']}.{v['qemu']['minor']}.{v['qemu']['micro']} {pkg}\n")
PY
