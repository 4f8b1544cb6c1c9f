# The patch formats of the SIMULATED API server (see simk8s.py), as Kubernetes applies them:
# strategic merge (what `kubectl apply`, `taint`, `cordon` and `drain` send), JSON merge (RFC 7386: what
# `kubectl label` and `annotate` send) and JSON patch (RFC 6902: `kubectl patch --type=json`).
# Strategic merge knows the merge keys and strategies of the Go types' struct tags for the kinds served
# (MERGE_KEYS); a list it does not know is replaced whole, as for a field without a patch strategy.
import copy


class PatchError(Exception):
    """A patch that cannot be applied: the API answers 422 (or 400 for a malformed one)."""


# Field name -> merge key, from the `patchMergeKey` tags of core/v1, apps/v1 and meta/v1. `ports` is
# a container's (by containerPort) or a service's (by port): MERGE_KEYS_IN_CONTAINER decides.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "imagePullSecrets": "name", "hostAliases": "ip", "env": "name", "volumeMounts": "mountPath",
    "volumeDevices": "devicePath", "ownerReferences": "uid", "conditions": "type", "addresses": "type",
    "ports": "port", "topologySpreadConstraints": "topologyKey",
}
MERGE_KEYS_IN_CONTAINER = {"ports": "containerPort"}
# Lists of scalars merged as sets (`patchStrategy:"merge"` on a []string).
MERGED_SCALAR_LISTS = {"finalizers", "podCIDRs"}
CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def merge_key(field, in_container):
    if in_container and field in MERGE_KEYS_IN_CONTAINER:
        return MERGE_KEYS_IN_CONTAINER[field]
    return MERGE_KEYS.get(field)


def strategic(original, patch, in_container=False):
    """`original` with the strategic merge patch `patch` applied (neither is modified)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object, not %s" % type(patch).__name__)
    if not isinstance(original, dict):
        original = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return {}
    if directive is not None:
        raise PatchError("unknown patch type: %r in map" % directive)
    result = copy.deepcopy(original)
    orders = {}
    for key, value in patch.items():
        if key.startswith("$") and key != "$patch" and not isinstance(value, list):
            raise PatchError("%s must be a list, not %s" % (key, type(value).__name__))
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in (value or [])]
        elif key == "$retainKeys":
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = strategic(result[key], value, key in CONTAINER_LISTS or in_container)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = merge_list(key, result[key], value, in_container)
        elif isinstance(value, list):
            result[key] = [strip_directives(v) for v in value if not is_delete(v)]
        else:
            result[key] = strip_directives(value)
    if "$retainKeys" in patch:
        keep = set(k for k in patch["$retainKeys"] if isinstance(k, str))
        unlisted = sorted(k for k in patch if not k.startswith("$") and k not in keep)
        if unlisted:
            raise PatchError("doesn't match the $retainKeys directive: %s are not listed" % ", ".join(unlisted))
        result = {k: v for k, v in result.items() if k in keep}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = reorder(field, result[field], order, in_container)
    return result


def is_delete(item):
    return isinstance(item, dict) and item.get("$patch") == "delete"


def merge_list(field, original, patch, in_container):
    key = merge_key(field, in_container)
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if field in MERGED_SCALAR_LISTS and all(not isinstance(i, (dict, list)) for i in patch):
        return original + [i for i in patch if i not in original]
    if key is None or not all(isinstance(i, dict) for i in original + patch):
        return [strip_directives(i) for i in patch if not is_delete(i)]
    result = [copy.deepcopy(i) for i in original]
    child_in_container = in_container or field in CONTAINER_LISTS
    for item in patch:
        if key not in item:
            raise PatchError("map: %s does not contain declared merge key: %s" % (item, key))
        at = next((n for n, o in enumerate(result) if o.get(key) == item[key]), None)
        if is_delete(item):
            if at is not None:
                del result[at]
        elif at is None:
            result.append(strip_directives(item))
        else:
            result[at] = strategic(result[at], item, child_in_container)
    return result


def reorder(field, items, order, in_container):
    """`$setElementOrder`: the listed elements in the patch's order, the others after them as they were."""
    key = merge_key(field, in_container)
    ident = (lambda i: i.get(key) if isinstance(i, dict) else None) if key else (lambda i: i)
    wanted = [ident(o) if key else o for o in order or []]
    listed = sorted((i for i in items if ident(i) in wanted), key=lambda i: wanted.index(ident(i)))
    return listed + [i for i in items if ident(i) not in wanted]


def strip_directives(value):
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [strip_directives(v) for v in value if not is_delete(v)]
    return value


def merge(original, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def json_patch(document, operations):
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise PatchError("a JSON patch operation needs \"op\" and \"path\": %r" % (op,))
        kind, path = op["op"], op["path"]
        if kind == "test":
            if not same(resolve(doc, path), op.get("value")):
                raise PatchError("testing value %s failed" % path)
        elif kind == "remove":
            doc = remove(doc, path)
        elif kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError("%s operation does not apply: missing value for %s" % (kind, path))
            if kind == "replace":
                resolve(doc, path)
                doc = remove(doc, path)
            doc = add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if not isinstance(op.get("from"), str):
                raise PatchError("%s operation needs \"from\"" % kind)
            value = copy.deepcopy(resolve(doc, op["from"]))
            if kind == "move":
                doc = remove(doc, op.get("from", ""))
            doc = add(doc, path, value)
        else:
            raise PatchError("unexpected operation %r" % kind)
    return doc


def same(a, b):
    """JSON equality: `true` is not `1`, nor `1.0` a string."""
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                       and not isinstance(a, bool) and not isinstance(b, bool)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def index(part):
    """An array index of a JSON pointer: digits, no leading zero."""
    return part.isdigit() and (part == "0" or not part.startswith("0"))


def pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("JSON pointer %r must start with /" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def step(node, part, path):
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and index(part) and int(part) < len(node):
        return node[int(part)]
    raise PatchError("doc is missing path: %s" % path)


def resolve(doc, path):
    node = doc
    for part in pointer(path):
        node = step(node, part, path)
    return node


def add(doc, path, value):
    parts = pointer(path)
    if not parts:
        return value
    parent = doc
    for part in parts[:-1]:
        parent = step(parent, part, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or (index(last) and int(last) <= len(parent))):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise PatchError("add operation does not apply: doc is missing path: %s" % path)
    return doc


def remove(doc, path):
    parts = pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = resolve(doc, "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts[:-1])) \
        if len(parts) > 1 else doc
    step(parent, parts[-1], path)
    if isinstance(parent, dict):
        del parent[parts[-1]]
    else:
        del parent[int(parts[-1])]
    return doc
