#!/bin/sh
# Run by sealer on every host after the image's files arrived (cd rootfs/scripts; sh init.sh), before
# kubeadm: starts the container runtime, as sealer's images do. The runtime is the host's own Debian
# containerd and runc (packages containerd and runc), not a copy in the image: see ../README.md. It runs
# with the image's configuration (../etc/containerd.toml: a root, state and socket of its own). Idempotent:
# a runtime that answers is left as it is.
set -eu
rootfs=$(cd "$(dirname "$0")/.." && pwd)
conf=$rootfs/etc/containerd.toml
state=$(sed -n 's/^state = "\(.*\)"$/\1/p' "$conf")
sock=$(sed -n 's/^ *address = "\(.*\)"$/\1/p' "$conf" | head -n 1)
for tool in containerd containerd-shim-runc-v2 ctr runc; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "init.sh: $tool not found: this image runs Debian's containerd and runc (apt-get install containerd runc)" >&2
    exit 1
  }
done
# Whether the runtime answers. ctr waits 10 s for a socket that is not there (its dial retries until a
# default timeout): the socket is looked for first, and a connection gets 2 s.
answers() { [ -S "$sock" ] && ctr --connect-timeout 2s --address "$sock" version >/dev/null 2>&1; }
if answers; then
  exit 0
fi
# The containerd this script started, still running (slow to answer, or starting): waited for, never
# started twice.
started() {
  p=$(cat "$state/sealer-containerd.pid" 2>/dev/null) && [ -n "$p" ] &&
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(command -v containerd)" ]
}
if ! started; then
  mkdir -p /var/log/sim-k8s "$state"
  # Detached from the caller's session and output, so the ssh channel does not wait for it.
  setsid containerd --config "$conf" >>/var/log/sim-k8s/containerd.log 2>&1 </dev/null &
  echo $! > "$state/sealer-containerd.pid"
fi
i=0
until answers; do
  i=$((i + 1))
  if [ "$i" -gt 100 ]; then
    echo "init.sh: containerd did not answer on $sock within 10 s:" >&2
    tail -n 5 /var/log/sim-k8s/containerd.log >&2
    exit 1
  fi
  sleep 0.1
done
