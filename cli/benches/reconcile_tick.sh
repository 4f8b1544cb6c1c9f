#!/usr/bin/env bash
# Reconcile benchmark, side by side in one run on the same namespace hosts (tests/testbed/testbed.sh):
# a cluster of N hosts (1 master, N-1 nodes, a HOSTNAME and a LABEL plugin, the simulated-Kubernetes
# image) is applied, then, with nothing drifted:
#   - a fresh `sealer plan --detailed-exitcode` (refresh of every host: one SSH handshake each),
#   - `sealer reconcile --interval 1s` ticks (connections kept open between ticks: the first tick pays
#     the handshakes, the next ones only one command per host),
#   - N parallel OpenSSH `ssh HOST true` (the handshake floor of this testbed: every sshd shares the cores).
#   bash cli/benches/reconcile_tick.sh [--hosts N]      (root, openssh-server; default N=16)
set -euo pipefail
hosts=16
[ "${1:-}" = --hosts ] && hosts=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
sealer=${SEALER:-$repo/target/release/sealer}
testbed="$repo/tests/testbed/testbed.sh"
work=$(mktemp -d /tmp/sealer-reconcile-bench.XXXX)
cargo build --release -q -p sealer-cli --manifest-path "$repo/Cargo.toml"

k=$(TESTBED_OWNER=$$ "$testbed" up "$hosts")
trap '"$testbed" down "$k"; rm -rf "$work"' EXIT
key=/tmp/sealer-testbed/$k/id_ed25519
mapfile -t ips < "/tmp/sealer-testbed/$k/ips"
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
export SEALER_HOME=$work/home
cd "$work"
"$sealer" build -t sim/kubernetes:v1.29.14 "$repo/examples/images/simulated-k8s" >/dev/null
nodes=$(IFS=,; echo "${ips[*]:1}")
{
  printf 'apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata: {name: bench}\nspec:\n  image: sim/kubernetes:v1.29.14\n'
  printf '  ssh: {pk: %s}\n  hosts:\n    - {ips: [%s], roles: [master]}\n    - {ips: [%s], roles: [node]}\n' "$key" "${ips[0]}" "$nodes"
  printf -- '---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata: {name: names}\nspec:\n  type: HOSTNAME\n  action: PreInit\n  data: |\n'
  for i in "${!ips[@]}"; do printf '    %s bench-%s\n' "${ips[$i]}" "$i"; done
  printf -- '---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata: {name: labels}\nspec:\n  type: LABEL\n  action: PostInstall\n  data: %s tier=web\n' "${ips[1]}"
} > Clusterfile
t0=$(now); "$sealer" apply --auto-approve --no-progress --parallelism 16 >/dev/null; t1=$(now)
echo "first apply of $hosts hosts: $(secs "$t0" "$t1") s"

plans=()
for _ in 1 2 3; do
  t0=$(now); "$sealer" plan --detailed-exitcode >/dev/null; t1=$(now); plans+=("$(secs "$t0" "$t1")")
done
sshs=()
for _ in 1 2 3; do
  t0=$(now)
  for ip in "${ips[@]}"; do ssh -q -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "root@$ip" true & done
  wait; t1=$(now); sshs+=("$(secs "$t0" "$t1")")
done
"$sealer" reconcile --interval 1s --json > ticks.jsonl 2>/dev/null &
rec=$!
for _ in $(seq 120); do
  n=$(grep -c '"event":"reconcile"' ticks.jsonl 2>/dev/null) || true
  [ "${n:-0}" -ge 6 ] && break
  sleep 1
done
kill -TERM "$rec"; wait "$rec" || true
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
mapfile -t ticks < <(python3 -c 'import json,sys
for l in open("ticks.jsonl"):
    e = json.loads(l)
    if e.get("event") == "reconcile": print(e["seconds"], e["result"])')
first=${ticks[0]%% *}
rest=(); for t in "${ticks[@]:1}"; do rest+=("${t%% *}"); done
plan=$(median "${plans[@]}"); ssh=$(median "${sshs[@]}"); tick=$(median "${rest[@]}")
echo
echo "| $hosts hosts, nothing drifted | seconds (median of 3 / of the later ticks) | vs $hosts parallel ssh |"
echo "|---|---:|---:|"
echo "| $hosts parallel OpenSSH \`ssh HOST true\` | $ssh | 1.00 |"
echo "| \`sealer plan\` with refresh (fresh connections) | $plan | $(echo "scale=2; $plan / $ssh" | bc) |"
echo "| \`sealer reconcile\` first tick (connects) | $first | $(echo "scale=2; $first / $ssh" | bc) |"
echo "| \`sealer reconcile\` later ticks (connections kept) | $tick | $(echo "scale=2; $tick / $ssh" | bc) |"
echo "tick results: ${ticks[*]}"
