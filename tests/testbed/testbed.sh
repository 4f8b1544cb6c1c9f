#!/usr/bin/env bash
# Real test hosts for sealer: one network namespace, UTS namespace (own hostname), mount namespace (an
# overlay over `/`, so its own files) and PID namespace per host, each running a real OpenSSH sshd.
# Never touches the machine's own hostname, /etc or network beyond the bridge it creates.
#
#   testbed.sh up N            create N hosts; prints the testbed id K (hosts are 10.251.K.11 ... 10.251.K.250,
#                              then 10.250.K.11 ..., one link; their addresses, one a line, in DIR/K/ips)
#   testbed.sh down K          tear testbed K down
#   testbed.sh sshd-stop K I   stop sshd on host I (1-based); the host keeps running
#   testbed.sh sshd-start K I  start it again
#   testbed.sh exec K I CMD... run CMD inside host I (its namespaces and root)
#   testbed.sh kill K I        the whole host I goes, as a machine switched off: every process in it is
#                              killed and its link is down (packets to it are lost, nothing answers)
#   testbed.sh clean           tear down testbeds whose owner process is gone
#
# Every host has a cgroup of its own in each of the machine's hierarchies, under the cgroup the caller is
# in (never above it), and a cgroup namespace rooted there with the hierarchies mounted at
# /sys/fs/cgroup: a container runtime inside the host (containerd and runc) sees only the host's cgroups,
# and two hosts' containers of the same name never share one. `down` removes them, deepest first.
#
# Environment: TESTBED_OWNER (pid that owns the testbed; default the caller), TESTBED_ROOT_PASSWORD (root
# password on every host, for password-auth tests), TESTBED_DIR (default /tmp/sealer-testbed).
set -euo pipefail

dir=${TESTBED_DIR:-/tmp/sealer-testbed}
mkdir -p "$dir"

die() { echo "testbed: $*" >&2; exit 1; }

# Hosts 1-240 in 10.251.K.0/24, the next 240 in 10.250.K.0/24: both on the testbed's bridge, and every
# host reaches the other half directly (an on-link route), so a testbed may grow past one /24.
host_ip() { if [ "$2" -le 240 ]; then echo "10.251.$1.$((10 + $2))"; else echo "10.250.$1.$((10 + $2 - 240))"; fi; }

init_pid() { cat "$dir/$1/h$2/pid" 2>/dev/null || true; }

# The host's init and its unshare, of those its pid files name, that are still the host's: in its network
# namespace. The pid of a host that went (killed by `kill`) may be another process's by now (pids wrap at
# 32768 here), another testbed's host included, and must not be signalled.
# Whether every pid of $1 is gone within $2 tries of 20 ms.
gone() {
  local p alive
  for _ in $(seq "$2"); do
    alive=""
    for p in $1; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || return 0
    sleep 0.02
  done
  return 1
}

host_pids() {
  local k=$1 i=$2 net p
  net=$(stat -L -c %i "/run/netns/sb${k}h$i" 2>/dev/null) || return 0
  for p in $(cat "$dir/$k/h$i/unshare.pid" "$dir/$k/h$i/pid" 2>/dev/null); do
    [ "$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null)" = "$net" ] && echo "$p"
  done
  return 0
}

in_host() {
  local k=$1 i=$2; shift 2
  local pid; pid=$(init_pid "$k" "$i")
  [ -n "$pid" ] || die "no host $i in testbed $k"
  # In the host's cgroups and cgroup namespace too, as everything the host runs.
  bash -c 'for cg in $(cat "$0" 2>/dev/null); do echo $$ > "$cg/cgroup.procs" || exit 1; done; exec "$@"' "$dir/$k/h$i.cgroups" \
    nsenter -t "$pid" -C -m -u -n -p -r -w "$@"
}

# The machine's cgroup hierarchies: "MOUNTPOINT TYPE OPTIONS PATH" per line, PATH the caller's own cgroup
# in it (from /proc/self/cgroup; v1 hierarchies are matched by their controllers, cgroup2 by its empty set).
hierarchies() {
  awk '
    FNR == NR { split($0, f, ":"); own[f[2]] = substr($0, length(f[1]) + length(f[2]) + 3); next }
    {
      sep = 0; for (i = 1; i <= NF; i++) if ($i == "-") { sep = i; break }
      type = $(sep + 1); if (type != "cgroup" && type != "cgroup2") next
      n = split($(sep + 3), o, ","); ctl = ""
      for (i = 1; i <= n; i++) if (o[i] != "rw" && o[i] != "ro" && o[i] !~ /^(xattr|nsdelegate|memory_recursiveprot|release_agent=|clone_children|noprefix)/) ctl = ctl (ctl == "" ? "" : ",") o[i]
      if (type == "cgroup2") ctl = ""
      if (!(ctl in own)) next
      root = $4; path = own[ctl]
      if (root != "/" && index(path, root) == 1) path = substr(path, length(root) + 1)
      print $5, type, (ctl == "" ? "-" : ctl), (path == "" ? "/" : path)
    }' /proc/self/cgroup /proc/self/mountinfo
}

# Removes the cgroups listed in FILE (and what runtimes made inside them), deepest first, once the
# processes in them are gone.
remove_cgroups() {
  local list=$1
  [ -f "$list" ] || return 0
  while read -r cg; do
    [ -d "$cg" ] || continue
    for _ in $(seq 100); do
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$cg" ] || break
      sleep 0.05
    done
    [ -d "$cg" ] && echo "testbed: cgroup $cg is still in use" >&2
  done < "$list"
  rm -f "$list"
}

down() {
  local k=$1 base="$dir/$1"
  [ -d "$base" ] || return 0
  for h in "$base"/h*; do
    [ -d "$h" ] || continue
    local i=${h##*/h} pids; pids=$(host_pids "$k" "$i")
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      gone "$pids" 50 || true
    fi
    umount -l "$h" 2>/dev/null || true
    remove_cgroups "$h.cgroups"
  done
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^sb${k}h[0-9]+$" || true); do ip netns del "$ns" || true; done
  ip link del "sbr$k" 2>/dev/null || true
  rm -rf "$base"
}

clean() {
  for base in "$dir"/*; do
    [ -d "$base" ] || continue
    local owner; owner=$(cat "$base/owner" 2>/dev/null || true)
    # A slot without its owner yet is being set up by a concurrent `up` (it writes the file right after
    # taking the slot): left alone, unless it stayed so for a minute (that `up` died).
    if [ -z "$owner" ]; then
      if [ -n "$(find "$base" -maxdepth 0 -mmin +1 2>/dev/null)" ]; then down "$(basename "$base")"; fi
      continue
    fi
    if ! kill -0 "$owner" 2>/dev/null; then down "$(basename "$base")"; fi
  done
}

kill_host() {
  local k=$1 i=$2 pids
  [ -n "$(init_pid "$k" "$i")" ] || die "no host $i in testbed $k"
  pids=$(host_pids "$k" "$i")
  ip link set "vsb${k}h$i" down
  [ -n "$pids" ] || return 0
  # The host's init is its PID namespace's: with it every process of the host goes.
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  gone "$pids" 100 && return 0
  die "host $i of testbed $k did not stop"
}

start_sshd() { in_host "$1" "$2" /usr/sbin/sshd -f /etc/ssh/sealer_testbed_sshd_config; }

# Returns once the listening sshd is gone (a SIGTERM is delivered asynchronously: a connection made right
# after `kill` returned could still be accepted).
stop_sshd() {
  in_host "$1" "$2" sh -c 'p=$(cat /run/sshd.pid 2>/dev/null); [ -n "$p" ] && kill "$p" 2>/dev/null
    i=0; while [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.025; i=$((i + 1)); done
    rm -f /run/sshd.pid'
}

up() {
  local n=$1 owner=${TESTBED_OWNER:-$PPID} k=""
  [ "$n" -le 480 ] || die "at most 480 hosts per testbed"
  clean
  local start=$(( (owner % 200) + 1 ))
  for off in $(seq 0 249); do
    local cand=$(( (start + off) % 250 + 1 ))
    if mkdir "$dir/$cand" 2>/dev/null; then
      # A slot whose bridge or host links are still there (a testbed whose processes outlived its
      # directory: a killed run) is not free.
      if ip link show "sbr$cand" >/dev/null 2>&1 || ip link show "vsb${cand}h1" >/dev/null 2>&1; then
        rmdir "$dir/$cand"; continue
      fi
      k=$cand; break
    fi
  done
  [ -n "$k" ] || die "no free testbed slot"
  local base="$dir/$k"
  # Written whole at once (a concurrent `clean` must never read it half-written, as no owner).
  echo "$owner" > "$base/owner.tmp" && mv "$base/owner.tmp" "$base/owner"
  trap 'down "$k"' ERR
  ssh-keygen -q -t ed25519 -N '' -C "sealer-testbed-$k" -f "$base/id_ed25519"
  ip link add "sbr$k" type bridge
  ip addr add "10.251.$k.1/24" dev "sbr$k"
  if [ "$n" -gt 240 ]; then ip addr add "10.250.$k.1/24" dev "sbr$k"; fi
  ip link set "sbr$k" up
  : > "$base/ips"
  for i in $(seq 1 "$n"); do
    local h="$base/h$i" ip; ip=$(host_ip "$k" "$i")
    local ns="sb${k}h$i"
    mkdir -p "$h"
    mount -t tmpfs -o size=2g tmpfs "$h"
    mkdir -p "$h"/{upper,work,root} "$h/upper/root/.ssh" "$h/upper/etc/ssh"
    chmod 700 "$h/upper/root" "$h/upper/root/.ssh"
    # A fresh host's root account (Debian's skeleton), not the workstation's: its dotfiles (a pyenv
    # init in ~/.bashrc, which bash sources for every ssh command) would cost every connection.
    cp /etc/skel/.bashrc /etc/skel/.profile "$h/upper/root/" 2>/dev/null || true
    cp "$base/id_ed25519.pub" "$h/upper/root/.ssh/authorized_keys"
    chmod 600 "$h/upper/root/.ssh/authorized_keys"
    ssh-keygen -q -t ed25519 -N '' -C "testbed-host-$i" -f "$h/upper/etc/ssh/sealer_testbed_host_key"
    cat > "$h/upper/etc/ssh/sealer_testbed_sshd_config" <<CONF
ListenAddress $ip
Port 22
HostKey /etc/ssh/sealer_testbed_host_key
PidFile /run/sshd.pid
PermitRootLogin yes
PasswordAuthentication yes
PubkeyAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp internal-sftp
CONF
    ip netns add "$ns"
    ip link add "vsb${k}h$i" type veth peer name eth0 netns "$ns"
    ip link set "vsb${k}h$i" master "sbr$k" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    if [ "$n" -gt 240 ]; then
      local other=10.250.$k.0/24; [ "$i" -le 240 ] || other=10.251.$k.0/24
      ip -n "$ns" route add "$other" dev eth0
    fi
    echo "$ip" >> "$base/ips"
    ip -n "$ns" link set lo up
    # The host's own cgroups, before anything runs in it (cpuset's must be given its parent's CPUs and
    # memory nodes, or no process may join it).
    local mounts=""
    : > "$h.cgroups"
    while read -r mp type ctl path; do
      local cg="$mp${path%/}/sealer-tb$k-h$i"
      mkdir -p "$cg"
      echo "$cg" >> "$h.cgroups"
      if [ -f "$cg/cpuset.cpus" ]; then
        cat "$mp${path%/}/cpuset.cpus" > "$cg/cpuset.cpus"
        cat "$mp${path%/}/cpuset.mems" > "$cg/cpuset.mems"
      fi
      # Where the host mounts it: the same place under its /sys/fs/cgroup ("." for a unified hierarchy
      # mounted there itself).
      local sub=${mp#/sys/fs/cgroup}; sub=${sub#/}
      mounts+="${sub:-.} $type $ctl"$'\n'
    done < <(hierarchies)
    local password=${TESTBED_ROOT_PASSWORD:-}
    # The host joins its cgroups before `ip netns exec` (which mounts a fresh /sys without them); its
    # cgroup namespace is then rooted there, and the hierarchies are mounted again inside it.
    setsid bash -c 'while read -r cg; do echo $$ > "$cg/cgroup.procs" || exit 1; done < "$0"; exec "$@"' "$h.cgroups" \
      ip netns exec "$ns" unshare --cgroup --uts --mount --pid --fork --kill-child bash -c '
      set -e
      h=$1; name=$2; password=$3; mounts=$4
      mount --make-rprivate /
      mount -t overlay overlay -o lowerdir=/,upperdir=$h/upper,workdir=$h/work $h/root
      mount --rbind /dev $h/root/dev
      mount -t proc proc $h/root/proc
      mount --rbind /sys $h/root/sys
      case $mounts in ". "*) ;; *) mount -t tmpfs -o mode=755 cgroup $h/root/sys/fs/cgroup ;; esac
      while read -r sub type ctl; do
        [ -n "$sub" ] || continue
        mkdir -p "$h/root/sys/fs/cgroup/$sub"
        if [ "$type" = cgroup2 ]; then mount -t cgroup2 cgroup2 "$h/root/sys/fs/cgroup/$sub"
        else mount -t cgroup -o "$ctl" cgroup "$h/root/sys/fs/cgroup/$sub"; fi
      done <<< "$mounts"
      mount -t tmpfs tmpfs $h/root/run
      mount -t tmpfs tmpfs $h/root/tmp
      hostname "$name"
      echo "$name" > $h/root/etc/hostname
      # Its own name resolves, as on any installed machine (sudo looks it up and warns on stderr when it
      # cannot; the DNS of the machine is not reachable from the testbed network).
      grep -q " $name\$" $h/root/etc/hosts || printf "127.0.1.1 %s\n" "$name" >> $h/root/etc/hosts
      mkdir -p $h/root/run/sshd
      if [ -n "$password" ]; then echo "root:$password" | chroot $h/root chpasswd; fi
      exec chroot $h/root /bin/sh -c "/usr/sbin/sshd -f /etc/ssh/sealer_testbed_sshd_config; trap \"exit 0\" TERM; while :; do sleep 3600 & wait; done"
    ' _ "$h" "tb$k-h$i" "$password" "$mounts" </dev/null >"$base/h$i.log" 2>&1 &
    echo $! > "$h/unshare.pid"
  done
  # The host's init is unshare's child; its pid (outside the host's pid namespace) is what nsenter needs.
  # Only a child in another PID namespace than the process's own is it: before that process is unshare,
  # it is the shell that joins the cgroups, whose children (were it to fork one) are not the host.
  for i in $(seq 1 "$n"); do
    local u; u=$(cat "$base/h$i/unshare.pid")
    for _ in $(seq 200); do
      local child cns uns; child=$(cat "/proc/$u/task/$u/children" 2>/dev/null | awk '{print $1}')
      if [ -n "$child" ] && cns=$(readlink "/proc/$child/ns/pid") && uns=$(readlink "/proc/$u/ns/pid") \
        && [ "$cns" != "$uns" ]; then
        echo "$child" > "$base/h$i/pid"; break
      fi 2>/dev/null
      sleep 0.01
    done
  done
  # Wait until every sshd answers.
  for i in $(seq 1 "$n"); do
    local ip; ip=$(host_ip "$k" "$i")
    for _ in $(seq 200); do
      if [ -s "$base/h$i/pid" ] && (exec 3<>"/dev/tcp/$ip/22") 2>/dev/null; then break; fi
      sleep 0.025
    done
    (exec 3<>"/dev/tcp/$ip/22") 2>/dev/null || die "host $i ($ip) did not come up: $(cat "$base/h$i.log")"
  done
  trap - ERR
  echo "$k"
}

cmd=${1:-}; shift || true
case "$cmd" in
  up) up "${1:?number of hosts}" ;;
  down) down "${1:?testbed id}" ;;
  sshd-stop) stop_sshd "${1:?testbed id}" "${2:?host}" ;;
  sshd-start) start_sshd "${1:?testbed id}" "${2:?host}" ;;
  exec) k=${1:?testbed id}; i=${2:?host}; shift 2; in_host "$k" "$i" "$@" ;;
  kill) kill_host "${1:?testbed id}" "${2:?host}" ;;
  clean) clean ;;
  *) die "usage: testbed.sh up N | down K | sshd-stop K I | sshd-start K I | exec K I CMD... | kill K I | clean" ;;
esac
