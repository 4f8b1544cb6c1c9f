# SIMULATED Kubernetes distribution for sealer's test cluster image.
#
# kubeadm, the kubelet and the API server cannot be installed on the machines sealer is tested on, so this
# image carries a simulation of them (its kubectl is the real one, bin/kubectl, copied by the Kubefile).
# It is strict (unknown flags, unknown config fields and wrong API versions are errors; a join needs the
# token and CA hash that init printed) and stateful (an API process on every
# control-plane member keeps nodes, roles, labels, taints and Ready status, which comes from each node's
# simulated kubelet heartbeating). It is not Kubernetes and never claims to be. Its objects live in a
# real etcd (Debian's etcd-server, copied into the image), one member per control-plane node, under
# /registry/ like Kubernetes' own, so snapshots, restores and member changes are real etcd operations.
import base64
import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

SIM = "[simulated kubernetes]"
KUBE_DIR = "/etc/kubernetes"
ADMIN_CONF = KUBE_DIR + "/admin.conf"
KUBELET_CONF = KUBE_DIR + "/kubelet.conf"
STATE_DIR = "/var/lib/sim-k8s"
RUN_DIR = "/run/sim-k8s"
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(os.path.dirname(HERE), "bin")


def timestamp(t):
    """A time as the API writes it (RFC 3339, UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class ToolError(SystemExit):
    """What `fail` raises: the tool exits with `code`; str() is the message (already on stderr), so a daemon
    that goes on after one failed turn, or the API answering a 500, can say what failed."""

    def __init__(self, message, code):
        super().__init__(code)
        self.message = message

    def __str__(self):
        return self.message


def fail(message, code=1):
    message = message.rstrip("\n")
    sys.stderr.write(message + "\n")
    raise ToolError(message, code)


# The kubeconfig whose client certificate this process presents to the API (`read_server` sets it), and
# the TLS contexts made so far, by kubeconfig.
_identity = None
_contexts = {}
# The kubelet asks from two threads (heartbeats, pods): one makes the context, the other waits for it.
_contexts_lock = threading.Lock()


def read_server(conf):
    """The API server a kubeconfig names; its client certificate is what this process presents from now."""
    global _identity
    try:
        with open(conf) as f:
            for line in f:
                line = line.strip()
                if line.startswith("server:"):
                    _identity = conf
                    return line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    except OSError as e:
        fail("error: %s: %s" % (conf, e.strerror))
    fail("error: %s not found: is this a control-plane node of an initialised cluster?" % conf)


def kubeconfig_field(conf, name):
    """A base64 `*-data` field of a kubeconfig kubeadm wrote, decoded."""
    with open(conf) as f:
        for line in f:
            key, _, value = line.strip().partition(": ")
            if key == name:
                return base64.b64decode(value)
    fail("error: %s has no %s" % (conf, name))


CA_CERT = KUBE_DIR + "/pki/ca.crt"
CA_KEY = KUBE_DIR + "/pki/ca.key"


def tls(insecure=False):
    """The TLS context of a client of the API: the cluster's CA verifies the server (its address must be
    one of the certificate's names), and the client certificate of the kubeconfig `read_server` read is
    presented; `insecure` only for kubeadm's discovery, which pins the CA itself."""
    if insecure:
        return ssl._create_unverified_context()
    with _contexts_lock:
        if _identity not in _contexts:
            _contexts[_identity] = _new_context()
        return _contexts[_identity]


def _new_context():
    if not os.path.exists(CA_CERT):
        fail("error: %s not found: this host has not joined a cluster" % CA_CERT)
    context = ssl.create_default_context(cafile=CA_CERT)
    if _identity is not None:
        # ssl reads a certificate and key only from a file: one private to root, under /run.
        pem = kubeconfig_field(_identity, "client-certificate-data") + kubeconfig_field(_identity, "client-key-data")
        os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
        path = os.path.join(RUN_DIR, "identity-%d.pem" % os.getpid())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            context.load_cert_chain(path)
        finally:
            os.remove(path)
    return context


def sign(csr, extensions):
    """A certificate for `csr` (PEM) signed by the cluster's CA (this control-plane member's files), with
    the X.509 `extensions` (openssl's extfile lines), for a year."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".ext") as ext:
        ext.write("\n".join(extensions) + "\n")
        ext.flush()
        return openssl("x509", "-req", "-CA", CA_CERT, "-CAkey", CA_KEY, "-CAcreateserial", "-days", "365",
                       "-extfile", ext.name, stdin=csr)


def new_key():
    """A private key (ECDSA P-256), PEM."""
    return openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")


def csr_for(key, subject):
    import tempfile
    with tempfile.NamedTemporaryFile("wb") as f:
        f.write(key)
        f.flush()
        return openssl("req", "-new", "-key", f.name, "-subj", subject)


CLIENT_EXTENSIONS = ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature,keyEncipherment"]


def openssl(*args, stdin=None):
    """One openssl command (Debian's openssl): its stdout; a failure is kubeadm's error."""
    import subprocess
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if done.returncode != 0:
        fail("error: openssl %s: %s" % (args[0], done.stderr.decode(errors="replace").strip()))
    return done.stdout


def ca_hash(cert_pem):
    """kubeadm's CA pin: sha256 of the certificate's DER-encoded SubjectPublicKeyInfo."""
    import hashlib
    public = openssl("x509", "-pubkey", "-noout", stdin=cert_pem)
    return "sha256:" + hashlib.sha256(openssl("pkey", "-pubin", "-outform", "DER", stdin=public)).hexdigest()


def _request(server, method, path, body, read, content_type="application/json", insecure=False):
    """One request to the API server; `read` turns the answer's bytes into the result. Its errors are
    kubectl's."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server + path, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=15, context=tls(insecure)) as resp:
            return read(resp.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            detail = json.loads(raw)["message"]
        except (ValueError, KeyError, TypeError):
            detail = "%s: %s" % (e, raw.decode(errors="replace"))
        fail("Error from server: %s" % detail)
    except (urllib.error.URLError, OSError) as e:
        fail("The connection to the server %s was refused - did you specify the right host or port? (%s)" % (server, e))


def call(server, method, path, body=None, content_type="application/json", insecure=False):
    return _request(server, method, path, body, lambda b: json.loads(b or b"null"), content_type, insecure)


def update_configmap(server, namespace, name, data):
    """Replaces a config map's data (as kubeadm's upload-config does: create it, or update what is there)."""
    path = "/api/v1/namespaces/%s/configmaps" % namespace
    try:
        with urllib.request.urlopen(server + path + "/" + name, timeout=15, context=tls()) as resp:
            current = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code != 404:
            fail("Error from server: %s" % e)
        return call(server, "POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    except (urllib.error.URLError, OSError, ValueError) as e:
        fail("The connection to the server %s was refused - did you specify the right host or port? (%s)" % (server, e))
    current["data"] = data
    return call(server, "PUT", path + "/" + name, current)


def call_text(server, path):
    """A GET whose answer is text (a container's log)."""
    return _request(server, "GET", path, None, lambda b: b.decode(errors="replace"))


def spawn(args, log):
    """Starts a daemon detached from the caller's stdio, so an ssh channel does not wait for it."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execv(args[0], args)
    os.waitpid(pid, 0)


def remove_tree(path, who):
    """Removes a directory tree; what cannot be removed is told (a reset that leaves files says so), what
    is not there is not."""
    import shutil

    def told(function, failed, exc_info):
        if not isinstance(exc_info[1], FileNotFoundError):
            sys.stderr.write("%s could not remove %s: %s\n" % (who, failed, exc_info[1]))
    shutil.rmtree(path, onerror=told)


def kill_pidfile(path):
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        os.kill(pid, 9)
    except (OSError, ValueError):
        pass
    try:
        os.remove(path)
    except OSError:
        pass


# A flag that may be given more than once (as kubeadm's string slices): its values, in order, as a list.
REPEATED = "repeated"


def parse_flags(argv, spec, command, usage=None):
    """Strict flag parsing: spec maps flag -> True (takes a value), False (boolean) or REPEATED. Unknown
    flags, and a flag given twice that may not repeat (never silently overwritten), are refused with the
    usage line."""
    usage = usage or usage_of(command, spec)
    flags, positional, i = {}, [], 0
    while i < len(argv):
        a, i = argv[i], i + 1
        if not a.startswith("-") or a == "-":
            positional.append(a)
            continue
        name, eq, value = a.partition("=")
        if name not in spec:
            fail("Error: unknown flag: %s\n%s" % (name, usage))
        if spec[name] is False:
            if eq:
                fail("Error: flag %s takes no value\n%s" % (name, usage))
            value = True
        elif not eq:
            if i >= len(argv):
                fail("Error: flag needs an argument: %s\n%s" % (name, usage))
            value, i = argv[i], i + 1
        if spec[name] == REPEATED:
            flags.setdefault(name, []).append(value)
        elif name in flags:
            fail("Error: flag %s given more than once\n%s" % (name, usage))
        else:
            flags[name] = value
    return flags, positional


def usage_of(command, spec):
    """A usage line from a flag spec: `usage: kubeadm reset [ARG]... [-f] [--force]`."""
    shown = ("[%s]" % f if kind is False else "[%s VALUE]..." % f if kind == REPEATED else "[%s VALUE]" % f
             for f, kind in spec.items())
    return " ".join(["usage: %s [ARG]..." % command, *shown])


ETCD_CLIENT = "http://127.0.0.1:2379"
ETCD_MANIFEST = KUBE_DIR + "/manifests/etcd.yaml"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def _unb64(text):
    return base64.b64decode(text).decode()


def etcd(path, body, endpoint=ETCD_CLIENT):
    """One call to etcd's v3 JSON gateway."""
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        fail("etcd %s %s: %s %s" % (endpoint, path, e.code, e.read().decode(errors="replace")))
    except (urllib.error.URLError, OSError) as e:
        fail("etcd %s %s: %s" % (endpoint, path, e))


def etcd_range(prefix):
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    r = etcd("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
    return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in r.get("kvs", [])}


def etcd_range_revisions(prefix):
    """Keys under `prefix` with their values, the revision each was last written at, and the store's
    revision at the time of reading."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    r = etcd("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
    kvs = r.get("kvs", [])
    return ({_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in kvs},
            {_unb64(kv["key"]): int(kv.get("mod_revision", 0)) for kv in kvs}, int(r["header"]["revision"]))


def etcd_watch(prefix, start_revision, deadline, endpoint=ETCD_CLIENT):
    """The changes of the keys under `prefix` from `start_revision` until `deadline`, as etcd's watch
    reports them: (revision, key, new value or None when deleted, previous value or None), values
    parsed as JSON."""
    import http.client
    host, port = endpoint.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=max(deadline - time.time(), 0.1))
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = {"create_request": {"key": b64(prefix), "range_end": b64(end), "start_revision": str(start_revision),
                               "prev_kv": True}}
    try:
        conn.request("POST", "/v3/watch", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        while time.time() < deadline:
            conn.sock.settimeout(max(deadline - time.time(), 0.1))
            line = resp.readline()
            if not line:
                return
            answer = json.loads(line)
            if resp.status != 200 or answer.get("error"):
                sys.stderr.write("etcd watch of %s refused: %s %s\n" % (prefix, resp.status, answer.get("error") or answer))
                return
            result = answer.get("result") or {}
            if int(result.get("compact_revision") or 0) > 0:
                # The start revision was compacted away: the caller answers 410 Gone.
                yield int(result["compact_revision"]), None, None, None
                return
            for e in result.get("events") or []:
                kv, prev = e["kv"], e.get("prev_kv")
                new = None if e.get("type") == "DELETE" else json.loads(_unb64(kv["value"]))
                old = json.loads(_unb64(prev["value"])) if prev and prev.get("value") else None
                yield int(kv.get("mod_revision", 0)), _unb64(kv["key"]), new, old
    except (OSError, http.client.HTTPException):
        # The deadline came, or etcd went: the watch ends, and its client watches again (as with a real server).
        return
    except (ValueError, KeyError, AttributeError) as e:
        # Not what etcd's gateway writes: told, not taken for the end of a quiet watch.
        sys.stderr.write("etcd watch of %s: unreadable answer: %s: %s\n" % (prefix, type(e).__name__, e))
        return
    finally:
        conn.close()


def etcd_put(key, value):
    etcd("/v3/kv/put", {"key": b64(key), "value": b64(value)})


def etcd_delete(key):
    etcd("/v3/kv/deleterange", {"key": b64(key)})


def etcd_healthy(endpoint=ETCD_CLIENT):
    """Whether etcd answers healthy; an etcd not there, not answering or unhealthy (503) is not."""
    import http.client
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=2) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return isinstance(answer, dict) and answer.get("health") == "true"
