#!/usr/bin/env bash
# A private libvirtd for qmp-libvirt's tests (Debian 12: libvirt 9.0, QEMU 7.2, TCG; as root).
#
#   install                    Debian packages, the users and groups libvirt's QEMU driver
#                              expects, /etc/libvirt/qemu.conf. Idempotent.
#   start DIR [PORT]           a root libvirtd in its own mount namespace, state under DIR/state,
#                              unix socket DIR/libvirt-sock, TCP 127.0.0.1:PORT (default 16511),
#                              auth none. Returns once the QEMU driver answers a real call.
#   stop DIR                   destroys the daemon's domains, stops libvirtd and virtlogd.
#   smoke URI                  transient domain, query-status, STOP/RESUME events, destroy.
#   domain-create URI NAME     a transient TCG domain: qemu, x86_64, pc, 64 MiB, no disks/graphics.
#   domain-destroy URI NAME    destroys it; a domain that is already gone is not an error.
#   domain-define URI NAME     the same domain defined (persistent) but not started.
#   domain-undefine URI NAME   removes a defined domain; one already gone is not an error.
#
# URIs of a started daemon: qemu:///system?socket=DIR/libvirt-sock and
# qemu+tcp://127.0.0.1:PORT/system.
#
# Why a mount namespace: libvirtd's driver state paths (/run/libvirt, /var/lib/libvirt, ...) are
# fixed, so a second root daemon beside the system one fails on its pid files. Private folders
# bound over them give each test run its own daemon. The namespace lives as long as the
# processes started in it (libvirtd, virtlogd, QEMU).
#
# Why readiness is a real call: the socket appears within 0.1 s, but with a cold QEMU
# capabilities cache the first call that reaches the QEMU driver blocks for about 8-9 s.
set -euo pipefail

PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86)
READY_TIMEOUT=${LIBVIRT_READY_TIMEOUT:-60}

die() { echo "libvirt.sh: $*" >&2; exit 1; }

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

qemu_conf() {
  # root QEMU without DAC, namespaces or cgroups: the machine has no systemd and no KVM.
  cat <<'CONF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
CONF
}

libvirtd_conf() { # SOCKDIR PORT
  cat <<CONF
unix_sock_dir = "$1"
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$2"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
}

write_if_changed() { # FILE: stdin becomes FILE unless it already says the same
  local f=$1 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mv "$tmp" "$f"; chmod 644 "$f"; fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() { # FILE: TERM the process the file names, wait up to 10 s, then KILL
  local f=$1 p i
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if kill -TERM "$p" 2>/dev/null; then
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$f"
}

wait_ready() { # URI: until the QEMU driver answers (version needs the capabilities probe)
  local uri=$1 deadline=$((SECONDS + READY_TIMEOUT)) err
  while [ $SECONDS -lt $deadline ]; do
    if err=$(virsh -c "$uri" version 2>&1 >/dev/null); then return 0; fi
    sleep 0.1
  done
  die "libvirtd at $uri not ready after ${READY_TIMEOUT} s: $err"
}

domain_xml() { # NAME
  cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
XML
}

cmd_install() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  mkdir -p /etc/libvirt /var/log/libvirt
  qemu_conf | write_if_changed /etc/libvirt/qemu.conf
  command -v libvirtd >/dev/null && command -v virtlogd >/dev/null && command -v virsh >/dev/null \
    || die "install: libvirtd, virtlogd or virsh missing after install"
}

cmd_start() {
  [ $# -ge 1 ] || usage
  local dir port s
  dir=$(realpath -m "$1"); port=${2:-16511}
  command -v libvirtd >/dev/null || die "libvirtd is not installed: run '$0 install' first"
  [ -d /etc/libvirt ] || die "/etc/libvirt missing: run '$0 install' first"
  s=$dir/state
  if alive "$s/libvirtd.pid"; then
    echo "libvirtd already running for $dir (pid $(cat "$s/libvirtd.pid"))"
  else
    mkdir -p "$dir" "$s"/{run,lib,cache,log,etc}
    chmod 755 "$dir"
    [ -e "$s/etc/.copied" ] || { cp -a /etc/libvirt/. "$s/etc/"; touch "$s/etc/.copied"; }
    qemu_conf | write_if_changed "$s/etc/qemu.conf"
    libvirtd_conf "$dir" "$port" | write_if_changed "$s/etc/libvirtd.conf"
    rm -f "$dir/libvirt-sock" "$dir/libvirt-sock-ro" "$dir/libvirt-admin-sock"
    # the mount points themselves (/run is a fresh tmpfs after a reboot)
    mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
    unshare --mount --propagation private bash -ec "
      mount --bind '$s/run'   /run/libvirt
      mount --bind '$s/lib'   /var/lib/libvirt
      mount --bind '$s/cache' /var/cache/libvirt
      mount --bind '$s/log'   /var/log/libvirt
      mount --bind '$s/etc'   /etc/libvirt
      virtlogd -d -p '$s/virtlogd.pid'
      libvirtd -d --listen --config /etc/libvirt/libvirtd.conf --pid-file '$s/libvirtd.pid'" \
      || die "libvirtd did not start (its log: $s/log)"
  fi
  wait_ready "qemu:///system?socket=$dir/libvirt-sock"
  echo "unix: qemu:///system?socket=$dir/libvirt-sock"
  echo "tcp:  qemu+tcp://127.0.0.1:$port/system"
}

cmd_stop() {
  [ $# -ge 1 ] || usage
  local dir s uri name f
  dir=$(realpath -m "$1"); s=$dir/state
  uri="qemu:///system?socket=$dir/libvirt-sock"
  # libvirtd leaves its QEMUs running when it exits: destroy them first, and kill by pid file
  # whatever a dead daemon left behind.
  if alive "$s/libvirtd.pid"; then
    for name in $(virsh -c "$uri" list --name 2>/dev/null); do
      virsh -c "$uri" destroy "$name" >/dev/null 2>&1 || true
    done
  fi
  stop_pidfile "$s/libvirtd.pid"
  for f in "$s"/run/qemu/*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  stop_pidfile "$s/virtlogd.pid"
  rm -f "$dir/libvirt-sock" "$dir/libvirt-sock-ro" "$dir/libvirt-admin-sock"
}

cmd_domain_create() {
  [ $# -eq 2 ] || usage
  local uri=$1 name=$2 x
  x=$(mktemp -d); chmod 755 "$x"
  domain_xml "$name" >"$x/domain.xml"; chmod 644 "$x/domain.xml"
  if ! virsh -c "$uri" create "$x/domain.xml" >/dev/null; then rm -rf "$x"; die "create $name failed"; fi
  rm -rf "$x"
}

cmd_domain_destroy() {
  [ $# -eq 2 ] || usage
  local uri=$1 name=$2 err
  if ! err=$(virsh -c "$uri" destroy "$name" 2>&1 >/dev/null); then
    case "$err" in
      *"failed to get domain"*|*"Domain not found"*|*"not running"*) ;;
      *) die "destroy $name: $err" ;;
    esac
  fi
}

cmd_domain_define() {
  [ $# -eq 2 ] || usage
  local uri=$1 name=$2 x
  x=$(mktemp -d); chmod 755 "$x"
  domain_xml "$name" >"$x/domain.xml"; chmod 644 "$x/domain.xml"
  if ! virsh -c "$uri" define "$x/domain.xml" >/dev/null; then rm -rf "$x"; die "define $name failed"; fi
  rm -rf "$x"
}

cmd_domain_undefine() {
  [ $# -eq 2 ] || usage
  local uri=$1 name=$2 err
  cmd_domain_destroy "$uri" "$name"
  if ! err=$(virsh -c "$uri" undefine "$name" 2>&1 >/dev/null); then
    case "$err" in
      *"failed to get domain"*|*"Domain not found"*) ;;
      *) die "undefine $name: $err" ;;
    esac
  fi
}

cmd_smoke() {
  [ $# -eq 1 ] || usage
  local uri=$1 name ev pid status
  name=qmp-smoke-$$
  ev=$(mktemp)
  # globals: the EXIT trap runs after this function's locals are gone
  SMOKE_URI=$uri SMOKE_NAME=$name SMOKE_EV=$ev
  trap 'cmd_domain_destroy "$SMOKE_URI" "$SMOKE_NAME" || true; rm -f "$SMOKE_EV"' EXIT
  cmd_domain_create "$uri" "$name"
  status=$(virsh -c "$uri" qemu-monitor-command "$name" '{"execute":"query-status"}')
  echo "$status"
  case "$status" in *'"status":"running"'*) ;; *) die "smoke: query-status did not say running" ;; esac
  virsh -c "$uri" qemu-monitor-event "$name" --loop --timeout 4 >"$ev" 2>&1 &
  pid=$!
  sleep 1
  virsh -c "$uri" suspend "$name" >/dev/null
  virsh -c "$uri" resume "$name" >/dev/null
  wait "$pid" || true
  cat "$ev"
  grep -q 'event STOP' "$ev" && grep -q 'event RESUME' "$ev" || die "smoke: STOP/RESUME not seen"
  echo "smoke ok: $uri"
}

cmd=${1:-}; shift || true
case "$cmd" in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  smoke) cmd_smoke "$@" ;;
  domain-create) cmd_domain_create "$@" ;;
  domain-destroy) cmd_domain_destroy "$@" ;;
  domain-define) cmd_domain_define "$@" ;;
  domain-undefine) cmd_domain_undefine "$@" ;;
  *) usage ;;
esac
