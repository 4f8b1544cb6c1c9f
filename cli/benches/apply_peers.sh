#!/usr/bin/env bash
# Apply benchmark, side by side in one run on the same 8 namespace hosts (tests/testbed/testbed.sh):
#   A: set the hostname, copy a 50 MB tree, run 3 shell steps, on every host
#   B: 20 small shell steps on every host
# sealer (`apply --target` the step plugins, which pulls in host, hostname and image), Terraform 1.11
# (`terraform_data` with `file` and `remote-exec` provisioners) and Ansible (ansible-core), all with a
# parallelism of 10. Also: sealer's no-op re-apply, and the bytes the workstation sent (TX of the bridge).
# Needs root, openssh-server, terraform on PATH and ansible-playbook (ANSIBLE=/path/to/ansible-playbook).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
sealer=${SEALER:-$repo/target/release/sealer}
ansible=${ANSIBLE:-$(command -v ansible-playbook || echo /tmp/ansible-venv/bin/ansible-playbook)}
testbed="$repo/tests/testbed/testbed.sh"
work=$(mktemp -d /tmp/sealer-apply-bench.XXXX)
cargo build --release -q -p sealer-cli -p sealer-relay --manifest-path "$repo/Cargo.toml"

k=$(TESTBED_OWNER=$$ "$testbed" up 8)
trap '"$testbed" down "$k"; rm -rf "$work"' EXIT
key=/tmp/sealer-testbed/$k/id_ed25519
ips=(); for i in $(seq 1 8); do ips+=("10.251.$k.$((10 + i))"); done
tx() { cat "/sys/class/net/sbr$k/statistics/tx_bytes"; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

# The 50 MB payload, as a cluster image for sealer and as a directory for the others.
mkdir -p "$work/ctx/payload"
head -c $((50 * 1024 * 1024)) /dev/urandom > "$work/ctx/payload/blob.bin"
printf 'FROM scratch\nCOPY payload payload\n' > "$work/ctx/Kubefile"
mkdir -p "$work/small"; printf 'FROM scratch\nCOPY Kubefile etc/\n' > "$work/small/Kubefile"
export SEALER_HOME=$work/home
"$sealer" build -t bench/payload:1 "$work/ctx" >/dev/null
"$sealer" build -t bench/small:1 "$work/small" >/dev/null

step_cmd() { echo "echo step-$1 >> /var/lib/bench-$2/steps"; }

clusterfile() { # $1 image, $2 number of steps, $3 name
  local hosts; hosts=$(IFS=,; echo "${ips[*]}")
  printf 'apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata: {name: %s}\nspec:\n  image: %s\n  ssh: {pk: %s}\n  hosts:\n    - {ips: [%s], roles: [master]}\n' "$3" "$1" "$key" "$hosts"
  printf -- '---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata: {name: names}\nspec:\n  type: HOSTNAME\n  data: |\n'
  for i in "${!ips[@]}"; do printf '    %s bench-%s\n' "${ips[$i]}" "$i"; done
  for s in $(seq 1 "$2"); do
    printf -- '---\napiVersion: sealer.aliyun.com/v1alpha1\nkind: Plugin\nmetadata: {name: s%s}\nspec:\n  type: SHELL\n  action: PreInstall\n  data: mkdir -p /var/lib/bench-%s && %s\n' "$s" "$3" "$(step_cmd "$s" "$3")"
  done
}

sealer_run() { # $1 image, $2 steps, $3 name -> prints seconds
  local dir="$work/sealer-$3"; mkdir -p "$dir"; clusterfile "$1" "$2" "$3" > "$dir/Clusterfile"
  local targets=(); for ip in "${ips[@]}"; do for s in $(seq 1 "$2"); do targets+=(--target "plugin.s$s.PreInstall.$ip"); done; done
  printf '%s\n' "${targets[@]}" > "$dir/targets"
  local t0; t0=$(now)
  (cd "$dir" && "$sealer" apply --auto-approve --parallelism 10 "${targets[@]}" >"$dir/out.log" 2>&1) \
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

echo "8 hosts, parallelism 10, $(nproc) cores; seconds (lower is better)"
b0=$(tx); a_sealer=$(sealer_run bench/payload:1 3 a); b1=$(tx)
mapfile -t again < "$work/sealer-a/targets"
a_noop_t0=$(now); (cd "$work/sealer-a" && "$sealer" apply --auto-approve "${again[@]}" > noop.log 2>&1); a_noop=$(secs "$a_noop_t0" "$(now)"); b2=$(tx)
a_tf=$(terraform_run "$work/ctx/payload" 3 a)
a_an=$(ansible_run "$work/ctx/payload" 3 a)
b_sealer=$(sealer_run bench/small:1 20 b)
b_tf=$(terraform_run "" 20 b)
b_an=$(ansible_run "" 20 b)
printf '%-44s %8s %10s %8s\n' workload sealer terraform ansible
printf '%-44s %8.1f %10.1f %8.1f\n' "A: hostname + 50 MB copy + 3 steps" "$a_sealer" "$a_tf" "$a_an"
printf '%-44s %8.1f %10.1f %8.1f\n' "B: 20 small steps" "$b_sealer" "$b_tf" "$b_an"
printf 'sealer no-op re-apply of A (refresh included): %.2f s\n' "$a_noop"
printf 'bytes sent by the workstation: first apply of A %s MB, re-apply of A %s KB\n' \
  "$(( (b1 - b0) / 1048576 ))" "$(( (b2 - b1) / 1024 ))"
# Every tool must have done the work on every host.
for i in 1 8; do
  "$testbed" exec "$k" "$i" sh -c 'wc -l < /var/lib/bench-a/steps; wc -l < /var/lib/bench-tfa/steps; wc -l < /var/lib/bench-ana/steps; ls -la /var/lib/sealer/a/rootfs/payload/blob.bin /var/lib/bench-tfa/payload/blob.bin /var/lib/bench-ana/payload/blob.bin' >/dev/null \
    || { echo "host $i is missing work" >&2; exit 1; }
done
