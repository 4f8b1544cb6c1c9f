#!/usr/bin/env bash
# Cluster-image benchmark, side by side in one run: build, push and pull of an image with 200 MB of
# content against a local docker-registry, beside `skopeo copy` of the same image between two
# repositories of that registry (a third-party client moving the same bytes), and an unchanged rebuild.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
sealer=${SEALER:-$repo/target/release/sealer}
[ -x "$sealer" ] || cargo build --release -q -p sealer-cli --manifest-path "$repo/Cargo.toml"
work=$(mktemp -d /tmp/sealer-image-bench.XXXX)
port=$((20000 + RANDOM % 20000))
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%s\n' "$work" "$port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
reg=$!
trap 'kill $reg; rm -rf "$work"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
export SEALER_HOME=$work/home
mkdir -p "$work/ctx/payload"
for i in 1 2 3 4; do head -c $((50 * 1024 * 1024)) /dev/urandom > "$work/ctx/payload/part$i.bin"; done
printf 'FROM scratch\nCOPY payload payload\n' > "$work/ctx/Kubefile"
name=127.0.0.1:$port/bench/payload:1
now() { date +%s.%N; }
t() { local s; s=$(now); "$@" >/dev/null; echo "$(now) - $s" | bc; }
build=$(t "$sealer" build -t "$name" "$work/ctx")
rebuild=$(t "$sealer" build -t "$name" "$work/ctx")
push=$(t "$sealer" push "$name")
"$sealer" rmi "$name" >/dev/null
pull=$(t "$sealer" pull "$name")
skopeo_copy=$(t skopeo copy --src-tls-verify=false --dest-tls-verify=false "docker://$name" "docker://127.0.0.1:$port/bench/copy:1")
mb=200
printf '%-28s %8s %10s\n' step seconds MB/s
for row in "sealer build:$build" "sealer build (unchanged):$rebuild" "sealer push:$push" "sealer pull:$pull" "skopeo copy (pull+push):$skopeo_copy"; do
  s=${row##*:}; printf '%-28s %8.2f %10.0f\n' "${row%:*}" "$s" "$(echo "$mb / $s" | bc -l)"
done
