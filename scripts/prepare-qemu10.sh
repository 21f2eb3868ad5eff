#!/bin/sh
# Unpacks QEMU 10.0 from Debian's bookworm-backports beside the installed 7.2,
# without installing it (the two conflict): apt-get download + dpkg-deb -x
# into a cache folder. Needs root for the apt source and `apt-get update`.
#
#   scripts/prepare-qemu10.sh          # unpacks into $QMP_CACHE (default: target/qemu10)
#   eval "$(scripts/prepare-qemu10.sh --env)"
#
# Prints the variables to export: QMP_QEMU10 (the binary) and
# QMP_QEMU10_DATA (its firmware folder, for `-L`). The unpacked QEMU loads
# modules from the system folder, which holds 7.2's: commands that load a
# module (qom-list-types) abort it. `-machine none` and ordinary commands work.
# Running it twice does nothing the second time.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${QMP_CACHE:-$repo/target/qemu10}
sources=${QMP_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
packages="qemu-system-x86 qemu-system-common qemu-system-data"
binary=$cache/usr/bin/qemu-system-x86_64
data=$cache/usr/share/qemu

say() { [ "${1:-}" = --env ] || echo "$2" >&2; }
mode=${1:-}

if [ ! -x "$binary" ] || [ ! -d "$data" ]; then
    # The suite goes on the Suites: line that holds plain `bookworm`, next to
    # the host the machine already uses; a second run finds it there.
    if ! grep -Eq '^Suites:.*[[:space:]]bookworm-backports([[:space:]]|$)' "$sources"; then
        say "$mode" "adding bookworm-backports to $sources"
        sed -i -E '/^Suites:(.*[[:space:]])?bookworm([[:space:]]|$)/{/bookworm-backports/!s/[[:space:]]*$/ bookworm-backports/}' "$sources"
        apt-get update -qq >&2
    elif [ -z "$(apt-cache madison qemu-system-x86 | grep bookworm-backports || true)" ]; then
        apt-get update -qq >&2
    fi
    debs=$cache/debs
    mkdir -p "$debs" "$cache"
    for p in $packages; do
        if ! ls "$debs/${p}_"*.deb >/dev/null 2>&1; then
            (cd "$debs" && apt-get download -q "$p/bookworm-backports" >&2)
        fi
    done
    for deb in "$debs"/*.deb; do
        say "$mode" "unpacking $(basename "$deb")"
        dpkg-deb -x "$deb" "$cache"
    done
    # Which build this is, for the schema README.
    for deb in "$debs"/*.deb; do
        dpkg-deb -f "$deb" Package Version | paste -sd' '
    done > "$cache/VERSIONS"
fi

"$binary" -L "$data" --version >/dev/null

if [ "$mode" = --env ]; then
    echo "export QMP_QEMU10=$binary"
    echo "export QMP_QEMU10_DATA=$data"
else
    echo "QEMU 10 ready; export:" >&2
    echo "QMP_QEMU10=$binary"
    echo "QMP_QEMU10_DATA=$data   # run it with -L \$QMP_QEMU10_DATA"
fi
