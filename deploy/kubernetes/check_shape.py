"""Checks what the schema cannot: that each manifest in deploy/kubernetes has the shape its
comments promise (replicas, probes, secrets, security context, the store in servers.json).
Writes each ConfigMap's servers.json to OUT_DIR/<manifest>.servers.json for `mcp-authd check`.

Usage: check_shape.py OUT_DIR postgres.yaml file-store.yaml
"""

import json
import os
import sys

import yaml


def fail(path, message):
    sys.exit(f"FAIL: {path}: {message}")


def by_kind(docs):
    kinds = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def container(path, workload):
    pod = workload["spec"]["template"]["spec"]
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        fail(path, "the pod does not require a non-root user")
    (main,) = pod["containers"]
    security = main.get("securityContext", {})
    for key, want in [
        ("readOnlyRootFilesystem", True),
        ("allowPrivilegeEscalation", False),
        ("runAsNonRoot", True),
    ]:
        if security.get(key) is not want:
            fail(path, f"container securityContext.{key} is not {want}")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        fail(path, "the container keeps capabilities")
    for probe, route in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")]:
        if main.get(probe, {}).get("httpGet", {}).get("path") != route:
            fail(path, f"{probe} does not ask {route}")
    if pod.get("terminationGracePeriodSeconds", 30) <= 30:
        fail(path, "terminationGracePeriodSeconds leaves no room for the 30 s drain")
    return main


def secret_env(main):
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in main.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def servers_json(path, kinds):
    (config_map,) = kinds["ConfigMap"]
    return json.loads(config_map["data"]["servers.json"])["serverAuth"]["oauthAs"]


def check_postgres(path, kinds):
    (deployment,) = kinds["Deployment"]
    if deployment["spec"]["replicas"] < 2:
        fail(path, "fewer than 2 replicas")
    main = container(path, deployment)
    env = secret_env(main)
    if env.get("MCP_AUTH_JWT_SECRET") != "jwtSecret" or env.get("MCP_AUTH_DATABASE_URL") != "databaseUrl":
        fail(path, f"the secrets do not come from the Secret: {env}")
    (secret,) = kinds["Secret"]
    if set(secret["stringData"]) != {"jwtSecret", "databaseUrl"}:
        fail(path, "the Secret does not hold jwtSecret and databaseUrl")
    if not kinds.get("PodDisruptionBudget"):
        fail(path, "no PodDisruptionBudget")
    if not kinds.get("Service"):
        fail(path, "no Service")
    oauth_as = servers_json(path, kinds)
    if oauth_as.get("store") != {"type": "postgres", "url": "${MCP_AUTH_DATABASE_URL}"}:
        fail(path, f"servers.json store is {oauth_as.get('store')}")
    if oauth_as.get("jwtSecret") != "${MCP_AUTH_JWT_SECRET}":
        fail(path, "servers.json holds a literal jwtSecret")


def check_file_store(path, kinds):
    (stateful_set,) = kinds["StatefulSet"]
    spec = stateful_set["spec"]
    # One pod at most on the volume: a StatefulSet never runs two pods of one ordinal.
    if spec["replicas"] != 1:
        fail(path, "the file store is single-writer: replicas must be 1")
    if spec.get("podManagementPolicy", "OrderedReady") != "OrderedReady":
        fail(path, "podManagementPolicy must stay OrderedReady")
    claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
    main = container(path, stateful_set)
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    if "data" not in claims or mounts.get("data") != "/data":
        fail(path, "the state volume is not claimed and mounted at /data")
    env = {e["name"]: e.get("value") for e in main["env"]}
    if env.get("MCP_AUTH_SERVER_PATH") != "/data/auth_server.json":
        fail(path, "the state file is not on the volume")
    if secret_env(main).get("MCP_AUTH_JWT_SECRET") != "jwtSecret":
        fail(path, "the JWT secret does not come from the Secret")
    if "store" in servers_json(path, kinds):
        fail(path, "the file store needs no store setting")


def main():
    out_dir, paths = sys.argv[1], sys.argv[2:]
    checks = {"postgres.yaml": check_postgres, "file-store.yaml": check_file_store}
    for path in paths:
        name = os.path.basename(path)
        with open(path) as f:
            kinds = by_kind([d for d in yaml.safe_load_all(f) if d])
        checks[name](path, kinds)
        with open(os.path.join(out_dir, name.replace(".yaml", ".servers.json")), "w") as f:
            json.dump({"serverAuth": {"oauthAs": servers_json(path, kinds)}}, f)
        print(f"ok: {path}")


if __name__ == "__main__":
    main()
