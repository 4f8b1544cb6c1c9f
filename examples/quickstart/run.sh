#!/usr/bin/env bash
# Quickstart: 3 local hosts (network namespaces running real sshd), the simulated-Kubernetes cluster image
# built from examples/images/simulated-k8s, `sealer run` of it on 2 masters + 1 node (every host running a
# real containerd), then `sealer run` of an application image (examples/app-image): a web server container
# whose image the cluster's own registry serves, offline. It ends by fetching the server's page.
#
#   bash examples/quickstart/run.sh        bring it up (as root; installs what it needs from Debian's packages)
#   bash examples/quickstart/run.sh down   tear the hosts down
#
# It ends by writing $QUICKSTART_DIR/env (default /tmp/sealer-quickstart/env): `source` it in any shell to
# use the cluster (`sealer plan`, `quickstart_kubectl get pods -A`). The hosts belong to a keeper process
# that lives until `down`, so no later testbed user (a `cargo test`, another wrapper) tears them down.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${QUICKSTART_DIR:-/tmp/sealer-quickstart}
testbed="$repo/tests/testbed/testbed.sh"

# Stops the keeper the hosts belong to, only while that pid is still it (after a reboot it is another).
stop_keeper() {
  local p; p=$(cat "$work/keeper" 2>/dev/null) || return 0
  if [ "$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)" = "sleep infinity " ]; then kill "$p" 2>/dev/null || true; fi
}

if [ "${1:-up}" = down ]; then
  if [ -f "$work/testbed" ]; then "$testbed" down "$(cat "$work/testbed")"; fi
  stop_keeper
  rm -rf "$work"
  echo "quickstart hosts removed"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "the quickstart creates network namespaces: run it as root" >&2; exit 1; }
if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/docker-registry ] || [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ] \
  || [ ! -x /usr/bin/containerd ] || ! command -v runc >/dev/null || [ ! -x /bin/busybox ] || [ ! -x /usr/bin/skopeo ] \
  || ! command -v curl >/dev/null || ! command -v nft >/dev/null \
  || ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  apt-get update -q >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server docker-registry python3-yaml etcd-server etcd-client \
    containerd runc busybox-static skopeo curl nftables iproute2 util-linux >/dev/null
fi
# A run again starts afresh: the hosts of the last run go, and so does the state that recorded them.
[ -f "$work/testbed" ] && "$testbed" down "$(cat "$work/testbed")" || true
stop_keeper
rm -rf "$work"
mkdir -p "$work"
target=${CARGO_TARGET_DIR:-$repo/target}
# Relative to where the script was started, as cargo takes it; the rest runs elsewhere.
case $target in /*) ;; *) target="$PWD/$target" ;; esac
echo "Building sealer (release, into $target; the first build takes about 5 minutes on 2 cores)..."
cargo build --release -q -p sealer-cli --manifest-path "$repo/Cargo.toml"
sealer="$target/release/sealer"
export SEALER_HOME="$work/home"

# The hosts belong to a keeper that lives until `down` (not to this shell or whatever wraps it: `sudo`,
# `script`), so they outlive the script and no other testbed user's clean-up takes them.
setsid sleep infinity </dev/null >/dev/null 2>&1 &
echo $! > "$work/keeper"
echo "Starting 3 hosts (network namespaces with sshd)..."
k=$(TESTBED_OWNER=$(cat "$work/keeper") "$testbed" up 3)
echo "$k" > "$work/testbed"
cd "$work"
"$sealer" build -t sim/kubernetes:v1.29.14 "$repo/examples/images/simulated-k8s"

# 1. The cluster, as every sealer guide starts (the Clusterfile it means: .sealer/quickstart/Clusterfile).
"$sealer" run sim/kubernetes:v1.29.14 -m "10.251.$k.11,10.251.$k.12" -n "10.251.$k.13" \
  --pk "/tmp/sealer-testbed/$k/id_ed25519" --cluster-name quickstart --auto-approve
"$sealer" plan -f .sealer/quickstart/Clusterfile --detailed-exitcode

# 2. An application image (examples/app-image). Its container image (busybox's httpd and a page, built from
#    Debian's busybox-static) comes from a local registry standing in for Docker Hub, through a build
#    mirror; that registry is stopped before the install: on the cluster the image is served by the
#    cluster's own registry, and the hosts have no route beyond the cluster's network anyway.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/hub/layer"
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/hub/data" "$port" \
  > "$work/hub/config.yml"
/usr/bin/docker-registry serve "$work/hub/config.yml" >/dev/null 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
python3 "$repo/tests/testbed/busybox-image.py" --page "Hello from sealer's quickstart: this page is served by a busybox httpd container on your cluster" \
  "127.0.0.1:$port/library/hello-web:1.0"
"$sealer" build -t hello-web-app:1.0 --registry-mirror "docker.io=http://127.0.0.1:$port" "$repo/examples/app-image"
kill $hub
"$sealer" run hello-web-app:1.0 --auto-approve

kubectl="/var/lib/sealer/quickstart/rootfs/bin/kubectl"
# The image's real kubectl, with the admin kubeconfig kubeadm wrote on that master (the hosts share this
# machine's $HOME, so no ~/.kube/config is theirs).
admin="KUBECONFIG=/etc/kubernetes/admin.conf"
for _ in $(seq 60); do
  [ "$("$testbed" exec "$k" 1 env "$admin" "$kubectl" get pods | grep -c Running)" = 1 ] && break
  sleep 1
done
echo
echo "The (simulated) cluster, as its first master sees it:"
"$testbed" exec "$k" 1 env "$admin" "$kubectl" get nodes
"$testbed" exec "$k" 1 env "$admin" "$kubectl" get pods -o wide
# The page the web server container serves, fetched from this machine (the node's port 8080).
node_ip=$("$testbed" exec "$k" 1 env "$admin" "$kubectl" get pods -o json \
  | python3 -c 'import json, sys; print([p["status"]["hostIP"] for p in json.load(sys.stdin)["items"] if p["metadata"]["name"].startswith("hello-web")][0])')
echo
echo "curl http://$node_ip:8080/"
curl -fsS --max-time 10 "http://$node_ip:8080/"
echo
{
  echo "# The quickstart's cluster: source this file in any shell."
  printf 'export SEALER_HOME=%q\n' "$work/home"
  printf 'export SEALER_STATE=%q\n' "$work/.sealer/state.db"
  printf 'export PATH=%q:"$PATH"\n' "$target/release"
  echo "# kubectl on the first master (the hosts share this machine's files: its own kubectl would not reach the cluster)."
  printf 'quickstart_kubectl() { bash %q exec %q 1 env %q %q "$@"; }\n' "$testbed" "$k" "$admin" "$kubectl"
} > "$work/env"
echo
echo "State: $work/.sealer/state.db   Logs: $work/.sealer/logs   Tear down: bash examples/quickstart/run.sh down"
echo "Use the cluster from any shell:"
printf '  source %q\n' "$work/env"
printf '  sealer plan -f %q\n' "$work/.sealer/quickstart/Clusterfile"
echo "  quickstart_kubectl get pods -A"
