#!/usr/bin/env bash
# Build the spfpolicy .deb from the working tree: `packaging/build-deb.sh [OUTDIR]` (make deb).
#
# Debian expects debian/ at the top of the source tree; ours is packaging/debian. So copy the
# working tree (packaging/source-tree.sh: uncommitted changes included; no .venv, .git, caches
# or build output) into a temporary directory, put a copy of packaging/debian at ./debian
# there with the systemd units in it, run dpkg-buildpackage, and move the .deb, .buildinfo and
# .changes to OUTDIR (default dist/), replacing spfpolicy's earlier ones so that
# ./dist/spfpolicy_*.deb is one file.
# Needs the Build-Depends of packaging/debian/control (dpkg-buildpackage checks them).
set -euo pipefail
# The system's tools and interpreter only, as in a build chroot: not a pyenv or venv python.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUTDIR="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
VERSION="$(dpkg-parsechangelog -l "$ROOT/packaging/debian/changelog" -S Version)"
UPSTREAM="${VERSION%-*}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spfpolicy-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SOURCE="$WORK/spfpolicy-$UPSTREAM"
mkdir "$SOURCE"

echo "build-deb: copying the working tree to $SOURCE"
"$ROOT/packaging/source-tree.sh" "$SOURCE"
cp -a "$ROOT/packaging/debian" "$SOURCE/debian"
# The units as debian/spfpolicy.{service,socket}, for dh_installsystemd to place where this
# release wants them: /lib/systemd/system on Debian 12, /usr/lib/systemd/system on 13, whose
# merged /usr makes a file under /lib an alias dpkg cannot track (lintian: aliased-location).
cp "$ROOT/systemd/spfpolicy.service" "$ROOT/systemd/spfpolicy.socket" "$SOURCE/debian/"

echo "build-deb: dpkg-buildpackage -us -uc -b (spfpolicy $VERSION)"
(cd "$SOURCE" && dpkg-buildpackage -us -uc -b)

rm -f "$OUTDIR"/spfpolicy_*.deb "$OUTDIR"/spfpolicy_*.buildinfo "$OUTDIR"/spfpolicy_*.changes
mv "$WORK"/spfpolicy_"$VERSION"_* "$OUTDIR"/
echo "build-deb: built"
ls -l "$OUTDIR"/spfpolicy_"$VERSION"_*
