#!/usr/bin/env bash
# The two commands on a bare Debian 12, for real: a `debootstrap` root filesystem,
# a fresh clone of this checkout's branch, `make test`, then `make run`.
#
#   sudo bench/bare_debian.sh [WORKDIR]      (default /var/tmp/pipeline-bare-debian)
#
# 1. debootstrap --variant=minbase bookworm (the mirror of this host's apt sources,
#    or $MIRROR), then what the README asks for beforehand: python3, make, git.
# 2. A fresh `git clone` of this checkout's branch into the root filesystem.
# 3. `make test` in the chroot, from nothing: it installs the Debian packages and the
#    venv, starts throwaway servers and runs every test. The chroot shares this
#    host's network (apt and pip need it), so PIPELINE_LOCAL_SERVERS=own keeps it
#    from using the servers this host may run on the standard ports.
# 4. `make run` in the chroot, in a network namespace of its own (loopback only):
#    nothing answers on the standard ports there, as on a bare machine, so the demo
#    starts its own PostgreSQL and RabbitMQ. bench/first_run.py times it: up,
#    green, `make demo-break`, red, green again, Ctrl-C.
# 5. With ISOLATED_TEST=1, `make test` once more in such a namespace (everything is
#    installed by then): no test may need this host's servers.
#
# It prints the time of each step and the disk used, then unmounts and deletes the
# root filesystem (KEEP=1 keeps it). Needs root, debootstrap (installed if missing),
# unshare and ip, and the network: Debian's mirror and PyPI.
set -euo pipefail

REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
BRANCH=$(git -C "$REPO" rev-parse --abbrev-ref HEAD)
WORK=${1:-/var/tmp/pipeline-bare-debian}
ROOTFS=$WORK/rootfs
SRC=/root/pipeline-recovery
LOG=$WORK/log

[[ $(id -u) -eq 0 ]] || { echo "bare-debian: run as root (debootstrap, chroot, mount)" >&2; exit 1; }

mirror() {
    local found
    found=$(grep -hoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -v security | head -n1 | awk '{print $2}') || true
    echo "${found:-http://deb.debian.org/debian}"
}
MIRROR=${MIRROR:-$(mirror)}

step_started=0
step() { step_started=$(date +%s); echo; echo "== $*"; }
took() { echo "bare-debian: $1: $(( $(date +%s) - step_started )) s"; }
disk() { echo "bare-debian: disk after $1: $(du -sm --one-file-system "$ROOTFS" | cut -f1) MB"; }

mounted=()
mount_all() {
    # The root filesystem a mount point of its own, as / is on a machine: tools that
    # set mount propagation (unshare --mount, which a test uses) need that.
    mount --bind "$ROOTFS" "$ROOTFS"; mounted+=("$ROOTFS")
    mount -t proc proc "$ROOTFS/proc"; mounted+=("$ROOTFS/proc")
    mount -t sysfs sysfs "$ROOTFS/sys"; mounted+=("$ROOTFS/sys")
    mount --bind /dev "$ROOTFS/dev"; mounted+=("$ROOTFS/dev")
    mount -t devpts devpts "$ROOTFS/dev/pts" -o newinstance,ptmxmode=0666; mounted+=("$ROOTFS/dev/pts")
    mount -t tmpfs shm "$ROOTFS/dev/shm"; mounted+=("$ROOTFS/dev/shm")
}
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
    mounted=()
    if [[ ${KEEP:-0} != 1 && -d $ROOTFS ]]; then
        # Only once nothing is mounted below it: never delete through a bind mount.
        if ! grep -q " $ROOTFS[/ ]" /proc/mounts; then rm -rf --one-file-system "$ROOTFS"; fi
    fi
}
trap cleanup EXIT

in_chroot() { chroot "$ROOTFS" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# The same, in a network namespace with only a loopback (the host's ip, before chroot).
isolated() { unshare -n sh -c 'ip link set lo up && exec "$@"' sh \
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

mkdir -p "$WORK"
[[ -e $ROOTFS ]] && { echo "bare-debian: $ROOTFS exists; remove it first" >&2; trap - EXIT; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null

step "debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$LOG.debootstrap" 2>&1
took debootstrap; disk debootstrap

mount_all
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# Certificate authorities this host adds to Debian's (a proxy that inspects TLS
# has one): the chroot's ca-certificates takes them in when it is installed below.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
fi
# A chroot has no init: a package's service must not start here (on this host's
# network, beside this host's servers). Packages are installed; nothing is started.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"; chmod +x "$ROOTFS/usr/sbin/policy-rc.d"

step "what the README asks for: python3, make, git"
in_chroot apt-get update -qq
in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3 make git ca-certificates >/dev/null
took "python3, make, git"; disk "python3, make, git"

step "fresh clone of $BRANCH"
git clone --quiet --branch "$BRANCH" "$REPO" "$ROOTFS$SRC"
echo "bare-debian: commit $(git -C "$ROOTFS$SRC" rev-parse --short HEAD)"

step "make test (from nothing)"
set +e
in_chroot env PIPELINE_LOCAL_SERVERS=own sh -c "cd $SRC && make test" 2>&1 | tee "$LOG.make-test" \
    | grep -E '^(make|test servers)|^(FAILED|ERROR) | (passed|failed)'
status=${PIPESTATUS[0]}
set -e
took "make test"; disk "make test"
echo "bare-debian: of which .venv: $(du -sm "$ROOTFS$SRC/.venv" | cut -f1) MB," \
    "apt's downloaded packages: $(du -sm "$ROOTFS/var/cache/apt/archives" | cut -f1) MB"
failed=()
# Go on after a failure: the next steps still say what they measure.
[[ $status -eq 0 ]] || { echo "bare-debian: make test failed ($status); see $LOG.make-test" >&2; failed+=("make test"); }

step "make run (own network namespace: nothing on the standard ports)"
set +e
isolated sh -c "cd $SRC && python3 bench/first_run.py" 2>&1 | tee "$LOG.make-run" | grep -v '^  |'
status=${PIPESTATUS[0]}
set -e
took "make run, break, repair, stop"
[[ $status -eq 0 ]] || { echo "bare-debian: make run failed; see $LOG.make-run" >&2; failed+=("make run"); }

if [[ ${ISOLATED_TEST:-0} == 1 ]]; then
    step "make test again, in its own network namespace"
    set +e
    isolated sh -c "cd $SRC && make test" 2>&1 | tee "$LOG.make-test-isolated" | grep -E '^(FAILED|ERROR) |passed|failed'
    status=${PIPESTATUS[0]}
    set -e
    took "make test (isolated)"
    [[ $status -eq 0 ]] || { echo "bare-debian: isolated make test failed" >&2; failed+=("isolated make test"); }
fi
echo
if ((${#failed[@]})); then echo "bare-debian: FAILED: ${failed[*]}" >&2; exit 1; fi
echo "bare-debian: all steps passed"
