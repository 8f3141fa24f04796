#!/bin/bash
# Re-create the real tgtd / tgtadm / libiscsi / iscsiadm captures in this directory
# and in ../iscsiadm/. Run as root on a Debian 12 machine with tgt, libiscsi-bin and
# open-iscsi installed. Only 127.0.0.1 is used; tgtd gets its own control port (-C 7)
# and portal 127.0.0.1:3261 so it does not collide with any other tgtd.
#
# Every capture NAME produces NAME.stdout (verbatim stdout; may be empty), NAME.stderr
# (verbatim stderr, only when non-empty) and a line "NAME <exit status>" in exit-codes.txt.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TGT=$HERE
ISCSIADM=$HERE/../iscsiadm
WORK=/tmp/miglab-parse-capture
CP=7
PORTAL=127.0.0.1:3261
IQN1=iqn.2024-01.lab.storage:disk1
IQN2=iqn.2024-01.lab.storage:disk2
XEN1=iqn.2024-01.lab.client:xen1
XEN2=iqn.2024-01.lab.client:xen2

rm -rf "$WORK"; mkdir -p "$WORK"
: >"$TGT/exit-codes.txt"; : >"$ISCSIADM/exit-codes.txt"

cap() { # cap DIR NAME cmd...
    local dir=$1 name=$2; shift 2
    "$@" >"$dir/$name.stdout" 2>"$WORK/$name.stderr"
    local rc=$?
    if [ -s "$WORK/$name.stderr" ]; then cp "$WORK/$name.stderr" "$dir/$name.stderr"; else rm -f "$dir/$name.stderr"; fi
    echo "$name $rc" >>"$dir/exit-codes.txt"
    echo "[$rc] $name: $*" >&2
}
adm() { tgtadm -C "$CP" --lld iscsi "$@"; }

truncate -s 64M "$WORK/disk1.img"
truncate -s 32M "$WORK/disk2.img"

tgtd -f -C "$CP" --iscsi portal="$PORTAL" >"$WORK/tgtd.log" 2>&1 &
TGTD=$!
sleep 1

cap "$TGT" show-target-none adm --op show --mode target
adm --op new --mode target --tid 1 -T "$IQN1"
adm --op new --mode logicalunit --tid 1 --lun 1 -b "$WORK/disk1.img"
adm --op bind --mode target --tid 1 -I ALL
cap "$TGT" show-target-idle adm --op show --mode target

# A second target: ACL by initiator name and by address, and a CHAP account.
adm --op new --mode target --tid 2 -T "$IQN2"
adm --op new --mode logicalunit --tid 2 --lun 1 -b "$WORK/disk2.img"
adm --op bind --mode target --tid 2 -Q "$XEN1"
adm --op bind --mode target --tid 2 -I 127.0.0.1
adm --op new --mode account --user miglab --password lab-chap-pw1
adm --op bind --mode account --tid 2 --user miglab
adm --op new --mode account --user storage-out --password lab-chap-pw2
adm --op bind --mode account --tid 2 --user storage-out --outgoing
cap "$TGT" show-account adm --op show --mode account
cap "$TGT" show-target-two adm --op show --mode target

# Real logins: iscsi-ls logs in and out; iscsi-perf keeps a session open for -t seconds.
cap "$TGT" iscsi-ls-s iscsi-ls -s "iscsi://$PORTAL/"
cap "$TGT" iscsi-ls-s-xen1-chap iscsi-ls -s -i "$XEN1" "iscsi://miglab%lab-chap-pw1@$PORTAL/"
cap "$TGT" iscsi-ls-url iscsi-ls --url "iscsi://$PORTAL/"
cap "$TGT" iscsi-ls-s-refused iscsi-ls -s "iscsi://127.0.0.1:3269/"
iscsi-perf -i "$XEN1" -t 15 "iscsi://$PORTAL/$IQN1/1" >"$WORK/perf1.log" 2>&1 &
P1=$!
iscsi-perf -i "$XEN2" -t 15 "iscsi://$PORTAL/$IQN1/1" >"$WORK/perf2.log" 2>&1 &
P2=$!
iscsi-perf -i "$XEN1" -t 15 "iscsi://miglab%lab-chap-pw1@$PORTAL/$IQN2/1" >"$WORK/perf3.log" 2>&1 &
P3=$!
sleep 3
cap "$TGT" show-target-sessions adm --op show --mode target
cap "$TGT" show-target-tid1-params adm --op show --mode target --tid 1
cap "$TGT" show-conn-tid1 adm --op show --mode conn --tid 1

# iscsiadm: discovery is a plain TCP exchange, but iscsiadm insists on the kernel driver.
cap "$ISCSIADM" version iscsiadm --version
cap "$ISCSIADM" discovery-st iscsiadm -m discovery -t sendtargets -p "$PORTAL"
cap "$ISCSIADM" node-none iscsiadm -m node
cap "$ISCSIADM" session-none iscsiadm -m session
cap "$ISCSIADM" session-P3-none iscsiadm -m session -P 3
cap "$ISCSIADM" node-new iscsiadm -m node -o new -T "$IQN1" -p "$PORTAL"
cap "$ISCSIADM" node-one iscsiadm -m node
cap "$ISCSIADM" node-login-no-iscsid iscsiadm -m node -T "$IQN1" -p "$PORTAL" --login
cap "$ISCSIADM" node-logout-none iscsiadm -m node -T "$IQN1" -p "$PORTAL" --logout
cap "$ISCSIADM" node-login-unknown iscsiadm -m node -T iqn.2024-01.lab.storage:nope -p "$PORTAL" --login
cap "$ISCSIADM" node-delete iscsiadm -m node -o delete -T "$IQN1" -p "$PORTAL"
timeout 5 iscsid -f >"$ISCSIADM/iscsid-f.stdout" 2>"$WORK/iscsid.stderr"
echo "iscsid-f $?" >>"$ISCSIADM/exit-codes.txt"
cp "$WORK/iscsid.stderr" "$ISCSIADM/iscsid-f.stderr"

# tgtadm management errors (all exit 22 = EINVAL) and no daemon (exit 107).
cap "$TGT" err-target-exists adm --op new --mode target --tid 1 -T "$IQN1"
cap "$TGT" err-lun-exists adm --op new --mode logicalunit --tid 1 --lun 1 -b "$WORK/disk1.img"
cap "$TGT" err-no-target adm --op show --mode target --tid 9
cap "$TGT" err-delete-no-target adm --op delete --mode target --tid 9
cap "$TGT" err-bad-backing adm --op new --mode logicalunit --tid 1 --lun 2 -b "$WORK/missing.img"
cap "$TGT" err-delete-active adm --op delete --mode target --tid 1
cap "$TGT" err-no-daemon tgtadm -C 8 --lld iscsi --op show --mode target

wait "$P1" "$P2" "$P3" 2>/dev/null
sleep 1
cap "$TGT" show-target-after-logout adm --op show --mode target

# Stop: delete every target with --force, then the system (tgtd ignores SIGTERM).
adm --op delete --mode target --tid 1 --force
adm --op delete --mode target --tid 2 --force
cap "$TGT" show-target-deleted adm --op show --mode target
tgtadm -C "$CP" --op delete --mode system
wait "$TGTD" 2>/dev/null
echo "tgtd exited: $?" >&2
# tgtd leaves its control socket and lock file behind when it exits.
rm -f "/var/run/tgtd/socket.$CP" "/var/run/tgtd/socket.$CP.lock"
cp "$WORK/tgtd.log" "$TGT/tgtd-stderr.log"
rm -rf "$WORK"
# Even a failed sendtargets discovery leaves a discovery record behind; drop ours.
rm -rf "/etc/iscsi/send_targets/${PORTAL/:/,}"
