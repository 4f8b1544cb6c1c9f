#!/usr/bin/env bash
# Apply benchmark, side by side in one run on the same namespace hosts (tests/testbed/testbed.sh):
#   A: set the hostname, copy an image of M MB, run 3 shell steps, on every host
#   B: 20 small shell steps on every host
# sealer (`apply --target` the step plugins, which pulls in host, hostname and image; the image is relayed
# between hosts), Terraform 1.11 (`terraform_data` with `file` and `remote-exec` provisioners) and Ansible
# (ansible-core, up to 16 hosts: beyond, it takes longer than the rest of the run), all with a
# parallelism of 10. Also: sealer's no-op re-apply and `plan` with refresh beside N parallel OpenSSH
# `ssh HOST true`, and the bytes the workstation sent (TX of the testbed bridge) for each tool's A.
#   bash cli/benches/apply_peers.sh [--hosts N[,N...]] [--image-mb M]     (default 8 hosts, 50 MB)
# With several host counts (a cost curve, e.g. --hosts 8,64,128,256) each gets its own testbed and run, the
# image shrinks to keep every host's copies in memory (at most 1280/N MB), Terraform runs where its A stays
# under 5 minutes (measured: up to 256 hosts), and a last table sums the curve up. Per N: A and B, the
# bytes the workstation sent, sealer's no-op re-apply and plan with refresh, sealer's peak RSS, N
# parallel `ssh HOST true`, and the processes each tool's B started per host (from /proc/stat, the
# tool's preparation included: its Clusterfile or `terraform init`). And B's floor: about the least a tool
# can spend on these hosts for B's work alone, measured with sealer's own SSH client (`sealer exec`, 10 hosts
# at a time): one connection a host running the hostname and the 20 steps' lines as one command, with no
# plan, no state, no image and no record of each step.
# Needs root, openssh-server, terraform on PATH and ansible-playbook (ANSIBLE=/path/to/ansible-playbook).
set -euo pipefail
host_counts=8 mb_max=50
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) host_counts=${2:?}; shift 2 ;;
    --image-mb) mb_max=${2:?}; shift 2 ;;
    *) echo "usage: apply_peers.sh [--hosts N[,N...]] [--image-mb M]" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
sealer=${SEALER:-$repo/target/release/sealer}
ansible=${ANSIBLE:-$(command -v ansible-playbook || echo /tmp/ansible-venv/bin/ansible-playbook)}
testbed="$repo/tests/testbed/testbed.sh"
work=$(mktemp -d /tmp/sealer-apply-bench.XXXX)
cargo build --release -q -p sealer-cli --manifest-path "$repo/Cargo.toml"

k=""
trap '[ -z "$k" ] || "$testbed" down "$k"; rm -rf "$work"' EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
# Rounded, not truncated: 0.2578 is 0.26.
ratio() { printf "%.2f" "$(echo "scale=4; $1 / $2" | bc)"; }
# CPU time the whole machine spent (jiffies of 1/100 s): workstation and hosts share these cores here.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
# Processes the whole machine started so far (forks): each costs the host that starts it.
forks() { awk '/^processes /{print $2}' /proc/stat; }
tx() { cat "/sys/class/net/sbr$k/statistics/tx_bytes"; }

# Every tool runs the same line per step. A sealer plugin is a resource of its own that may run in any
# order, so it makes its directory itself; the others' steps do the same work.
step_cmd() { echo "mkdir -p /var/lib/bench-$2 && echo step-$1 >> /var/lib/bench-$2/steps"; }

clusterfile() { # $1 image, $2 number of steps, $3 name
  local hosts; hosts=$(IFS=,; echo "${ips[*]}")
  printf 'apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata: {name: %s}\nspec:\n  image: %s\n  ssh: {pk: %s}\n  hosts:\n    - {ips: [%s], roles: [master]}\n' "$3" "$1" "$key" "$hosts"
  printf -- '---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata: {name: names}\nspec:\n  type: HOSTNAME\n  data: |\n'
  for i in "${!ips[@]}"; do printf '    %s bench-%s\n' "${ips[$i]}" "$i"; done
  for s in $(seq 1 "$2"); do
    printf -- '---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata: {name: s%s}\nspec:\n  type: SHELL\n  action: PreInstall\n  data: %s\n' "$s" "$(step_cmd "$s" "$3")"
  done
}

# sealer under /usr/bin/time: the run's peak RSS (KB) goes to $dir/rss.
sealer_timed() { # $1 dir, $2 log, sealer args...
  local dir=$1 log=$2; shift 2
  (cd "$dir" && /usr/bin/time -o rss -f %M "$sealer" "$@" >"$log" 2>&1)
}

sealer_run() { # $1 image, $2 steps, $3 name -> prints seconds
  local dir="$work/sealer-$3"; mkdir -p "$dir"; clusterfile "$1" "$2" "$3" > "$dir/Clusterfile"
  local targets=(); for ip in "${ips[@]}"; do for s in $(seq 1 "$2"); do targets+=(--target "plugin.s$s.PreInstall.$ip"); done; done
  printf '%s\n' "${targets[@]}" > "$dir/targets"
  local t0; t0=$(now)
  sealer_timed "$dir" out.log apply --auto-approve --parallelism 10 "${targets[@]}" \
    || { tail -20 "$dir/out.log" >&2; exit 1; }
  secs "$t0" "$(now)"
}

terraform_run() { # $1 payload dir or "", $2 steps, $3 name
  local dir="$work/tf-$3"; mkdir -p "$dir"
  local hosts; hosts=$(printf '"%s",' "${ips[@]}")
  local inline; inline=$(for s in $(seq 1 "$2"); do printf '"%s",' "$(step_cmd "$s" "tf$3")"; done)
  local copy=""
  [ -n "$1" ] && copy="provisioner \"file\" {
    source      = \"$1/\"
    destination = \"/var/lib/bench-tf$3/payload\"
  }"
  cat > "$dir/main.tf" <<TF
locals { hosts = [${hosts%,}] }
resource "terraform_data" "host" {
  for_each = { for i, ip in local.hosts : ip => i }
  connection {
    type        = "ssh"
    host        = each.key
    user        = "root"
    private_key = file("$key")
  }
  provisioner "remote-exec" { inline = ["hostname tf-\${each.value}", "mkdir -p /var/lib/bench-tf$3/payload"] }
  $copy
  provisioner "remote-exec" { inline = [${inline%,}] }
}
TF
  (cd "$dir" && terraform init -input=false >/dev/null 2>&1)
  local t0; t0=$(now)
  (cd "$dir" && terraform apply -auto-approve -input=false -parallelism=10 >"$dir/out.log" 2>&1) \
    || { tail -20 "$dir/out.log" >&2; exit 1; }
  secs "$t0" "$(now)"
}

ansible_run() { # $1 payload dir or "", $2 steps, $3 name
  local dir="$work/an-$3"; mkdir -p "$dir"
  printf '[hosts:vars]\nansible_python_interpreter=/usr/bin/python3\n[hosts]\n' > "$dir/inventory"
  for i in "${!ips[@]}"; do printf '%s n=%s\n' "${ips[$i]}" "$i" >> "$dir/inventory"; done
  {
    printf -- '- hosts: hosts\n  gather_facts: false\n  tasks:\n'
    printf '    - command: hostname an-{{ n }}\n'
    printf '    - file: {path: /var/lib/bench-an%s, state: directory}\n' "$3"
    [ -n "$1" ] && printf '    - copy: {src: %s/, dest: /var/lib/bench-an%s/payload/}\n' "$1" "$3"
    for s in $(seq 1 "$2"); do printf '    - shell: %s\n' "$(step_cmd "$s" "an$3")"; done
  } > "$dir/play.yml"
  local t0; t0=$(now)
  (cd "$dir" && LC_ALL=C.UTF-8 ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORKS=10 "$ansible" -i inventory play.yml \
     --private-key "$key" -u root >"$dir/out.log" 2>&1) || { tail -20 "$dir/out.log" >&2; exit 1; }
  secs "$t0" "$(now)"
}

floor_run() { # B's floor (see the top): the 20 steps' lines in one command a host -> seconds
  local lines; lines=$(for s in $(seq 1 20); do printf '%s\n' "$(step_cmd "$s" floor)"; done)
  local t0; t0=$(now)
  (cd "$work/sealer-b" && "$sealer" exec --parallelism 10 "hostname bench-floor
$lines" >floor.log 2>&1) || { tail -20 "$work/sealer-b/floor.log" >&2; exit 1; }
  secs "$t0" "$(now)"
}

ssh_all() { # N parallel `ssh HOST true` -> seconds
  local t0; t0=$(now)
  for ip in "${ips[@]}"; do ssh -q -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "root@$ip" true & done
  wait; secs "$t0" "$(now)"
}

row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$( [ "$3" = - ] && echo - || ratio "$2" "$3")"; }
curve=()

bench() { # $1 hosts, $2 image MB: one side-by-side run on a testbed of its own
  local hosts=$1 mb=$2
  rm -rf "${work:?}"/*
  # The payload, as a cluster image for sealer and as a directory for the others.
  mkdir -p "$work/ctx/payload" "$work/small"
  head -c $((mb * 1024 * 1024)) /dev/urandom > "$work/ctx/payload/blob.bin"
  printf 'FROM scratch\nCOPY payload payload\n' > "$work/ctx/Kubefile"
  printf 'FROM scratch\nCOPY Kubefile etc/\n' > "$work/small/Kubefile"
  export SEALER_HOME=$work/home
  "$sealer" build -t bench/payload:1 "$work/ctx" >/dev/null
  "$sealer" build -t bench/small:1 "$work/small" >/dev/null
  k=$(TESTBED_OWNER=$$ "$testbed" up "$hosts")
  key=/tmp/sealer-testbed/$k/id_ed25519
  mapfile -t ips < "/tmp/sealer-testbed/$k/ips"
  local ansible_ok; ansible_ok=$([ "$hosts" -le 16 ] && echo 1 || echo "")
  local terraform_ok; terraform_ok=$([ "$hosts" -le 256 ] && echo 1 || echo "")

  echo
  echo "$hosts hosts, a $mb MB image, parallelism 10, $(nproc) cores; seconds (lower is better)"
  local b0 c0 c1 b1 b2 b3 b4 c2 c3 a_sealer a_rss a_noop a_noop_t0 plan_t0 plan_s ssh_s a_tf=- a_an=- memory
  b0=$(tx); c0=$(busy); a_sealer=$(sealer_run bench/payload:1 3 a); c1=$(busy); b1=$(tx)
  a_rss=$(cat "$work/sealer-a/rss")
  local again; mapfile -t again < "$work/sealer-a/targets"
  a_noop_t0=$(now); sealer_timed "$work/sealer-a" noop.log apply --auto-approve "${again[@]}"; a_noop=$(secs "$a_noop_t0" "$(now)"); b2=$(tx)
  grep -q "No changes" "$work/sealer-a/noop.log" || { cat "$work/sealer-a/noop.log" >&2; exit 1; }
  plan_t0=$(now); (cd "$work/sealer-a" && "$sealer" plan --detailed-exitcode "${again[@]}" > plan.log 2>&1) || { cat "$work/sealer-a/plan.log" >&2; exit 1; }; plan_s=$(secs "$plan_t0" "$(now)")
  ssh_s=$(ssh_all)
  b3=$(tx); c2=$(busy); [ -n "$terraform_ok" ] && a_tf=$(terraform_run "$work/ctx/payload" 3 a); c3=$(busy); b4=$(tx)
  memory=$(df -m --output=used "/tmp/sealer-testbed/$k"/h*/ 2>/dev/null | awk 'NR > 1 {s += $1} END {print s}')
  [ -n "$ansible_ok" ] && a_an=$(ansible_run "$work/ctx/payload" 3 a)
  local b_sealer b_rss b_tf=- b_an=-
  local f0 f1 f2 f3
  f0=$(forks); b_sealer=$(sealer_run bench/small:1 20 b); f1=$(forks); b_rss=$(cat "$work/sealer-b/rss")
  f2=$(forks); [ -n "$terraform_ok" ] && b_tf=$(terraform_run "" 20 b); f3=$(forks)
  [ -n "$ansible_ok" ] && b_an=$(ansible_run "" 20 b)
  local b_floor; b_floor=$(floor_run)
  echo "| workload ($hosts hosts) | sealer | terraform | ansible | sealer / terraform |"
  echo "|---|---|---|---|---|"
  row "A: hostname + $mb MB image + 3 steps" "$a_sealer" "$a_tf" "$a_an"
  row "A: CPU seconds of the whole machine" "$(echo "scale=1; ($c1 - $c0) / 100" | bc)" \
    "$( [ "$a_tf" = - ] && echo - || echo "scale=1; ($c3 - $c2) / 100" | bc)" "-"
  row "B: 20 small steps" "$b_sealer" "$b_tf" "$b_an"
  row "B's floor: one command a host (\`sealer exec\`)" "$b_floor" "$b_tf" "-"
  row "B: processes started per host" "$(( (f1 - f0) / hosts ))" \
    "$( [ "$b_tf" = - ] && echo - || echo $(( (f3 - f2) / hosts )))" "-"
  local image_bytes=$((mb * 1024 * 1024)) sealer_tx=$((b1 - b0)) tf_tx=$((b4 - b3))
  echo
  echo "| bytes the workstation sent for A | MB | × image size | control KB per host beyond one image |"
  echo "|---|---|---|---|"
  printf '| sealer | %s | %s | %s |\n' "$((sealer_tx / 1048576))" "$(ratio "$sealer_tx" "$image_bytes")" "$(( (sealer_tx - image_bytes) / 1024 / hosts ))"
  [ "$a_tf" = - ] || printf '| terraform | %s | %s | - |\n' "$((tf_tx / 1048576))" "$(ratio "$tf_tx" "$image_bytes")"
  printf '| sealer no-op re-apply of A | %s | KB in all |\n' "$(( (b2 - b1) / 1024 ))"
  echo
  echo "| nothing to do, $hosts hosts | seconds | vs $hosts parallel ssh |"
  echo "|---|---|---|"
  printf '| %s parallel OpenSSH `ssh HOST true` | %s | 1.00 |\n' "$hosts" "$ssh_s"
  printf '| sealer no-op re-apply (refresh included) | %s | %s |\n' "$a_noop" "$(ratio "$a_noop" "$ssh_s")"
  printf '| sealer plan with refresh | %s | %s |\n' "$plan_s" "$(ratio "$plan_s" "$ssh_s")"
  grep -h "^copies: " "$work/sealer-a/out.log" || true
  echo "sealer's peak RSS: A $((a_rss / 1024)) MiB, B $((b_rss / 1024)) MiB"
  echo "testbed memory after both A runs: ${memory} MB in the $hosts hosts' tmpfs (upper layers, copies, home)"
  # Every tool must have done the work on every host.
  for i in 1 "$hosts"; do
    local check='wc -l < /var/lib/bench-a/steps; wc -l < /var/lib/bench-floor/steps'
    [ "$a_tf" = - ] || check="$check; wc -l < /var/lib/bench-tfa/steps; cmp /var/lib/sealer/a/rootfs/payload/blob.bin /var/lib/bench-tfa/payload/blob.bin"
    [ -n "$ansible_ok" ] && check="$check; wc -l < /var/lib/bench-ana/steps; cmp /var/lib/sealer/a/rootfs/payload/blob.bin /var/lib/bench-ana/payload/blob.bin"
    "$testbed" exec "$k" "$i" sh -c "$check" >/dev/null || { echo "host $i is missing work" >&2; exit 1; }
    if "$testbed" exec "$k" "$i" sh -c 'pgrep -x sealer-relay' >/dev/null; then
      echo "a relay outlived the apply on host $i" >&2; exit 1
    fi
  done
  curve+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$hosts" "$mb" \
    "$a_sealer" "$a_tf" "$b_sealer" "$b_tf" "$b_floor" "$(ratio "$sealer_tx" "$image_bytes")" "$a_noop" "$plan_s" "$ssh_s" \
    "$(( (a_rss > b_rss ? a_rss : b_rss) / 1024 ))")")
  "$testbed" down "$k"; k=""
}

IFS=, read -r -a counts <<< "$host_counts"
for n in "${counts[@]}"; do
  mb=$(( 1280 / n )); [ "$mb" -le "$mb_max" ] || mb=$mb_max; [ "$mb" -ge 1 ] || mb=1
  bench "$n" "$mb"
done
if [ "${#counts[@]}" -gt 1 ]; then
  echo
  echo "| hosts | image MB | A sealer | A terraform | B sealer | B terraform | B floor | egress × image | no-op | plan | N × ssh | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${curve[@]}"
fi
