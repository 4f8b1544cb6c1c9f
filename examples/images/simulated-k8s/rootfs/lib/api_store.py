# The objects of the SIMULATED API server (see simk8s.py) and the controllers that act on them, kept in
# the real etcd of the control plane under /registry/RESOURCE/[NAMESPACE/]NAME as Kubernetes keeps them
# (JSON here, protobuf there). An object's resourceVersion is its key's etcd mod_revision. Every write is
# one etcd transaction that holds only while every key it writes is as it was read, so the API servers of
# all control-plane members never overwrite each other. Beside the objects: /registry/sim/cluster (the
# cluster's version, bootstrap tokens, certificate keys, CA hash) and /registry/sim/heartbeats/NODE.
import copy
import datetime
import hashlib
import json
import secrets
import time
import uuid

import simk8s
from api_kinds import BY_PATH, RESOURCES, selects

CLUSTER_KEY = "/registry/sim/cluster"
HEARTBEATS = "/registry/sim/heartbeats/"
READY_WITHIN = 6.0
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def timestamp(t=None):
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Where Kubernetes keeps a resource's objects when its name is not the resource's (nodes are "minions").
STORED_AS = {"nodes": "minions", "services": "services/specs"}


def prefix_of(resource):
    return "/registry/%s/" % STORED_AS.get(resource, resource)


def key_of(resource, namespace, name):
    return prefix_of(resource) + (namespace + "/" if namespace else "") + name


def new_meta(name, namespace=None, **extra):
    meta = {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": timestamp()}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return meta


class State:
    """Everything under /registry/, read at one revision."""

    def __init__(self):
        flat, revisions, self.revision = simk8s.etcd_range_revisions("/registry/")
        self.cluster = json.loads(flat.pop(CLUSTER_KEY, "{}"))
        self.heartbeats = {k[len(HEARTBEATS):]: float(v) for k, v in flat.items() if k.startswith(HEARTBEATS)}
        self.objects = {k: json.loads(v) for k, v in flat.items() if not k.startswith("/registry/sim/")}
        self.revisions = {k: revisions[k] for k in list(self.objects) + [CLUSTER_KEY] + [HEARTBEATS + n for n in self.heartbeats]
                          if k in revisions}
        self.before = self.flatten()
        # Keys a decision read beyond those written (a namespace that must exist, the owner a controller
        # made objects for): the write holds only while they are as read too.
        self.guarded = set()
        # The uids of the objects the last save wrote.
        self.written = set()

    def flatten(self):
        flat = {k: json.dumps(v, sort_keys=True) for k, v in self.objects.items()}
        flat[CLUSTER_KEY] = json.dumps(self.cluster, sort_keys=True)
        flat.update({HEARTBEATS + n: repr(t) for n, t in self.heartbeats.items()})
        return flat

    def save(self):
        """Writes what changed; the new revision, or None when another member wrote first."""
        new = self.flatten()
        changed = [k for k, v in new.items() if self.before.get(k) != v] + sorted(self.before.keys() - new.keys())
        if not changed:
            return self.revision
        self.written = {self.objects[k]["metadata"].get("uid") for k in changed if k in self.objects}
        compare = [{"key": simk8s.b64(k), "target": "MOD", "result": "EQUAL", "mod_revision": str(self.revisions.get(k, 0))}
                   for k in sorted(set(changed) | self.guarded)]
        success = [{"request_put": {"key": simk8s.b64(k), "value": simk8s.b64(new[k])}} if k in new
                   else {"request_delete_range": {"key": simk8s.b64(k)}} for k in changed]
        answer = simk8s.etcd("/v3/kv/txn", {"compare": compare, "success": success})
        if not answer.get("succeeded"):
            return None
        revision = int(answer["header"]["revision"])
        for k in changed:
            if k in new:
                self.revisions[k] = revision
        return revision

    # --- reading ---

    def get(self, resource, namespace, name):
        obj = self.objects.get(key_of(resource, namespace, name))
        return None if obj is None else self.view(resource, key_of(resource, namespace, name), obj)

    def view(self, resource, key, obj):
        """The object as the API returns it: its resourceVersion, and a node's Ready condition."""
        out = copy.deepcopy(obj)
        out["metadata"]["resourceVersion"] = str(self.revisions.get(key, self.revision))
        if resource == "nodes":
            beat = self.heartbeats.get(obj["metadata"]["name"], 0)
            ready = time.time() - beat < READY_WITHIN
            out.setdefault("status", {})["conditions"] = [{
                "type": "Ready", "status": "True" if ready else "Unknown" if beat else "False",
                "reason": "KubeletReady" if ready else "NodeStatusUnknown" if beat else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
                "lastHeartbeatTime": timestamp(beat or None), "lastTransitionTime": obj["metadata"]["creationTimestamp"]}]
        return out

    def items(self, resource, namespace=None):
        prefix = prefix_of(resource)
        if namespace:
            prefix += namespace + "/"
        return [(k, o) for k, o in sorted(self.objects.items()) if k.startswith(prefix)]

    def ready(self, name):
        return time.time() - self.heartbeats.get(name, 0) < READY_WITHIN

    # --- writing ---

    def put(self, resource, obj):
        meta = obj["metadata"]
        meta.pop("resourceVersion", None)
        if resource == "nodes":
            (obj.get("status") or {}).pop("conditions", None)
        self.objects[key_of(resource, meta.get("namespace"), meta["name"])] = obj

    def delete(self, resource, namespace, name, propagation="Background"):
        obj = self.objects.pop(key_of(resource, namespace, name), None)
        if obj is None:
            return None
        uid = obj["metadata"]["uid"]
        for key, other in list(self.objects.items()):
            refs = other["metadata"].get("ownerReferences") or []
            if key in self.objects and any(r.get("uid") == uid for r in refs):
                if propagation == "Orphan":
                    other["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not other["metadata"]["ownerReferences"]:
                        del other["metadata"]["ownerReferences"]
                else:
                    self.delete(resource_of(key), other["metadata"].get("namespace"), other["metadata"]["name"], propagation)
        if resource == "namespaces":
            for key in [k for k, o in self.objects.items() if o["metadata"].get("namespace") == name]:
                if key in self.objects:
                    self.delete(resource_of(key), name, self.objects[key]["metadata"]["name"], propagation)
        if resource == "nodes":
            # The pod garbage collector: pods bound to a node that is gone go too (their owners make new ones).
            for _, pod in self.items("pods"):
                if (pod.get("spec") or {}).get("nodeName") == name:
                    self.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], propagation)
            self.heartbeats.pop(name, None)
        return obj

    # --- controllers ---

    def reconcile(self, schedule_here):
        """What Kubernetes' controllers would have done by now: deployments' replica sets, replica sets'
        pods, statuses; and the scheduler's bindings when this member schedules."""
        for _, d in self.items("deployments"):
            self.deployment(d)
        for _, rs in self.items("replicasets"):
            self.replica_set(rs)
        if schedule_here:
            self.schedule()
        for _, d in self.items("deployments"):
            self.deployment_status(d)

    def owned(self, resource, owner):
        return [o for _, o in self.items(resource, owner["metadata"]["namespace"])
                if any(r.get("uid") == owner["metadata"]["uid"] and r.get("controller") for r in o["metadata"].get("ownerReferences") or [])]

    def deployment(self, d):
        spec = d.get("spec") or {}
        template = spec.get("template") or {}
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        name = "%s-%s" % (d["metadata"]["name"], digest)
        ns = d["metadata"]["namespace"]
        for rs in self.owned("replicasets", d):
            if rs["metadata"]["name"] != name:
                # A new template replaces the old replica set (as the Recreate strategy; no history is kept).
                self.delete("replicasets", ns, rs["metadata"]["name"])
        rs = self.objects.get(key_of("replicasets", ns, name))
        labels = dict((template.get("metadata") or {}).get("labels") or {}, **{"pod-template-hash": digest})
        replicas = spec.get("replicas", 1)
        if rs is None:
            # Two members reconciling at once must not both make a replica set.
            self.guarded.add(key_of("deployments", ns, d["metadata"]["name"]))
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = digest
            pod_template = copy.deepcopy(template)
            pod_template.setdefault("metadata", {})["labels"] = labels
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": new_meta(name, ns, labels=labels, generation=1,
                                       ownerReferences=[owner_reference(d)]),
                  "spec": {"replicas": replicas, "selector": selector, "template": pod_template}, "status": {"replicas": 0}}
            self.put("replicasets", rs)
        elif rs["spec"].get("replicas") != replicas:
            rs["spec"]["replicas"] = replicas

    def replica_set(self, rs):
        ns = rs["metadata"]["namespace"]
        pods = self.owned("pods", rs)
        want = rs["spec"].get("replicas", 1)
        if want != len(pods):
            # Two members reconciling at once must not both make (or remove) the same pods.
            self.guarded.add(key_of("replicasets", ns, rs["metadata"]["name"]))
        for pod in pods[want:]:
            self.delete("pods", ns, pod["metadata"]["name"])
        for _ in range(want - len(pods)):
            template = copy.deepcopy(rs["spec"].get("template") or {})
            name = "%s-%s" % (rs["metadata"]["name"], secrets.token_hex(3)[:5])
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": new_meta(name, ns, labels=(template.get("metadata") or {}).get("labels") or {},
                                        ownerReferences=[owner_reference(rs)]),
                   "spec": template.get("spec") or {}}
            self.put("pods", default_pod(pod))
        pods = self.owned("pods", rs)
        status = {"replicas": len(pods), "readyReplicas": sum(1 for p in pods if pod_ready(p)),
                  "observedGeneration": rs["metadata"].get("generation", 1)}
        status["availableReplicas"] = status["readyReplicas"]
        rs["status"] = status

    def deployment_status(self, d):
        sets = self.owned("replicasets", d)
        ready = sum(rs["status"].get("readyReplicas", 0) for rs in sets)
        replicas = sum(rs["status"].get("replicas", 0) for rs in sets)
        want = (d.get("spec") or {}).get("replicas", 1)
        status = {"observedGeneration": d["metadata"].get("generation", 1), "replicas": replicas, "updatedReplicas": replicas,
                  "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": max(want - ready, 0),
                  "conditions": [{"type": "Available", "status": "True" if ready >= want else "False",
                                  "reason": "MinimumReplicasAvailable" if ready >= want else "MinimumReplicasUnavailable"}]}
        if d.get("status") != status:
            d["status"] = status

    def schedule(self):
        """Binds every pending pod to the feasible node with the fewest pods (by name on a tie)."""
        pods = [p for _, p in self.items("pods")]
        nodes = [n for _, n in self.items("nodes")]
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName"):
                continue
            fits = [n for n in nodes if self.feasible(pod, n, pods)]
            status = pod.setdefault("status", {})
            if not fits:
                condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": "0/%d nodes are available" % len(nodes)}
                if status.get("conditions") != [condition]:
                    status["conditions"] = [condition]
                continue
            load = {n["metadata"]["name"]: sum(1 for p in pods if p["spec"].get("nodeName") == n["metadata"]["name"]) for n in fits}
            best = min(fits, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
            pod["spec"]["nodeName"] = best["metadata"]["name"]
            ip = internal_ip(best)
            status.update(hostIP=ip, podIP=ip, conditions=[{"type": "PodScheduled", "status": "True"}])

    def feasible(self, pod, node, pods):
        spec, name = pod["spec"], node["metadata"]["name"]
        if not self.ready(name) or (node.get("spec") or {}).get("unschedulable"):
            return False
        # As the scheduler's NodePorts filter: a host port is one pod's per node.
        if host_ports(spec) & {port for p in pods if p["spec"].get("nodeName") == name for port in host_ports(p["spec"])}:
            return False
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return False
        return all(tolerates(spec.get("tolerations"), t) for t in (node.get("spec") or {}).get("taints") or []
                   if t.get("effect") in ("NoSchedule", "NoExecute"))

    def leads(self, address):
        """Every control-plane member serves the API; one schedules: the Ready member with the lowest
        address (another takes over once it is not Ready), so two never bind the same pod at once."""
        members = sorted((internal_ip(n) for _, n in self.items("nodes")
                          if "node-role.kubernetes.io/control-plane" in (n["metadata"].get("labels") or {})
                          and self.ready(n["metadata"]["name"])),
                         key=lambda ip: tuple(int(x) for x in ip.split(".")) if ip.count(".") == 3 else (999,))
        return not members or members[0] == address


def resource_of(key):
    """The resource whose object is stored at `key`."""
    return next(r.name for r in RESOURCES if key.startswith(prefix_of(r.name)))


def owner_reference(owner):
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def default_pod(pod):
    """The defaults the API server fills in a pod."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if isinstance(c, dict) and isinstance(c.get("image"), str):
            tag = c["image"].rsplit("/", 1)[-1]
            c.setdefault("imagePullPolicy", "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
    pod.setdefault("status", {"phase": "Pending"})
    pod["status"].setdefault("phase", "Pending")
    return pod


def pod_conditions(pod):
    """The conditions a kubelet reports with a pod's status: Initialized, ContainersReady, Ready (and the
    scheduler's PodScheduled)."""
    status = pod.get("status") or {}
    now = timestamp()
    scheduled = {"type": "PodScheduled", "status": "True" if (pod.get("spec") or {}).get("nodeName") else "False"}
    ready = "True" if pod_ready(pod) else "False"
    inits_done = all("terminated" in (c.get("state") or {}) for c in status.get("initContainerStatuses") or [])
    old = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}

    def condition(kind, value):
        previous = old.get(kind) or {}
        since = previous.get("lastTransitionTime") if previous.get("status") == value else now
        return {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": since}

    return [condition("Initialized", "True" if inits_done else "False"), condition("Ready", ready),
            condition("ContainersReady", ready), dict(condition("PodScheduled", scheduled["status"]))]


def pod_ready(pod):
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(containers) and all(c.get("ready") for c in containers)


def internal_ip(node):
    return next((a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"), "")


def host_ports(spec):
    return {(p.get("protocol", "TCP"), p["hostPort"]) for c in spec.get("containers") or [] for p in c.get("ports") or []
            if isinstance(p, dict) and p.get("hostPort")}


def tolerates(tolerations, taint):
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def matches(obj, labels, fields):
    """Whether `obj` is selected by a parsed label selector and field selector."""
    meta = obj["metadata"]
    if labels is not None and not selects(labels, meta.get("labels") or {}):
        return False
    for path, op, value in fields:
        actual = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
                  "spec.nodeName": (obj.get("spec") or {}).get("nodeName") or "",
                  "status.phase": (obj.get("status") or {}).get("phase") or "",
                  "spec.unschedulable": str(bool((obj.get("spec") or {}).get("unschedulable"))).lower()}.get(path)
        if (op == "=") != (actual == value):
            return False
    return True


FIELD_SELECTABLE = {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "spec.unschedulable"}


def resource(group, version, name):
    return BY_PATH.get((group, version, name))


def seed(cluster, configmaps):
    """A new cluster's first records (kubeadm init): the cluster's own, the system namespaces, and the
    kube-system config maps {name: data}."""
    simk8s.etcd_put(CLUSTER_KEY, json.dumps(cluster, sort_keys=True))
    for ns in SYSTEM_NAMESPACES:
        simk8s.etcd_put(key_of("namespaces", None, ns), json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": new_meta(ns, labels={"kubernetes.io/metadata.name": ns}),
             "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}))
    for name, data in configmaps.items():
        simk8s.etcd_put(key_of("configmaps", "kube-system", name), json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": new_meta(name, "kube-system"), "data": data}))
