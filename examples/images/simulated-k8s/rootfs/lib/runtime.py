# The container runtime side of the SIMULATED kubelet and kubeadm (see simk8s.py): a REAL containerd,
# driven with `ctr`, its own client (Debian's containerd package carries both). Not through CRI: a CRI
# client needs gRPC and the CRI protobuf definitions, which no Debian package carries for Python; `ctr`
# pulls through containerd's own resolver reading the same /etc/containerd/certs.d/REGISTRY/hosts.toml
# files (mirrors, login headers) the CRI plugin reads, and runs containers through the same shim and runc.
# Everything lives in containerd's `k8s.io` namespace, as a real kubelet's containers do.
import os
import re
import subprocess
import sys
import tomllib

NAMESPACE = "k8s.io"
CERTS_D = "/etc/containerd/certs.d"
# kubeadm's criSocket when none is given (the image's etc/kubeadm.yml gives its own).
DEFAULT_ENDPOINT = "unix:///run/containerd/containerd.sock"
# The image's containerd configuration (scripts/init.sh starts containerd with it): its snapshotter is the
# one every pull and container uses.
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "containerd.toml")
# Containers this kubelet made: `sim-` and a hash of the pod, the container and its spec (containerd
# allows 76 characters, Kubernetes names 253); who they are is in their labels (`ctr containers info`).
OWN = re.compile(r"^sim-[0-9a-f]{32}$")


class RuntimeFailure(Exception):
    """A ctr command that failed: its message is containerd's own."""


def socket_path(endpoint):
    return endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint


def _cri_containerd():
    """The CRI plugin's `containerd` section of the image's containerd configuration."""
    try:
        with open(CONFIG, "rb") as f:
            return tomllib.load(f)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]
    except (FileNotFoundError, KeyError):
        return {}  # no such configuration, or no such section: containerd's defaults
    except (OSError, tomllib.TOMLDecodeError) as e:
        # A configuration containerd cannot read either (init.sh starts it with this one): told, not hidden.
        sys.stderr.write("%s: %s: %s (containerd's defaults assumed)\n" % (CONFIG, type(e).__name__, e))
        return {}


def snapshotter():
    return _cri_containerd().get("snapshotter", "overlayfs")


def cgroup_driver():
    """systemd when runc is told to use systemd's cgroups (SystemdCgroup), else cgroupfs."""
    runc = ((_cri_containerd().get("runtimes") or {}).get("runc") or {}).get("options") or {}
    return "systemd" if runc.get("SystemdCgroup") else "cgroupfs"


class Runtime:
    def __init__(self, endpoint):
        self.address = socket_path(endpoint or DEFAULT_ENDPOINT)
        self.snapshotter = snapshotter()

    def ctr(self, *args, timeout=120):
        """Runs ctr; returns (exit status, stdout, stderr)."""
        try:
            # ctr would wait 10 s for a runtime that is down (its dial retries); 2 s tell the same.
            p = subprocess.run(["ctr", "--connect-timeout", "2s", "--address", self.address, "-n", NAMESPACE, *args],
                               capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise RuntimeFailure("ctr not found: this image runs Debian's containerd (apt-get install containerd runc)")
        except subprocess.TimeoutExpired:
            raise RuntimeFailure("ctr %s: no answer within %d s" % (args[0], timeout))
        return p.returncode, p.stdout, p.stderr

    def check(self, *args, timeout=120):
        code, out, err = self.ctr(*args, timeout=timeout)
        if code != 0:
            raise RuntimeFailure(message(err) or "ctr %s failed (exit %d)" % (" ".join(args[:2]), code))
        return out

    def up(self):
        """None when containerd answers, else why not."""
        try:
            code, _, err = self.ctr("version", timeout=10)
        except RuntimeFailure as e:
            return str(e)
        return None if code == 0 else "container runtime is down: %s" % (message(err) or "no answer at " + self.address)

    def images(self):
        return set(self.check("images", "ls", "-q").split())

    def pull(self, ref):
        """Pulls `ref` through the hosts' registry configuration; the error is containerd's resolver's, with
        every host it tried."""
        code, _, err = self.ctr("images", "pull", "--hosts-dir", CERTS_D, "--snapshotter", self.snapshotter, ref, timeout=300)
        if code == 0:
            return
        # Each host containerd tried, in order, with its answer ("response was http.StatusNotFound", or
        # the request's error), then containerd's own final error.
        reasons = []
        for line in err.splitlines():
            m = re.search(r'msg="trying next host(?: - response was ([^"]*))?"(?: error="((?:[^"\\]|\\.)*)")? host="?([^"\s]+)', line)
            if m:
                reasons.append("%s: %s" % (m.group(3), (m.group(1) or m.group(2) or "").replace('\\"', '"')))
        final = message(err)
        raise RuntimeFailure('failed to pull and unpack image "%s": %s' % (ref, "; ".join(reasons + ([final] if final else []))))

    def image_config(self, ref):
        """The image's OCI config (Entrypoint, Cmd, Env, WorkingDir)."""
        import json
        line = [l for l in self.check("images", "ls", "name==" + ref).splitlines()[1:] if l.strip()]
        if not line:
            raise RuntimeFailure("image %s is not present" % ref)
        manifest = json.loads(self.check("content", "get", line[0].split()[2]))
        if "manifests" in manifest:  # an index: the linux/amd64 entry
            entry = next((m for m in manifest["manifests"] if (m.get("platform") or {}).get("os") == "linux"
                          and (m.get("platform") or {}).get("architecture") == "amd64"), manifest["manifests"][0])
            manifest = json.loads(self.check("content", "get", entry["digest"]))
        return json.loads(self.check("content", "get", manifest["config"]["digest"])).get("config") or {}

    def tasks(self):
        """Task id -> status (RUNNING, STOPPED, CREATED, ...)."""
        out = self.check("tasks", "ls")
        return {f[0]: f[2] for f in (l.split() for l in out.splitlines()[1:]) if len(f) >= 3}

    def containers(self):
        return set(self.check("containers", "ls", "-q").split())

    def run(self, cid, ref, argv, env, cwd, log, labels):
        args = ["run", "-d", "--net-host", "--snapshotter", self.snapshotter, "--log-uri", "file://" + log]
        args += ["--label=%s=%s" % kv for kv in sorted(labels.items())]
        args += ["--env=%s" % e for e in env]
        if cwd:
            args += ["--cwd", cwd]
        args += [ref, cid] + list(argv)
        code, _, err = self.ctr(*args)
        if code != 0:
            self.remove(cid)
            raise RuntimeFailure(message(err) or "ctr run failed (exit %d)" % code)

    def reap(self, cid):
        """Deletes a stopped task and its container; returns the task's exit code."""
        code, _, err = self.ctr("tasks", "delete", cid)
        self.ctr("containers", "delete", cid)
        m = re.search(r"exit with non-zero exit code (\d+)", err)
        return int(m.group(1)) if m else (0 if code == 0 else 255)

    def remove(self, cid):
        """Kills and removes a container, its task and its snapshot, whatever state they are in."""
        self.ctr("tasks", "delete", "--force", cid)
        self.ctr("containers", "delete", cid)

    def remove_all(self):
        """Every container of the namespace (kubeadm reset), and the images' snapshots go with them."""
        for cid in self.containers():
            self.remove(cid)


def message(stderr):
    """ctr's own error line (`ctr: ...`), without its prefix."""
    lines = [l[len("ctr: "):] for l in stderr.splitlines() if l.startswith("ctr: ")]
    return lines[-1] if lines else ""
