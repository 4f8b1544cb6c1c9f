# The resources the SIMULATED API server (see simk8s.py) serves, and what it checks of their objects:
# discovery documents (the legacy ones: the aggregated kind is declined, as by a server without it),
# validation in the API server's words (422 Invalid with the field, 400 for a strict-decoding error),
# and the Table rows `kubectl get` prints. Everything else is refused (404 for an unknown resource).
import datetime
import re
import time


class Resource:
    def __init__(self, group, version, name, kind, namespaced, short=(), subresources=()):
        self.group, self.version, self.name, self.kind = group, version, name, kind
        self.namespaced, self.short, self.subresources = namespaced, list(short), list(subresources)

    @property
    def group_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    def singular(self):
        return self.kind.lower()


# What `kubectl get all` lists (the `all` category).
IN_ALL = ("pods", "services", "deployments", "replicasets")
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"]),
    Resource("", "v1", "nodes", "Node", False, ["no"], ["status"]),
    Resource("", "v1", "pods", "Pod", True, ["po"], ["status", "eviction", "log"]),
    Resource("", "v1", "services", "Service", True, ["svc"]),
    Resource("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
    Resource("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["status"]),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["status"]),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
]
BY_PATH = {(r.group, r.version, r.name): r for r in RESOURCES}
GROUPS = []
for r in RESOURCES:
    if r.group and r.group not in GROUPS:
        GROUPS.append(r.group)
# The eviction subresource is of group policy (policy/v1 Eviction), as `kubectl drain` looks it up.
SUBRESOURCE_KINDS = {"status": None, "eviction": ("policy", "v1", "Eviction", ["create"]), "log": ("", "v1", "Pod", ["get"])}


def api_versions(address):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def group_list():
    groups = []
    for g in GROUPS:
        versions = sorted({r.version for r in RESOURCES if r.group == g})
        gv = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in versions]
        groups.append({"name": g, "versions": gv, "preferredVersion": gv[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group):
    for g in group_list()["groups"]:
        if g["name"] == group:
            return dict(g, kind="APIGroup", apiVersion="v1")
    return None


def resource_list(group, version):
    served = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    items = []
    for r in served:
        entry = {"name": r.name, "singularName": r.singular(), "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS}
        if r.short:
            entry["shortNames"] = r.short
        if r.name in IN_ALL:
            entry["categories"] = ["all"]
        items.append(entry)
        for sub in r.subresources:
            known = SUBRESOURCE_KINDS[sub]
            entry = {"name": "%s/%s" % (r.name, sub), "singularName": "", "namespaced": r.namespaced,
                     "kind": r.kind, "verbs": ["get", "patch", "update"]}
            if known:
                entry.update(group=known[0], version=known[1], kind=known[2], verbs=known[3])
            items.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "%s/%s" % (group, version) if group else version, "resources": items}


def openapi_index():
    paths = {}
    for r in RESOURCES:
        gv = "api/v1" if not r.group else "apis/%s/%s" % (r.group, r.version)
        paths[gv] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (gv, "0" * 16)}
    return {"paths": paths}


def openapi_group_version(gv):
    """The OpenAPI v3 document of one group version: each resource's PATCH with `fieldValidation`."""
    served = [r for r in RESOURCES if ("api/v1" if not r.group else "apis/%s/%s" % (r.group, r.version)) == gv]
    if not served:
        return None
    paths = {}
    for r in served:
        ns = "/namespaces/{namespace}" if r.namespaced else ""
        paths["/%s%s/%s/{name}" % (gv, ns, r.name)] = {"patch": {
            "operationId": "patch" + r.kind, "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "parameters": [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                           for name in ("dryRun", "fieldManager", "fieldValidation", "force")],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (simulated)", "version": "unversioned"}, "paths": paths,
            "components": {"schemas": {}}}


# --- validation -----------------------------------------------------------------------------------

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIGMAP_LIMIT = 1048576
# The fields each level of an object may carry (a strict decode refuses any other, as
# `fieldValidation=Strict` does); a level not listed is not checked.
TOP = {"apiVersion", "kind", "metadata"}
FIELDS = {
    "Namespace": TOP | {"spec", "status"}, "Node": TOP | {"spec", "status"}, "Pod": TOP | {"spec", "status"},
    "Service": TOP | {"spec", "status"}, "ConfigMap": TOP | {"data", "binaryData", "immutable"},
    "Secret": TOP | {"data", "stringData", "type", "immutable"},
    "ServiceAccount": TOP | {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "Deployment": TOP | {"spec", "status"}, "ReplicaSet": TOP | {"spec", "status"}, "Lease": TOP | {"spec"},
    "Role": TOP | {"rules"}, "ClusterRole": TOP | {"rules", "aggregationRule"},
    "RoleBinding": TOP | {"subjects", "roleRef"}, "ClusterRoleBinding": TOP | {"subjects", "roleRef"},
}
METADATA = {"name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
            "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
            "managedFields", "selfLink"}
DEPLOYMENT_SPEC = {"replicas", "selector", "template", "strategy", "minReadySeconds", "revisionHistoryLimit", "paused",
                   "progressDeadlineSeconds"}
POD_SPEC = {"volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy", "terminationGracePeriodSeconds",
            "activeDeadlineSeconds", "dnsPolicy", "nodeSelector", "serviceAccountName", "serviceAccount",
            "automountServiceAccountToken", "nodeName", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace",
            "securityContext", "imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "tolerations",
            "hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates", "runtimeClassName",
            "enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os",
            "hostUsers", "schedulingGates", "resourceClaims"}
CONTAINER = {"name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
             "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
             "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce",
             "tty"}


class Invalid(Exception):
    """An object the API refuses: `causes` are (field, message) pairs; `strict` for an unknown field."""

    def __init__(self, kind, name, causes, strict=False):
        super().__init__(kind)
        self.kind, self.name, self.causes, self.strict = kind, name, causes, strict


def unknown_fields(obj, path, allowed, out):
    if isinstance(obj, dict):
        out.extend("unknown field \"%s\"" % (path + k) for k in obj if k not in allowed)


def strict_fields(obj):
    """The unknown fields of `obj` at the levels FIELDS and its neighbours describe."""
    out = []
    unknown_fields(obj, "", FIELDS.get(obj.get("kind"), set(obj)), out)
    unknown_fields(obj.get("metadata"), "metadata.", METADATA, out)
    spec = obj.get("spec")
    pod = None
    if obj.get("kind") in ("Deployment", "ReplicaSet") and isinstance(spec, dict):
        unknown_fields(spec, "spec.", DEPLOYMENT_SPEC | {"minReadySeconds"}, out)
        pod, prefix = (spec.get("template") or {}).get("spec"), "spec.template.spec."
    elif obj.get("kind") == "Pod":
        pod, prefix = spec, "spec."
    if isinstance(pod, dict):
        unknown_fields(pod, prefix, POD_SPEC, out)
        for group in ("initContainers", "containers"):
            for i, c in enumerate(pod.get(group) or []):
                unknown_fields(c, "%s%s[%d]." % (prefix, group, i), CONTAINER, out)
    return out


def check_labels(labels, path, causes):
    if labels is None:
        return
    if not isinstance(labels, dict):
        causes.append((path, "Invalid value: must be a map of strings"))
        return
    for k, v in labels.items():
        name = k.rsplit("/", 1)[-1]
        prefix = k[:-len(name) - 1] if "/" in k else ""
        if not LABEL_NAME.match(name) or len(name) > 63 or (prefix and not DNS_SUBDOMAIN.match(prefix)):
            causes.append((path, 'Invalid value: "%s": name part must consist of alphanumeric characters, \'-\', \'_\' or '
                                 '\'.\', and must start and end with an alphanumeric character' % k))
        if not isinstance(v, str) or not LABEL_VALUE.match(v) or len(v) > 63:
            causes.append(("%s[%s]" % (path, k), 'Invalid value: "%s": a valid label must be an empty string or consist of '
                                                 'alphanumeric characters, \'-\', \'_\' or \'.\'' % (v,)))


def check_pod_spec(pod, path, causes):
    """The fields of a pod spec the scheduler and the kubelet read, of the types they read them as."""
    if not isinstance(pod, dict):
        causes.append((path, "Invalid value: must be an object"))
        return
    tolerations = pod.get("tolerations")
    if tolerations is not None and not (isinstance(tolerations, list) and all(
            isinstance(t, dict) and all(isinstance(t.get(f, ""), str) for f in ("key", "operator", "value", "effect"))
            for t in tolerations)):
        causes.append((path + ".tolerations", "Invalid value: must be a list of {key, operator, value, effect}"))
    selector = pod.get("nodeSelector")
    if selector is not None and not (isinstance(selector, dict) and all(isinstance(v, str) for v in selector.values())):
        causes.append((path + ".nodeSelector", "Invalid value: must map strings to strings"))
    for field in ("nodeName", "restartPolicy", "serviceAccountName"):
        if pod.get(field) is not None and not isinstance(pod[field], str):
            causes.append(("%s.%s" % (path, field), "Invalid value: must be a string"))
    if pod.get("hostNetwork") is not None and not isinstance(pod["hostNetwork"], bool):
        causes.append((path + ".hostNetwork", "Invalid value: must be a boolean"))
    check_containers(pod, path, causes)


def check_containers(pod, path, causes):
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers:
        causes.append((path + ".containers", "Required value"))
        return
    names = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(group) or []):
            at = "%s.%s[%d]" % (path, group, i)
            if not isinstance(c, dict):
                causes.append((at, "Invalid value: must be an object"))
                continue
            if not isinstance(c.get("name"), str) or not DNS_LABEL.match(c["name"]):
                causes.append((at + ".name", "Invalid value: %r: a lowercase RFC 1123 label is required" % (c.get("name"),)))
            elif c["name"] in names:
                causes.append((at + ".name", "Duplicate value: %r" % c["name"]))
            names.add(c.get("name"))
            if not isinstance(c.get("image"), str) or not c["image"].strip():
                causes.append((at + ".image", "Required value"))
            for field in ("command", "args"):
                if c.get(field) is not None and not (isinstance(c[field], list) and all(isinstance(a, str) for a in c[field])):
                    causes.append(("%s.%s" % (at, field), "Invalid value: must be a list of strings"))
            for j, e in enumerate(c.get("env") or []):
                if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
                    causes.append(("%s.env[%d].name" % (at, j), "Required value"))
                elif "value" in e and not isinstance(e["value"], str):
                    causes.append(("%s.env[%d].value" % (at, j), "Invalid value: must be a string"))
            ports = c.get("ports") or []
            if not isinstance(ports, list):
                causes.append((at + ".ports", "Invalid value: must be a list"))
                ports = []
            for j, p in enumerate(ports):
                if not isinstance(p, dict) or not isinstance(p.get("containerPort"), int) or not 0 < p["containerPort"] < 65536:
                    causes.append(("%s.ports[%d].containerPort" % (at, j), "Invalid value: must be between 1 and 65535"))
                elif not isinstance(p.get("hostPort", 1), int) or not 0 < p.get("hostPort", 1) < 65536:
                    causes.append(("%s.ports[%d].hostPort" % (at, j), "Invalid value: must be between 1 and 65535"))
                elif p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                    causes.append(("%s.ports[%d].protocol" % (at, j), 'Unsupported value: %r: supported values: "SCTP", "TCP", "UDP"' % (p.get("protocol"),)))


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels, matchExpressions) selects `labels`."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def check_kind(obj, causes):
    kind, spec = obj.get("kind"), obj.get("spec")
    if kind in ("Deployment", "ReplicaSet"):
        spec = spec if isinstance(spec, dict) else {}
        selector = spec.get("selector")
        template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
        if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append(("spec.selector", "Required value"))
        elif not isinstance(selector.get("matchLabels") or {}, dict) or not isinstance(selector.get("matchExpressions") or [], list):
            causes.append(("spec.selector", "Invalid value: matchLabels must be a map, matchExpressions a list"))
        elif not isinstance(template.get("metadata") or {}, dict):
            causes.append(("spec.template.metadata", "Invalid value: must be an object"))
        elif not selects(selector, (template.get("metadata") or {}).get("labels") or {}):
            causes.append(("spec.template.metadata.labels",
                           "Invalid value: %s: `selector` does not match template `labels`" % ((template.get("metadata") or {}).get("labels") or {})))
        check_labels((template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels", causes)
        if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 0:
            causes.append(("spec.replicas", "Invalid value: must be greater than or equal to 0"))
        check_pod_spec(template.get("spec"), "spec.template.spec", causes)
    elif kind == "Pod":
        check_pod_spec(spec, "spec", causes)
    elif kind == "Node":
        spec = spec if isinstance(spec, dict) else {}
        if spec.get("unschedulable") is not None and not isinstance(spec["unschedulable"], bool):
            causes.append(("spec.unschedulable", "Invalid value: must be a boolean"))
        taints = spec.get("taints") or []
        if not isinstance(taints, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str) and
                                                   t.get("effect") in ("NoSchedule", "PreferNoSchedule", "NoExecute")
                                                   for t in taints):
            causes.append(("spec.taints", "Invalid value: must be a list of {key, value, effect}"))
        addresses = (obj.get("status") or {}).get("addresses") or []
        if not isinstance(addresses, list) or not all(isinstance(a, dict) and isinstance(a.get("address"), str) for a in addresses):
            causes.append(("status.addresses", "Invalid value: must be a list of {type, address}"))
    elif kind == "ConfigMap":
        data = obj.get("data") or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            causes.append(("data", "Invalid value: must map strings to strings"))
        elif sum(len(k.encode()) + len(v.encode()) for k, v in data.items()) > CONFIGMAP_LIMIT:
            causes.append(("[]", "Too long: must have at most %d bytes" % CONFIGMAP_LIMIT))
    elif kind == "Service":
        if spec is not None and not isinstance(spec, dict):
            causes.append(("spec", "Invalid value: must be an object"))
            spec = {}
        for i, p in enumerate((spec or {}).get("ports") or []):
            if not isinstance(p, dict) or not isinstance(p.get("port"), int) or not 0 < p["port"] < 65536:
                causes.append(("spec.ports[%d].port" % i, "Invalid value: must be between 1 and 65535"))


def validate(resource, obj, strict):
    """Raises Invalid when the API server would refuse `obj` as `resource`."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = meta.get("name", "")
    if strict:
        unknown = strict_fields(obj)
        if unknown:
            raise Invalid(resource.kind, name, [("", "strict decoding error: " + ", ".join(unknown))], strict=True)
    causes = []
    pattern = DNS_LABEL if resource.name in ("namespaces", "services") else DNS_SUBDOMAIN
    if not isinstance(meta.get("generateName", ""), str):
        causes.append(("metadata.generateName", "Invalid value: must be a string"))
    if not isinstance(name, str) or not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif not pattern.match(name) or len(name) > 253:
        causes.append(("metadata.name", 'Invalid value: "%s": a lowercase RFC 1123 %s must consist of lower case '
                                        'alphanumeric characters, \'-\' or \'.\'' % (name, "label" if pattern is DNS_LABEL else "subdomain")))
    check_labels(meta.get("labels"), "metadata.labels", causes)
    if meta.get("annotations") is not None and not (isinstance(meta["annotations"], dict) and
                                                    all(isinstance(v, str) for v in meta["annotations"].values())):
        causes.append(("metadata.annotations", "Invalid value: must be a map of strings"))
    check_kind(obj, causes)
    if causes:
        raise Invalid(resource.kind, name, causes)


# --- tables ---------------------------------------------------------------------------------------

def age(created, now):
    """Kubernetes' HumanDuration of the time since `created` (RFC 3339)."""
    try:
        then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return "<unknown>"
    s = int(max(now - then, 0))
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    return "%dd" % (h // 24)


def pod_status(pod):
    """The STATUS column of `kubectl get pods`, computed as kubectl's printer does."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    running = False
    for c in reversed(status.get("containerStatuses") or []):
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            reason = "ExitCode:%d" % state["terminated"].get("exitCode", 0)
        elif "running" in state and c.get("ready"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def node_roles(node):
    labels = node["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1])
    return ",".join(roles) or "<none>"


def node_status(node):
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    text = "Ready" if ready.get("status") == "True" else "NotReady"
    return text + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def column(name, kind="string", priority=0, fmt=""):
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


def pod_row(p, now):
    statuses = (p.get("status") or {}).get("containerStatuses") or []
    containers = (p.get("spec") or {}).get("containers") or []
    return ["%d/%d" % (sum(1 for c in statuses if c.get("ready")), len(containers)), pod_status(p),
            sum(c.get("restartCount", 0) for c in statuses), age(p["metadata"].get("creationTimestamp"), now),
            (p.get("status") or {}).get("podIP") or "<none>", (p.get("spec") or {}).get("nodeName") or "<none>",
            "<none>", "<none>"]


def node_row(n, now):
    status = n.get("status") or {}
    ip = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "<none>")
    info = status.get("nodeInfo") or {}
    return [node_status(n), node_roles(n), age(n["metadata"].get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            ip, "<none>", info.get("osImage", ""), info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def deployment_row(d, now):
    status, spec = d.get("status") or {}, d.get("spec") or {}
    return ["%d/%d" % (status.get("readyReplicas", 0), spec.get("replicas", 1)), status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0), age(d["metadata"].get("creationTimestamp"), now)]


TABLES = {
    "Pod": ([column("Ready"), column("Status"), column("Restarts", "string"), column("Age"), column("IP", priority=1),
             column("Node", priority=1), column("Nominated Node", priority=1), column("Readiness Gates", priority=1)], pod_row),
    "Node": ([column("Status"), column("Roles"), column("Age"), column("Version"), column("Internal-IP", priority=1),
              column("External-IP", priority=1), column("OS-Image", priority=1), column("Kernel-Version", priority=1),
              column("Container-Runtime", priority=1)], node_row),
    "Deployment": ([column("Ready"), column("Up-to-date", "integer"), column("Available", "integer"), column("Age")],
                   deployment_row),
}


def table(kind, objects, resource_version, now=None):
    now = time.time() if now is None else now
    columns, row = TABLES.get(kind, ([column("Age")], lambda o, t: [age(o["metadata"].get("creationTimestamp"), t)]))
    rows = [{"cells": [o["metadata"]["name"]] + row(o, now),
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
            for o in objects]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": [column("Name", fmt="name")] + columns, "rows": rows}
