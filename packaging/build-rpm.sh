#!/usr/bin/env bash
# Build the spfpolicy RPM from the working tree: `packaging/build-rpm.sh [OUTDIR]` (make rpm).
#
# Makes Source0 (spfpolicy-VERSION.tar.gz, from packaging/source-tree.sh: uncommitted changes
# included) and Source1 (the sysusers.d file) in a temporary rpmbuild tree, runs
# `rpmbuild -bb packaging/rpm/spfpolicy.spec` and copies the .rpm to OUTDIR (default dist/).
# On a host without Fedora's python/systemd macros (Debian's rpm package) it uses
# packaging/rpm/nonfedora-build-aid.macros and skips the dependency check (--nodeps): the
# build then runs on the host's python3 packages. On Fedora/EL neither happens.
set -euo pipefail
# The system's tools and interpreter only: not a pyenv or venv python.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUTDIR="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
SPEC="$ROOT/packaging/rpm/spfpolicy.spec"
VERSION="$(sed -n 's/^Version: *//p' "$SPEC")"

TOP="$(mktemp -d "${TMPDIR:-/tmp}/spfpolicy-rpm.XXXXXX")"
trap 'rm -rf "$TOP"' EXIT
mkdir -p "$TOP/SOURCES" "$TOP/tree"

echo "build-rpm: making the source tarball spfpolicy-$VERSION.tar.gz"
"$ROOT/packaging/source-tree.sh" "$TOP/tree/spfpolicy-$VERSION"
tar -C "$TOP/tree" -czf "$TOP/SOURCES/spfpolicy-$VERSION.tar.gz" "spfpolicy-$VERSION"
cp "$ROOT/packaging/sysusers.d/spfpolicy.conf" "$TOP/SOURCES/spfpolicy.sysusers"

options=(--define "_topdir $TOP")
if [ -z "$(rpm --eval '%{?pyproject_wheel:fedora}')" ]; then
    echo "build-rpm: no Fedora python macros on this host: using" \
        "packaging/rpm/nonfedora-build-aid.macros and skipping dependency checks (--nodeps)"
    # As the per-user macro file, not with `rpmbuild --load`: rpm 4.20 (Debian 13) no longer
    # has --load's macros defined when it runs %generate_buildrequires, while it reads
    # ~/.rpmmacros each time it sets up its macros, on 4.18 (Debian 12) and 4.20 alike.
    mkdir -p "$TOP/home"
    cp "$ROOT/packaging/rpm/nonfedora-build-aid.macros" "$TOP/home/.rpmmacros"
    export HOME="$TOP/home"
    options+=(--nodeps)
fi

echo "build-rpm: rpmbuild -bb spfpolicy.spec (spfpolicy $VERSION)"
rpmbuild "${options[@]}" -bb "$SPEC"

rm -f "$OUTDIR"/spfpolicy-*.rpm
cp "$TOP"/RPMS/noarch/spfpolicy-"$VERSION"-*.rpm "$OUTDIR"/
echo "build-rpm: built"
ls -l "$OUTDIR"/spfpolicy-"$VERSION"-*.rpm
