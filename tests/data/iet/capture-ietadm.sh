#!/bin/sh
# Re-make the ietadm-* captures: build ietadm from IET's sources and run it with no ietd
# (IET's kernel module cannot load here, so ietd cannot run; these are the replies a lab
# gets when ietd is down and the errors ietadm finds itself).
# Usage: capture-ietadm.sh IET_SVN_CHECKOUT OUT_DIR
#   IET_SVN_CHECKOUT: a checkout of github.com/BackupTheBerlios/iscsitarget-svn
set -eu
src=$1
out=$2
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
for v in 1.4.19 0.4.12; do
    cp -r "$src/tags/$v" "$build/$v"
    make -s -C "$build/$v/usr" ietadm >/dev/null 2>&1
    bin="$build/$v/usr/ietadm"
    run() {
        name=$1
        shift
        set +e
        "$bin" "$@" >"$out/ietadm-$v-$name.stdout" 2>"$out/ietadm-$v-$name.stderr"
        echo "ietadm-$v-$name $?" >>"$out/ietadm-exit-codes.txt"
        set -e
    }
    run version --version
    run show-no-ietd --op show --tid=1
    run show-user-no-ietd --op show --tid=1 --user
    run update-unknown-param --op update --tid=1 --params Bogus=1
    run no-op
    run new-user-no-password --op new --tid=1 --user --params=IncomingUser=u
done
