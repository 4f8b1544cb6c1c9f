#!/usr/bin/env bash
# Quickstart: 3 local hosts (network namespaces running real sshd), the simulated-Kubernetes cluster image
# built from examples/images/simulated-k8s, and `sealer apply` of a 2-master + 1-node Clusterfile.
#
#   bash examples/quickstart/run.sh        bring it up (as root; installs openssh-server if missing)
#   bash examples/quickstart/run.sh down   tear the hosts down
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${QUICKSTART_DIR:-/tmp/sealer-quickstart}
testbed="$repo/tests/testbed/testbed.sh"

if [ "${1:-up}" = down ]; then
  [ -f "$work/testbed" ] && "$testbed" down "$(cat "$work/testbed")"
  rm -rf "$work"
  echo "quickstart hosts removed"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "the quickstart creates network namespaces: run it as root" >&2; exit 1; }
if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/docker-registry ] || [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ] \
  || ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  apt-get update -q >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server docker-registry python3-yaml etcd-server etcd-client \
    iproute2 util-linux >/dev/null
fi
[ -f "$work/testbed" ] && "$testbed" down "$(cat "$work/testbed")" || true
mkdir -p "$work"
cargo build --release -q -p sealer-cli --manifest-path "$repo/Cargo.toml"
sealer="$repo/target/release/sealer"
export SEALER_HOME="$work/home"

# Owned by this shell's parent, so the hosts outlive the script until `down`.
k=$(TESTBED_OWNER=$PPID "$testbed" up 3)
echo "$k" > "$work/testbed"
"$sealer" build -t sim/kubernetes:v1.22.15 "$repo/examples/images/simulated-k8s"
cat > "$work/Clusterfile" <<YAML
apiVersion: sealer.cloud/v2
kind: Cluster
metadata:
  name: quickstart
spec:
  image: sim/kubernetes:v1.22.15
  ssh:
    pk: /tmp/sealer-testbed/$k/id_ed25519
  hosts:
    - ips: [10.251.$k.11, 10.251.$k.12]
      roles: [master]
    - ips: [10.251.$k.13]
      roles: [node]
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Plugin
metadata:
  name: hostnames
spec:
  type: HOSTNAME
  action: PreInit
  data: |
    10.251.$k.11 master-0
    10.251.$k.12 master-1
    10.251.$k.13 node-0
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Plugin
metadata:
  name: labels
spec:
  type: LABEL
  action: PostInstall
  data: 10.251.$k.13 disk=ssd
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Plugin
metadata:
  name: ready
spec:
  type: CLUSTERCHECK
  action: PreGuest
YAML
cd "$work"
"$sealer" apply -f Clusterfile --auto-approve
"$sealer" plan -f Clusterfile --detailed-exitcode
echo
echo "The (simulated) cluster, as its first master sees it:"
"$testbed" exec "$k" 1 /var/lib/sealer/quickstart/rootfs/bin/kubectl get nodes
echo
echo "State: $work/.sealer/state.db   Logs: $work/.sealer/logs   Tear down: bash examples/quickstart/run.sh down"
