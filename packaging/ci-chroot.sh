#!/usr/bin/env bash
# CI on another Debian release (.ci/run calls it on the Debian 12 host: `packaging/ci-chroot.sh
# trixie`): make a minimal chroot of that release from Debian's own archive with mmdebstrap,
# copy the working tree into it, and run .ci/run there, which installs what it needs with the
# release's apt-get, runs the test suite on the release's python3 with the floor pins, and
# builds, lints, installs, smoke-tests and purges the .deb and builds and lints the RPM.
#
# The chroot runs in a mount and PID namespace of its own (unshare): its /proc, /sys and /dev
# mounts and any daemon the tests leave behind end with it, so removing the chroot afterwards
# cannot reach the host's /dev. Needs root and deb.debian.org; the chroot is removed at the end.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive

RELEASE="${1:?usage: packaging/ci-chroot.sh RELEASE (a Debian suite name, e.g. trixie)}"
MIRROR="${SPFPOLICY_CI_MIRROR:-http://deb.debian.org/debian}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STARTED=$SECONDS

step() { printf '\n==> ci-chroot %s [%3d s]: %s\n' "$RELEASE" "$((SECONDS - STARTED))" "$*"; }

if ! command -v mmdebstrap >/dev/null 2>&1; then
    step "installing mmdebstrap"
    apt-get install -y -qq --no-install-recommends mmdebstrap debian-archive-keyring >/dev/null
fi

CHROOT="$(mktemp -d "${TMPDIR:-/tmp}/spfpolicy-$RELEASE.XXXXXX")"
trap 'rm -rf --one-file-system "$CHROOT"' EXIT

step "mmdebstrap $RELEASE $CHROOT $MIRROR"
# mmdebstrap wants an empty directory or one it creates: the temporary one is removed first.
rmdir "$CHROOT"
mmdebstrap --quiet --mode=root --variant=apt --include=ca-certificates \
    "$RELEASE" "$CHROOT" "$MIRROR"
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
# The host's trusted certificates beside the release's own: where the host reaches PyPI through
# a TLS-inspecting proxy, that proxy's CA is among them, and pip in the chroot, which trusts the
# system store, needs it as the host's pip does.
hostcas="$CHROOT/usr/local/share/ca-certificates/host"
mkdir -p "$hostcas"
awk -v dir="$hostcas" '
    /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/host-%03d.crt", dir, n) }
    file { print > file }
    /-----END CERTIFICATE-----/ { close(file); file = "" }
' /etc/ssl/certs/ca-certificates.crt
chroot "$CHROOT" update-ca-certificates >/dev/null

step "copying the working tree to $CHROOT/src/spfpolicy"
mkdir -p "$CHROOT/src/spfpolicy"
"$ROOT/packaging/source-tree.sh" "$CHROOT/src/spfpolicy"

step "running .ci/run in the $RELEASE chroot"
# SPFPOLICY_CI_RELEASE_ONLY: .ci/run inside runs this release's own checks, not the chroots again.
unshare --mount --pid --fork --propagation private /bin/sh -eu -c '
    root="$1"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 SPFPOLICY_CI_RELEASE_ONLY=1 /bin/bash -c "cd /src/spfpolicy && .ci/run"
' sh "$CHROOT"

step "the $RELEASE chroot passed"
