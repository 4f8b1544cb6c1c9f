#!/bin/sh
# Run by sealer on every host before the image's files go (cd rootfs/scripts; sh clean.sh): stops what
# init.sh started and removes what it made, so the host is as it was found. Idempotent.
set -u
sock=/run/containerd/containerd.sock
# Only a runtime init.sh started is stopped: a containerd the host ran before is the host's own.
pid=$(cat /run/containerd/sealer-containerd.pid 2>/dev/null || true)
[ -n "$pid" ] || exit 0
if ctr --address "$sock" version >/dev/null 2>&1; then
  # Containers left by a kubelet that was not reset: their tasks, shims and snapshots go first.
  for id in $(ctr --address "$sock" -n k8s.io containers ls -q); do
    ctr --address "$sock" -n k8s.io tasks delete --force "$id" >/dev/null 2>&1 || true
    ctr --address "$sock" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true
  done
fi
if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(command -v containerd)" ]; then
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
# A shim outlives containerd by design; with no container left it has nothing to keep.
for shim in $(pgrep -f '^/usr/bin/containerd-shim-runc-v2 -namespace k8s.io' || true); do kill -9 "$shim" 2>/dev/null || true; done
rm -rf /var/lib/containerd /run/containerd /var/log/sim-k8s/containerd.log
# The cgroups runc made for the containers (namespace `k8s.io`), deepest first.
for h in /sys/fs/cgroup/*; do
  [ -d "$h/k8s.io" ] && find "$h/k8s.io" -depth -type d -exec rmdir {} + 2>/dev/null
done
exit 0
