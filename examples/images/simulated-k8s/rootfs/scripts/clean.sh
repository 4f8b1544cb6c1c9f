#!/bin/sh
# Run by sealer on every host before the image's files go (cd rootfs/scripts; sh clean.sh): stops what
# init.sh started and removes what it made, so the host is as it was found; exits non-zero, saying what,
# when something stays. Idempotent.
set -u
rootfs=$(cd "$(dirname "$0")/.." && pwd)
conf=$rootfs/etc/containerd.toml
root=$(sed -n 's/^root = "\(.*\)"$/\1/p' "$conf")
state=$(sed -n 's/^state = "\(.*\)"$/\1/p' "$conf")
sock=$(sed -n 's/^ *address = "\(.*\)"$/\1/p' "$conf" | head -n 1)
pid=$(cat "$state/sealer-containerd.pid" 2>/dev/null || true)
[ -n "$pid" ] || exit 0
ours() { [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(command -v containerd)" ]; }
# A runtime that died is started again first: only containerd stops its containers cleanly (their tasks,
# shims, mounts and cgroups); killing the shims would orphan the containers instead.
# ctr waits 10 s for a socket that is not there: the socket is looked for first (see init.sh).
if ! { [ -S "$sock" ] && ctr --connect-timeout 2s --address "$sock" version >/dev/null 2>&1; }; then
  sh "$(dirname "$0")/init.sh" || { echo "clean.sh: containerd cannot be started to stop its containers" >&2; exit 1; }
  pid=$(cat "$state/sealer-containerd.pid")
fi
for id in $(ctr --address "$sock" -n k8s.io containers ls -q); do
  ctr --address "$sock" -n k8s.io tasks delete --force "$id" >/dev/null 2>&1 || true
  ctr --address "$sock" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
done
left=$(ctr --address "$sock" -n k8s.io containers ls -q)
[ -z "$left" ] || { echo "clean.sh: containers that would not go: $left" >&2; exit 1; }
if ours; then
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
if grep -q -e " $root" -e " $state" /proc/mounts; then
  echo "clean.sh: still mounted: $(grep -e " $root" -e " $state" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')" >&2
  exit 1
fi
rm -rf "$root" "$state" /var/log/sim-k8s/containerd.log
# The cgroups runc made for the containers (namespace `k8s.io`), deepest first.
for h in /sys/fs/cgroup/*; do
  [ -d "$h/k8s.io" ] || continue
  find "$h/k8s.io" -depth -type d -exec rmdir {} + 2>/dev/null
  [ ! -d "$h/k8s.io" ] || { echo "clean.sh: cgroup $h/k8s.io is still in use" >&2; exit 1; }
done
exit 0
