"""Checks deploy/kubernetes/ offline: renders each kustomization (k8s_render.py; compared
with `kubectl kustomize` where a kubectl is installed) and validates every object it yields.

- Kubernetes' own kinds: kubernetes-validate's schemas of the cluster version given, strict
  (a field the API does not know is an error, as with `kubectl apply --validate=strict`).
- KEDA's ScaledObject and TriggerAuthentication: the JSON Schema of cloudcoil-models-keda's
  models (generated from KEDA's CRDs), made strict the same way; then a hand check of what
  the CRD leaves to the scaler (the redis scaler's metadata and auth parameters, read from
  KEDA's pkg/scalers/redis_scaler.go).
- References between objects: every Secret, ConfigMap, scale target and authentication a
  manifest names exists in the render or is the Secret the user provides; selectors match
  their pods' labels; every pod meets the "restricted" Pod Security Standard.

Prints one line per finding and `k8s-check: PASS` or `FAIL`; exits 1 on FAIL.
Usage: k8s_check.py KUBERNETES_VERSIONS KUSTOMIZATION_DIR... (versions comma-separated)
"""

import json
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

import k8s_render

# The Secret the user creates (README.md, "Run on Kubernetes"); a base never holds it.
USER_SECRET = "iptrack-secrets"
# The redis scaler's parameters (KEDA pkg/scalers/redis_scaler.go, redisMetadata and
# redisConnectionInfo): trigger metadata, and the parameters an authentication may supply.
REDIS_TRIGGER_METADATA = {
    "listName", "listLength", "activationListLength", "databaseIndex", "enableTLS",
    "unsafeSsl", "address", "addresses", "host", "hosts", "port", "ports", "username",
    "password", "usernameFromEnv", "passwordFromEnv", "addressFromEnv", "hostFromEnv",
    "portFromEnv",
}
REDIS_AUTH_PARAMETERS = {
    "address", "addresses", "host", "hosts", "port", "ports", "username", "password",
    "tls", "ca", "cert", "key", "keyPassword",
}
KEDA_KINDS = {"ScaledObject": keda.ScaledObject, "TriggerAuthentication": keda.TriggerAuthentication}

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}")


def name_of(obj):
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '')}/{meta.get('name')}"


def identity(obj):
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def strict(schema):
    """Forbids properties a schema does not list (the API server's strict validation)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


KEDA_SCHEMAS = {
    kind: strict(model.model_json_schema(by_alias=True, mode="validation"))
    for kind, model in KEDA_KINDS.items()
}


def compare_with_kubectl(directory, objects):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print(f"note {directory}: no kubectl here; rendered by k8s_render.py alone")
        return
    out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if out.returncode != 0:
        fail(directory, f"kubectl kustomize failed: {out.stderr.strip()}")
        return
    reference = {identity(o): o for o in yaml.safe_load_all(out.stdout) if o}
    mine = {identity(o): o for o in objects}
    if reference != mine:
        for key in sorted(set(reference) | set(mine)):
            if reference.get(key) != mine.get(key):
                fail(directory, f"k8s_render.py and kubectl kustomize differ on {key}")
    else:
        print(f"ok   {directory}: k8s_render.py renders what kubectl kustomize does ({len(mine)} objects)")


def validate_object(directory, obj, version):
    where = f"{directory} {name_of(obj)} (Kubernetes {version})"
    if obj["kind"] in KEDA_SCHEMAS:
        try:
            jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])
        except jsonschema.ValidationError as e:
            fail(where, f"{'.'.join(map(str, e.path))}: {e.message}")
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(where, f"{'.'.join(map(str, e.path))}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        fail(where, "no schema for this kind")


def check_keda(directory, objects):
    """The hand check of what KEDA's CRD leaves open: the redis scaler's own parameters."""
    auths = {o["metadata"]["name"]: o for o in objects if o["kind"] == "TriggerAuthentication"}
    targets = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    for obj in (o for o in objects if o["kind"] == "ScaledObject"):
        where = f"{directory} {name_of(obj)}"
        failed_before = len(failures)
        if obj["spec"]["scaleTargetRef"]["name"] not in targets:
            fail(where, "scaleTargetRef names no Deployment of the render")
        for trigger in obj["spec"]["triggers"]:
            if trigger["type"] != "redis":
                continue
            metadata = trigger.get("metadata", {})
            for key in set(metadata) - REDIS_TRIGGER_METADATA:
                fail(where, f"redis trigger metadata {key!r} is not a redis scaler parameter")
            if not metadata.get("listName"):
                fail(where, "redis trigger without listName")
            if not str(metadata.get("listLength", "5")).isdigit():
                fail(where, "listLength must be a whole number (a string)")
            ref = trigger.get("authenticationRef", {}).get("name")
            if ref is None:
                continue
            if ref not in auths:
                fail(where, f"authenticationRef {ref} is not in the render")
                continue
            for item in auths[ref]["spec"].get("secretTargetRef", []):
                if item["parameter"] not in REDIS_AUTH_PARAMETERS:
                    fail(where, f"auth parameter {item['parameter']!r} is not a redis scaler parameter")
        if len(failures) == failed_before:
            print(f"ok   {where}: redis trigger parameters (hand check against KEDA's redis scaler)")


def check_references(directory, objects):
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"} | {USER_SECRET}
    workloads = [o for o in objects if o["kind"] in ("Deployment", "Job")]
    for obj in workloads:
        where = f"{directory} {name_of(obj)}"
        template = obj["spec"]["template"]
        labels = template["metadata"].get("labels", {})
        selector = obj["spec"].get("selector", {}).get("matchLabels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            fail(where, "selector does not match the pod template's labels")
        pod = template["spec"]
        pod_security = pod.get("securityContext", {})
        for container in pod["containers"]:
            ctx = container.get("securityContext", {})
            restricted = (
                pod_security.get("runAsNonRoot") is True
                and pod_security.get("runAsUser") == 10001
                and pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
                and ctx.get("allowPrivilegeEscalation") is False
                and ctx.get("capabilities", {}).get("drop") == ["ALL"]
                and ctx.get("readOnlyRootFilesystem") is True
            )
            if not restricted:
                fail(where, f"container {container['name']}: not restricted (non-root 10001, "
                     "RuntimeDefault seccomp, no escalation, no capabilities, read-only root)")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                    fail(where, f"container {container['name']}: no cpu and memory {kind}")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref and ref not in config_maps:
                    fail(where, f"envFrom names ConfigMap {ref}, which is not in the render")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets:
                    fail(where, f"{env['name']} comes from Secret {ref['name']}, which is not in the render")
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("labels", {}) for o in workloads
    }
    for obj in objects:
        where = f"{directory} {name_of(obj)}"
        if obj["kind"] in ("Service", "PodDisruptionBudget"):
            spec = obj["spec"]
            selector = spec["selector"] if obj["kind"] == "Service" else spec["selector"]["matchLabels"]
            if not any(all(l.get(k) == v for k, v in selector.items()) for l in pods.values()):
                fail(where, "selects no pod of the render")
        if obj["kind"] == "HorizontalPodAutoscaler" and obj["spec"]["scaleTargetRef"]["name"] not in pods:
            fail(where, "scaleTargetRef names no workload of the render")


def main():
    versions, directories = sys.argv[1].split(","), sys.argv[2:]
    for directory in directories:
        try:
            objects = k8s_render.render(directory)
        except (k8s_render.RenderError, OSError, KeyError, yaml.YAMLError) as e:
            fail(directory, f"cannot render: {e}")
            continue
        compare_with_kubectl(directory, objects)
        for version in versions:
            for obj in objects:
                validate_object(directory, obj, version)
        check_keda(directory, objects)
        check_references(directory, objects)
        kinds = sorted({o["kind"] for o in objects})
        print(f"ok   {directory}: {len(objects)} objects checked against Kubernetes {' and '.join(versions)} ({', '.join(kinds)})")
    print("k8s-check: FAIL" if failures else "k8s-check: PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
