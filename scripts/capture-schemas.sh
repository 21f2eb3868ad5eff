#!/bin/sh
# Captures the live schemas the typed catalogue (qmp-qapi) is generated from:
#   qmp-qapi/schema/qemu-7.2.json   query-qmp-schema of the installed QEMU
#   qmp-qapi/schema/qemu-10.0.json  query-qmp-schema of QEMU 10.0
#   qmp-qapi/schema/qga-7.2.json    guest-info of the installed qemu-ga
#   qmp-qapi/schema/VERSIONS        the exact builds they came from
#
# Programs: $QMP_QEMU (default qemu-system-x86_64), $QMP_QEMU10 with
# $QMP_QEMU10_DATA as its -L folder (see scripts/prepare-qemu10.sh), and
# $QMP_QEMU_GA (default qemu-ga, also looked for in /usr/sbin).
# Needs python3 (to talk to the sockets and pretty-print).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/qmp-qapi/schema
qemu7=${QMP_QEMU:-qemu-system-x86_64}
qga=${QMP_QEMU_GA:-$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v qemu-ga || echo qemu-ga)}
: "${QMP_QEMU10:?set QMP_QEMU10 (run scripts/prepare-qemu10.sh)}"
qemu10_data=${QMP_QEMU10_DATA:-$(dirname "$QMP_QEMU10")/../share/qemu}
python=$(command -v python3) || { echo "capture-schemas: needs python3" >&2; exit 2; }
mkdir -p "$out"

"$python" - "$out" "$qemu7" "$QMP_QEMU10" "$qemu10_data" "$qga" <<'PY'
import json, os, socket, subprocess, sys, tempfile, time

out, qemu7, qemu10, qemu10_data, qga = sys.argv[1:]

def qmp(argv):
    """Runs QEMU with its monitor on stdio; returns (version, schema)."""
    cmds = ["qmp_capabilities", "query-version", "query-qmp-schema", "quit"]
    text = "".join(json.dumps({"execute": c, "id": c}) + "\n" for c in cmds)
    run = subprocess.run(
        argv + ["-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"],
        input=text.encode(), capture_output=True, timeout=60, check=False)
    replies = {}
    dec = json.JSONDecoder()
    s = run.stdout.decode()
    i = 0
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            break
        msg, i = dec.raw_decode(s, i)
        if "id" in msg:
            if "return" not in msg:
                sys.exit(f"{argv[0]}: {msg}")
            replies[msg["id"]] = msg["return"]
    if "query-qmp-schema" not in replies:
        sys.exit(f"{argv[0]} gave no schema: {run.stderr.decode()[-2000:]}")
    return replies["query-version"], replies["query-qmp-schema"]

def write_schema(name, schema):
    # One entry per line: valid JSON that diffs entry by entry.
    with open(os.path.join(out, name), "w") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(e, separators=(", ", ": ")) for e in schema))
        f.write("\n]\n")

def guest_info(program):
    with tempfile.TemporaryDirectory(prefix="qmp-capture-") as d:
        path = os.path.join(d, "qga.sock")
        ga = subprocess.Popen([program, "-m", "unix-listen", "-p", path,
                               "-f", os.path.join(d, "qga.pid"), "-t", d],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(500):
                if os.path.exists(path):
                    break
                time.sleep(0.01)
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.settimeout(10)
            s.sendall(b'{"execute": "guest-info"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            s.close()
        finally:
            ga.kill()
            ga.wait()
    return json.loads(buf)["return"]

versions = []
for argv, name in (([qemu7], "qemu-7.2.json"), ([qemu10, "-L", qemu10_data], "qemu-10.0.json")):
    version, schema = qmp(argv)
    q = version["qemu"]
    want = name[len("qemu-"):-len(".json")]
    got = f'{q["major"]}.{q["minor"]}'
    if got != want:
        sys.exit(f"{argv[0]} is QEMU {got}, expected {want} for {name}")
    write_schema(name, schema)
    commands = sum(1 for e in schema if e["meta-type"] == "command")
    events = sum(1 for e in schema if e["meta-type"] == "event")
    versions.append(f'{name}: QEMU {q["major"]}.{q["minor"]}.{q["micro"]} '
                    f'({version["package"]}), {len(schema)} entries, '
                    f'{commands} commands, {events} events')

info = guest_info(qga)
with open(os.path.join(out, "qga-7.2.json"), "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
enabled = sum(1 for c in info["supported_commands"] if c["enabled"])
versions.append(f'qga-7.2.json: qemu-ga {info["version"]}, '
                f'{len(info["supported_commands"])} commands ({enabled} enabled)')
with open(os.path.join(out, "VERSIONS"), "w") as f:
    f.write("\n".join(versions) + "\n")
print("\n".join(versions))
PY
