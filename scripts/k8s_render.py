"""Renders a kustomization the way `kustomize build` does, for the subset of kustomize that
deploy/kubernetes/ uses, so CI can check the manifests where neither kustomize nor a
kubectl that embeds it can be installed (Debian packages neither with it; PyPI has none).

The subset: `resources` (files and directories holding a kustomization), `namespace`,
`images`, `configMapGenerator` (`envs`, `literals`, `behavior`, `options`) with kustomize's
content-hash name suffix and the references to it, and `patches` holding JSON 6902
operations with a `target`. Any other field stops the render with an error, so a
kustomization that outgrows this file fails CI instead of rendering wrong. Where a real
kustomize is at hand (`kubectl kustomize`), scripts/k8s_check.py compares the two outputs.
"""

import copy
import hashlib
import json
import os

import yaml

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "patches",
}
GENERATOR_FIELDS = {"name", "envs", "literals", "behavior", "options"}
PATCH_FIELDS = {"target", "patch", "path"}
TARGET_FIELDS = {"group", "version", "kind", "name", "namespace"}

# Kinds that live outside namespaces among those a kustomization like ours may hold.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "ClusterTriggerAuthentication",
}


# Marks a generated ConfigMap whose name gets the content hash once the render is complete.
HASH_MARK = "__kustomize_hash_suffix__"


class RenderError(Exception):
    pass


def load_yaml_documents(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def render(directory):
    """The objects `kustomize build directory` outputs (order aside)."""
    objects = render_tree(directory)
    # kustomize's hash suffix goes on last, over the final content (an overlay may merge
    # into a base's ConfigMap), and every reference to the generated name follows it.
    renamed = {}
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "ConfigMap" and meta.pop(HASH_MARK, False):
            old = meta["name"]
            meta["name"] = f"{old}-{config_map_hash(obj)}"
            renamed[old] = meta["name"]
    if renamed:
        for obj in objects:
            rename_config_map_references(obj, renamed)
    return objects


def render_tree(directory):
    """A kustomization's objects, generated ConfigMaps still under their own names."""
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(path):
        raise RenderError(f"{directory}: no kustomization.yaml")
    (kustomization,) = load_yaml_documents(path)
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{path}: kind must be Kustomization")

    objects = []
    for entry in kustomization.get("resources", []):
        target = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(target):
            objects.extend(render_tree(target))
        elif os.path.isfile(target):
            objects.extend(load_yaml_documents(target))
        else:
            raise RenderError(f"{path}: resource {entry} does not exist")

    for generator in kustomization.get("configMapGenerator", []):
        apply_config_map_generator(objects, generator, directory, path)

    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace

    for image in kustomization.get("images", []):
        apply_image(objects, image)

    for patch in kustomization.get("patches", []):
        apply_patch(objects, patch, directory, path)
    return objects


# --- configMapGenerator ---


def read_env_file(path):
    """KEY=VALUE lines; blank lines and lines starting with # are skipped (kustomize's rules)."""
    data = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise RenderError(f"{path}:{number}: not KEY=VALUE: {line!r}")
            key, value = line.split("=", 1)
            data[key] = value
    return data


def apply_config_map_generator(objects, generator, directory, path):
    unknown = set(generator) - GENERATOR_FIELDS
    if unknown:
        raise RenderError(f"{path}: configMapGenerator fields not implemented: {sorted(unknown)}")
    data = {}
    for env in generator.get("envs", []):
        data.update(read_env_file(os.path.join(directory, env)))
    for literal in generator.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    options = generator.get("options", {})
    if set(options) - {"disableNameSuffixHash"}:
        raise RenderError(f"{path}: configMapGenerator options not implemented: {options}")
    behavior = generator.get("behavior", "create")
    name = generator["name"]
    existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    if behavior == "create":
        if existing:
            raise RenderError(f"{path}: ConfigMap {name} exists already (use behavior: merge)")
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    HASH_MARK: not options.get("disableNameSuffixHash", False),
                },
                "data": data,
            }
        )
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise RenderError(f"{path}: behavior {behavior} needs one ConfigMap {name} below")
        if behavior == "merge":
            existing[0].setdefault("data", {}).update(data)
        else:
            existing[0]["data"] = data
    else:
        raise RenderError(f"{path}: unknown behavior {behavior}")


def config_map_hash(obj):
    """kustomize's name suffix (api/hasher): SHA-256 of Go's json.Marshal of kind, name and
    data (keys sorted, compact, <, > and & escaped), first ten hex digits with 0, 1, 3, a and
    e replaced so that no word can be spelled. The name kustomize 5 hashes is empty (a
    generated object's name is kept aside while it builds): measured against
    `kubectl kustomize` (kustomize v5.5.0), which scripts/k8s_check.py compares with."""
    encoded = json.dumps(
        {"data": obj.get("data", {}), "kind": "ConfigMap", "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(char, escaped)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def pod_specs(obj):
    """The pod specs inside a workload object."""
    spec = obj.get("spec", {})
    if obj["kind"] == "Pod":
        yield spec
    elif obj["kind"] == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif "template" in spec:
        yield spec["template"].get("spec", {})


def containers(obj):
    for spec in pod_specs(obj):
        for key in ("initContainers", "containers"):
            yield from spec.get(key, [])


def rename_config_map_references(obj, renamed):
    for spec in pod_specs(obj):
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"].get("name") in renamed:
                volume["configMap"]["name"] = renamed[volume["configMap"]["name"]]
    for container in containers(obj):
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref and ref.get("name") in renamed:
                ref["name"] = renamed[ref["name"]]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref.get("name") in renamed:
                ref["name"] = renamed[ref["name"]]


# --- images ---


def split_image(image):
    """(name, tag or digest suffix) of an image reference."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def apply_image(objects, image):
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise RenderError(f"images entry not implemented: {image}")
    for obj in objects:
        for container in containers(obj):
            name, suffix = split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            if "digest" in image:
                suffix = "@" + image["digest"]
            elif "newTag" in image:
                suffix = ":" + str(image["newTag"])
            container["image"] = image.get("newName", name) + suffix


# --- patches (JSON 6902) ---


def matches(obj, target):
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    return all(checks[field] == value for field, value in target.items())


def apply_patch(objects, patch, directory, path):
    if set(patch) - PATCH_FIELDS or "target" not in patch:
        raise RenderError(f"{path}: only JSON 6902 patches with a target are implemented")
    target = patch["target"]
    if set(target) - TARGET_FIELDS:
        raise RenderError(f"{path}: target selectors not implemented: {target}")
    if "path" in patch:
        with open(os.path.join(directory, patch["path"]), encoding="utf-8") as f:
            operations = yaml.safe_load(f)
    else:
        operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise RenderError(f"{path}: a patch must be a list of JSON 6902 operations")
    hits = [obj for obj in objects if matches(obj, target)]
    if not hits:
        raise RenderError(f"{path}: patch target {target} matches no object")
    for obj in hits:
        for operation in operations:
            apply_operation(obj, operation, path)


def pointer(path):
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_operation(obj, operation, path):
    op = operation.get("op")
    *parents, last = pointer(operation["path"])
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op in ("add", "replace"):
        value = copy.deepcopy(operation["value"])
        if isinstance(node, list):
            if last == "-":
                node.append(value)
            elif op == "add":
                node.insert(int(last), value)
            else:
                node[int(last)] = value
        else:
            if op == "replace" and last not in node:
                raise RenderError(f"{path}: replace of missing {operation['path']}")
            node[last] = value
    elif op == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        raise RenderError(f"{path}: JSON 6902 op {op!r} not implemented")
