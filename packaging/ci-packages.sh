#!/usr/bin/env bash
# CI for the packages (.ci/run calls it after `make test` passes; needs root on Debian 12):
# build the .deb, lintian, install it, smoke-test it as _spfpolicy (with a private Postfix),
# reinstall over a changed config, purge it and check that the user and /etc/spfpolicy are
# gone; then build the RPM with rpmbuild -bb and rpmlint it. Any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
DIST="$(mkdir -p "${DIST:-dist}" && cd "${DIST:-dist}" && pwd)"
STARTED=$SECONDS
INSTALLED=no

step() { printf '\n==> ci-packages [%3d s]: %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() {
    echo "ci-packages: FAILED: $*" >&2
    exit 1
}
cleanup() {
    if [ "$INSTALLED" = yes ]; then
        echo "ci-packages: purging spfpolicy after a failure"
        apt-get purge -y -qq spfpolicy >/dev/null || true
    fi
}
trap cleanup EXIT

step "installing the build tools (Build-Depends of packaging/debian/control, lintian, rpm, ...)"
apt-get update -qq
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
stage="$(mktemp -d)"
cp -a packaging/debian "$stage/debian"
apt-get build-dep -y -qq "$stage/" >/dev/null
rm -rf "$stage"
apt-get install -y -qq --no-install-recommends \
    lintian man-db groff-base postfix bsdutils util-linux \
    rpm rpmlint python3-build python3-installer python3-wheel python3-pytest \
    python3-spf python3-dnspython python3-cachetools python3-prometheus-client >/dev/null
for package in python3-spf python3-dnspython python3-cachetools python3-prometheus-client; do
    echo "  $package $(dpkg-query -W -f='${Version}' "$package")"
done

step "building the .deb: make deb DIST=$DIST"
make deb DIST="$DIST"

step "lintian (fails on errors)"
lintian --fail-on error --display-info "$DIST"/spfpolicy_*.changes

step "installing it: apt-get install $DIST/spfpolicy_*.deb"
if dpkg-query -W spfpolicy >/dev/null 2>&1; then
    apt-get purge -y -qq spfpolicy >/dev/null
fi
INSTALLED=yes
apt-get install -y --no-install-recommends "$DIST"/spfpolicy_*.deb
getent passwd _spfpolicy || fail "the user _spfpolicy was not created"

step "smoke test: packaging/debian/tests/smoke --postfix"
packaging/debian/tests/smoke --postfix

step "reinstalling over a changed /etc/spfpolicy/spfpolicy.toml (conffile: kept)"
marker="# changed by ci-packages"
echo "$marker" >>/etc/spfpolicy/spfpolicy.toml
dpkg -i "$DIST"/spfpolicy_*.deb
tail -n 1 /etc/spfpolicy/spfpolicy.toml | grep -qxF "$marker" || fail "the changed config was replaced"
/usr/bin/spfpolicy config check /etc/spfpolicy/spfpolicy.toml

step "purging it: apt-get purge spfpolicy"
apt-get purge -y spfpolicy
INSTALLED=no
if getent passwd _spfpolicy || getent group _spfpolicy; then
    fail "purge left the user or group _spfpolicy"
fi
[ ! -e /etc/spfpolicy ] || fail "purge left /etc/spfpolicy: $(ls -A /etc/spfpolicy)"
echo "the user, the group and /etc/spfpolicy are gone"

step "building the RPM: make rpm DIST=$DIST"
make rpm DIST="$DIST"

step "rpmlint (fails on errors)"
rpmlint -c packaging/rpm/rpmlint-fedora.toml packaging/rpm/spfpolicy.spec "$DIST"/spfpolicy-*.noarch.rpm

step "contents"
dpkg -c "$DIST"/spfpolicy_*.deb
rpm -qlp "$DIST"/spfpolicy-*.noarch.rpm

step "OK: the packages built, passed lintian and rpmlint, and the .deb worked installed"
