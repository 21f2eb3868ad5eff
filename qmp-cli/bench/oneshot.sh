#!/usr/bin/env bash
# One-shot wall time of `qmp --socket P query-status` against the same QEMU
# as a socat pipe doing the same handshake and command, and as a Python
# client on qemu.qmp (the library behind QEMU's own qmp-shell), alternating
# in one run. Prints the median of each in milliseconds and the ratios.
#
# Needs qemu-system-x86_64, socat and python3-venv (Debian: apt-get install
# qemu-system-x86 socat python3-venv); qemu.qmp is installed from PyPI into
# a venv under target/ on first use. ROUNDS (default 50) sets the rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-50}
cargo build --release -q -p qmp-cli
qmp=target/release/qmp
venv=target/qmp-cli-bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q qemu.qmp
fi
dir=$(mktemp -d)
trap 'kill "$qemu_pid" 2>/dev/null; rm -rf "$dir"' EXIT
sock=$dir/qmp.sock
qemu-system-x86_64 -machine none -display none -nodefaults -no-user-config \
    -qmp "unix:$sock,server=on,wait=off" &
qemu_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
cat > "$dir/client.py" <<'PY'
import asyncio, sys
from qemu.qmp import QMPClient
async def main():
    client = QMPClient()
    await client.connect(sys.argv[1])
    print(await client.execute("query-status"))
    await client.disconnect()
asyncio.run(main())
PY
run_qmp() { "$qmp" --socket "$sock" query-status; }
run_socat() {
    printf '{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n' |
        socat -t5 - "UNIX-CONNECT:$sock"
}
run_python() { "$venv/bin/python" "$dir/client.py" "$sock"; }
# Each must print the status before anything is timed.
for peer in qmp socat python; do
    "run_$peer" | grep -q running || { echo "$peer did not answer" >&2; exit 1; }
done
declare -A times
for round in $(seq "$rounds"); do
    # Alternate the order so drift hits every peer alike.
    if (( round % 2 )); then order="qmp socat python"; else order="python socat qmp"; fi
    for peer in $order; do
        start=$(date +%s%N)
        "run_$peer" >/dev/null
        end=$(date +%s%N)
        times[$peer]+="$(( (end - start) / 1000 )) "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
q=$(echo "${times[qmp]}" | median)
s=$(echo "${times[socat]}" | median)
p=$(echo "${times[python]}" | median)
awk -v q="$q" -v s="$s" -v p="$p" -v n="$rounds" 'BEGIN {
    printf "%d rounds, median wall time per one-shot query-status:\n", n
    printf "  qmp     %7.2f ms\n  socat   %7.2f ms\n  python  %7.2f ms (qemu.qmp)\n", q/1000, s/1000, p/1000
    printf "qmp / socat = %.2fx (target at most 1.5x); python / qmp = %.1fx (target at least 10x)\n", q/s, p/q
}'
