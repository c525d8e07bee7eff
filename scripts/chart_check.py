#!/usr/bin/env python3
"""Validates and checks the rendered Helm chart; run by scripts/chart-check.

scripts/chart-check renders the chart into --out (default.yaml, scoped.yaml,
configured.yaml, deploy.yaml, and helm3-*.yaml when Helm 3 ran); this script

  * validates every rendered object (and the CRDs) against the Kubernetes 1.37
    schemas with kubernetes-validate, skipping kinds it does not know;
  * asserts what the chart promises: hardened pods, probes, environment,
    least-privilege RBAC, the optional objects of each value set;
  * checks that the chart's CRD templates render each file of crds/ (the
    CRDs the code generates) with the chart's labels and the keep
    annotation, with their CEL rules for Kubernetes 1.30 and without them
    for 1.20, that the PodDisruptionBudget is policy/v1 on 1.30 and
    policy/v1beta1 on 1.20 and that nothing else differs between the two;
  * checks that the examples validate against the CRDs and that
    deploy/metastudio-operator.yaml equals a fresh render (without CRDs);
  * validates the broker client example (deploy/broker-client/) against the
    Kubernetes schemas and checks that it matches the chart's broker (its
    Service, audience) and the example MetaStudioConnection;
  * checks the PrometheusRule and the dashboard ConfigMap (monitoring*.yaml)
    against deploy/prometheus/ and deploy/grafana/;
  * runs deploy/argocd/health.lua against sample ActivationCodes (with lupa,
    when it is installed).

It prints every failure (what and where) and exits 1 when there was one.
"""

import argparse
import dataclasses
import difflib
import json
import os
import re
import sys

import yaml

K8S_VERSION = "1.37.0"
RELEASE = "metastudio-operator"
NAMESPACE = "metastudio-system"
GROUP = "metastudio.huaweicloud.com"
WATCHED = ["team-a", "team-b"]

failures = []
notes = []


def check(ok, where, what):
    if not ok:
        failures.append(f"{where}: {what}")
    return ok


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def ident(obj):
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


def of_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


# --- validation against the Kubernetes schemas


def crd_files(directory="crds"):
    """The CRD files the code generates (crds/*.yaml), sorted."""
    return [os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".yaml")]


def validate(renders, crd_paths, extra=(), version=K8S_VERSION):
    """Validates the renders, the CRDs and `extra` ((where, object) pairs, e.g. examples) against the schemas of
    Kubernetes `version`."""
    import kubernetes_validate

    validated, skipped = {}, {}
    targets = [(name, o) for name, objs in renders.items() for o in objs]
    targets += [(path, o) for path in crd_paths for o in load(path)]
    targets += list(extra)
    for where, obj in targets:
        kind = obj.get("kind", "?")
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            validated[kind] = validated.get(kind, 0) + 1
        except kubernetes_validate.SchemaNotFoundError:
            skipped[kind] = skipped.get(kind, 0) + 1
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{where}: {ident(obj)} is not a valid Kubernetes {version} object: {e.message}"
                            f" (at {'/'.join(str(p) for p in e.path)})")
        except kubernetes_validate.InvalidSchemaError as e:
            failures.append(f"{where}: {ident(obj)}: kubernetes-validate could not validate it: {e}")
    total = sum(validated.values())
    summary = ", ".join(f"{k} {n}" for k, n in sorted(validated.items()))
    print(f"validated {total} objects against Kubernetes {version} (strict): {summary}")
    if skipped:
        print("skipped (no schema for these kinds): " + ", ".join(f"{k} {n}" for k, n in sorted(skipped.items())))
    check(total > 0, "validation", "nothing was validated")
    check(set(skipped) <= {"ServiceMonitor", "Certificate", "Kustomization"}, "validation",
          f"unexpected kinds without a schema: {sorted(skipped)}")


# --- the operator's pods


def container_env(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_deployment(name, objs):
    deployments = of_kind(objs, "Deployment")
    if not check(len(deployments) == 1, name, f"expected one Deployment, found {len(deployments)}"):
        return None
    d = deployments[0]
    where = f"{name}: {ident(d)}"
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot is not true")
    check(psc.get("runAsUser") == 65532, where, "pod securityContext.runAsUser is not 65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, "pod seccompProfile is not RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is True, where, "automountServiceAccountToken is not true")
    check(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where, "uses host namespaces")
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    check(len(pod.get("containers", [])) == 1, where, "expected exactly one container")
    for c in containers:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext", {})
        check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, cw, "runAsNonRoot is not true")
        check(sc.get("runAsUser", psc.get("runAsUser")) == 65532, cw, "runAsUser is not 65532")
        check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem is not true")
        check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation is not false")
        check(sc.get("privileged") in (None, False), cw, "is privileged")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], cw, "capabilities.drop is not [ALL]")
        check(not sc.get("capabilities", {}).get("add"), cw, "adds capabilities")
        check(sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault", cw,
              "seccompProfile is not RuntimeDefault")
        check(c.get("args") == ["run"], cw, f"args are {c.get('args')}, expected [run]")
        ports = {p.get("name"): p for p in c.get("ports", [])}
        check(ports.get("metrics", {}).get("containerPort") == 8080, cw, "no port metrics=8080")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            check(get.get("path") == path and get.get("port") in ("metrics", 8080), cw,
                  f"{probe} is not GET {path} on the metrics port: {c.get(probe)}")
        res = c.get("resources", {})
        check(bool(res.get("requests")) and bool(res.get("limits")), cw, "resources requests/limits missing")
        env = container_env(c)
        for e in c.get("env", []):
            check("value" in e or "valueFrom" in e, cw, f"env {e['name']} has neither value nor valueFrom")
            check(e.get("value", "x") != "", cw, f"env {e['name']} is set to an empty string")
        check(len(env) == len(c.get("env", [])), cw, "duplicate env names")
        for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            check(env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field, cw,
                  f"{var} is not from the downward API ({field})")
    return d


def expect_env(name, d, expected, absent=()):
    (c,) = d["spec"]["template"]["spec"]["containers"]
    env = container_env(c)
    for var, value in expected.items():
        check(env.get(var, {}).get("value") == value, f"{name}: {ident(d)}",
              f"env {var} is {env.get(var, {}).get('value')!r}, expected {value!r}")
    for var in absent:
        check(var not in env, f"{name}: {ident(d)}", f"env {var} should not be set")
    return env


def check_credentials_env(name, d, secret):
    (c,) = d["spec"]["template"]["spec"]["containers"]
    env = container_env(c)
    expected = {
        "CLOUD_SDK_AK": ("accessKey", None),
        "CLOUD_SDK_SK": ("secretKey", None),
        "CLOUD_SDK_SECURITY_TOKEN": ("securityToken", True),
    }
    for var, (key, optional) in expected.items():
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("name") == secret and ref.get("key") == key and ref.get("optional") == optional,
              f"{name}: {ident(d)}", f"env {var} is not secretKeyRef {secret}/{key} (optional={optional}): {ref}")


def check_scheduling(name, d, *, grace, anti_affinity, spread):
    """Shutdown timing and how replicas spread over nodes."""
    where = f"{name}: {ident(d)}"
    pod = d["spec"]["template"]["spec"]
    check(pod.get("terminationGracePeriodSeconds") == grace, where,
          f"terminationGracePeriodSeconds is {pod.get('terminationGracePeriodSeconds')}, expected {grace}")
    (c,) = pod["containers"]
    drain = container_env(c).get("SHUTDOWN_TIMEOUT", {}).get("value", "")
    check(drain.endswith("s") and drain[:-1].isdigit() and int(drain[:-1]) + 10 <= grace, where,
          f"SHUTDOWN_TIMEOUT {drain!r} does not leave 10 s of terminationGracePeriodSeconds {grace} to release the lease")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    selector = {"matchLabels": d["spec"]["selector"]["matchLabels"]}
    if anti_affinity == "preferred":
        terms = [t.get("podAffinityTerm", {}) for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
        check(not anti.get("requiredDuringSchedulingIgnoredDuringExecution"), where, "anti-affinity is required, not preferred")
    elif anti_affinity == "required":
        terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    else:
        terms = []
        check(not pod.get("affinity"), where, f"affinity is set although podAntiAffinity is none: {pod.get('affinity')}")
    if anti_affinity:
        check(any(t.get("topologyKey") == "kubernetes.io/hostname" and t.get("labelSelector") == selector for t in terms),
              where, f"no {anti_affinity} pod anti-affinity on kubernetes.io/hostname for the operator's pods: {anti}")
    constraints = pod.get("topologySpreadConstraints", [])
    if spread:
        check(bool(constraints) and all(t.get("labelSelector") == selector for t in constraints), where,
              f"topologySpreadConstraints do not select the operator's pods: {constraints}")
    else:
        check(not constraints, where, f"unexpected topologySpreadConstraints: {constraints}")


# --- RBAC


def rules_of(objs):
    """(object, rule) for every rule of every Role and ClusterRole."""
    return [(o, r) for o in objs if o.get("kind") in ("Role", "ClusterRole") for r in o.get("rules", [])]


RULES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "metastudio-operator", "rbac",
                          "operator-rules.yaml")


@dataclasses.dataclass
class Rules:
    """The RBAC the operator needs, by section of rbac/operator-rules.yaml, each as {(apiGroup, resource): verbs}."""

    # `rules`: in the operator's ClusterRole, or its Role in each watched namespace.
    namespaced: dict = dataclasses.field(default_factory=dict)
    # `clusterRules`: in the <fullname>-cluster ClusterRole, always.
    cluster: dict = dataclasses.field(default_factory=dict)
    # `connectionSecrets`: in a Role in the release namespace when watchNamespaces leaves it out.
    connection_secrets: dict = dataclasses.field(default_factory=dict)
    # `leases`: the verbs of the leader-election Role.
    lease_verbs: set = dataclasses.field(default_factory=set)
    # `broker`: the once-code broker's ClusterRole, when broker.enabled.
    broker: dict = dataclasses.field(default_factory=dict)
    # `restartTargets`: beside `rules`, when restartTargets.enabled.
    restart_targets: dict = dataclasses.field(default_factory=dict)


# The once-code broker may create TokenReviews and SubjectAccessReviews, nothing more.
BROKER_GRANTS = {("authentication.k8s.io", "tokenreviews"): {"create"},
                 ("authorization.k8s.io", "subjectaccessreviews"): {"create"}}


def load_rules(path=RULES_FILE):
    """The RBAC the operator needs, from the chart's rbac/operator-rules.yaml: the one list of the API calls the
    code makes, which tests/rbac.rs checks against the requests the operator really sends (so neither this
    script nor the templates hard-code a guess)."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    rules = Rules(namespaced=grants({"rules": doc["rules"]}), cluster=grants({"rules": doc["clusterRules"]}),
                  connection_secrets=grants({"rules": [doc["connectionSecrets"]]}),
                  lease_verbs=set(doc["leases"]["verbs"]), broker=grants({"rules": doc["broker"]}),
                  restart_targets=grants({"rules": doc["restartTargets"]}))
    # Patching a workload restarts it: get and patch on the three kinds that roll out, nothing more.
    check(rules.restart_targets == {("apps", k): {"get", "patch"} for k in ("deployments", "statefulsets", "daemonsets")},
          path, f"restartTargets grants {sorted((k, sorted(v)) for k, v in rules.restart_targets.items())}, expected "
          "exactly get and patch on deployments, statefulsets and daemonsets (apps)")
    check(rules.broker == BROKER_GRANTS, path, f"broker grants {sorted((k, sorted(v)) for k, v in rules.broker.items())}, "
          f"expected exactly create on tokenreviews and subjectaccessreviews")
    check(not any(r.get("resourceNames") or r.get("nonResourceURLs") for r in doc["broker"]), path,
          "broker rules name resources or URLs: TokenReviews and SubjectAccessReviews take none")
    leases = doc["leases"]
    check(leases.get("apiGroups") == ["coordination.k8s.io"] and leases.get("resources") == ["leases"], path,
          f"leases is not coordination.k8s.io/leases: {leases}")
    for section in (rules.namespaced, rules.cluster, rules.connection_secrets):
        for (group, resource), verbs in section.items():
            check(not any("*" in v for v in (group, resource, *verbs)), path, f"wildcard in {group}/{resource}: {verbs}")
    # Secrets hold credentials and code values: a few verbs, each with a reason in the file's table.
    secret_verbs = rules.namespaced.get(("", "secrets"), set())
    check(secret_verbs <= {"get", "list", "watch", "create", "patch"}, path,
          f"secrets verbs {sorted(secret_verbs)} go beyond get, list, watch, create, patch")
    # The Secrets of ClusterMetaStudioConnections: reading only, and no more than the operator's ClusterRole
    # grants cluster-wide (which is why the chart renders no Role for them without watchNamespaces).
    check(set(rules.connection_secrets) == {("", "secrets")}, path,
          f"connectionSecrets is not a rule on secrets alone: {sorted(rules.connection_secrets)}")
    connection_verbs = rules.connection_secrets.get(("", "secrets"), set())
    check(connection_verbs <= {"get"} and connection_verbs <= secret_verbs, path,
          f"connectionSecrets verbs {sorted(connection_verbs)} go beyond get, or beyond the secrets verbs of rules")
    # clusterRules are granted cluster-wide even with watchNamespaces: none of the namespaced kinds of rules.
    shared = sorted(set(rules.cluster) & set(rules.namespaced))
    check(not shared, path, f"clusterRules grant namespaced kinds cluster-wide: {shared}")
    return rules


RULES = Rules()


def grants(role):
    """{(apiGroup, resource): verbs} of one Role or ClusterRole."""
    out = {}
    for r in role.get("rules", []):
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                out.setdefault((g, res), set()).update(r.get("verbs", []))
    return out


def bindings_of(objs, role, sa):
    """The RoleBindings or ClusterRoleBindings (as `role` is a Role or a ClusterRole) that bind `role` to the
    ServiceAccount `sa` of the release namespace."""
    kind = role["kind"]
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role["metadata"]["name"]}
    return [b for b in of_kind(objs, f"{kind}Binding")
            if b["metadata"].get("namespace") == role["metadata"].get("namespace") and b["roleRef"] == ref
            and {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE} in b.get("subjects", [])]


def operator_grants(restart_targets):
    """{(apiGroup, resource): verbs} of the operator's own Role or ClusterRole: `rules`, and `restartTargets`
    when restartTargets.enabled."""
    out = {k: set(v) for k, v in RULES.namespaced.items()}
    for k, v in (RULES.restart_targets if restart_targets else {}).items():
        out.setdefault(k, set()).update(v)
    return out


def check_rbac(name, objs, watched, leader_election, sa, restart_targets=False):
    operator = operator_grants(restart_targets)
    for o, r in rules_of(objs):
        where = f"{name}: {ident(o)}"
        for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
            check(not any("*" in v for v in r.get(field, [])), where, f"wildcard in {field}: {r.get(field)}")
        check(not r.get("nonResourceURLs"), where, "grants nonResourceURLs")
        if "secrets" in r.get("resources", []):
            allowed = [RULES.namespaced[("", "secrets")], RULES.connection_secrets[("", "secrets")]]
            check(set(r.get("verbs", [])) in allowed, where,
                  f"secrets verbs are {r.get('verbs')}, expected exactly "
                  f"{' or '.join(str(sorted(v)) for v in allowed)} (rbac/operator-rules.yaml)")
            check(r.get("apiGroups") == [""], where, f"secrets rule has apiGroups {r.get('apiGroups')}")

    # The broker's ClusterRole is check_broker's.
    cluster_roles = [cr for cr in of_kind(objs, "ClusterRole") if cr["metadata"]["name"] != BROKER_NAME]
    roles = of_kind(objs, "Role")
    # The Secrets of ClusterMetaStudioConnections: a Role of their own in the release namespace when the
    # operator has no other access to Secrets there (watchNamespaces set and leaving it out).
    connection_roles = [r for r in roles if r["metadata"].get("namespace") == NAMESPACE
                        and grants(r) == RULES.connection_secrets]
    secret_roles = [o for o in cluster_roles + roles if ("", "secrets") in grants(o)]
    others = [o for o in secret_roles if grants(o) != operator and o not in connection_roles]
    check(not others, name, "a role other than the operator's rules (or the Role for the Secrets of "
          "ClusterMetaStudioConnections in the release namespace) touches secrets: " + ", ".join(map(ident, others)))
    needs_connection_role = bool(watched) and NAMESPACE not in watched
    check(len(connection_roles) == int(needs_connection_role), name,
          f"expected {int(needs_connection_role)} Role in {NAMESPACE} with exactly connectionSecrets "
          f"{sorted(RULES.connection_secrets.get(('', 'secrets'), []))}, found {len(connection_roles)}")
    for r in connection_roles:
        check(len(bindings_of(objs, r, sa)) == 1, f"{name}: {ident(r)}", f"no RoleBinding binds it to ServiceAccount {sa}")

    # The cluster-scoped kinds: always their own ClusterRole, bound to the ServiceAccount.
    cluster_name = f"{RELEASE}-cluster"
    cluster_mine = [cr for cr in cluster_roles if grants(cr) == RULES.cluster]
    if check(len(cluster_mine) == 1 and cluster_mine[0]["metadata"]["name"] == cluster_name, name,
             f"expected one ClusterRole {cluster_name} with exactly the clusterRules, found "
             + (", ".join(map(ident, cluster_mine)) or "none")):
        check(len(bindings_of(objs, cluster_mine[0], sa)) == 1, name,
              f"no ClusterRoleBinding binds {ident(cluster_mine[0])} to ServiceAccount {sa}")

    if watched:
        for cr in cluster_roles:
            g = grants(cr)
            check(not any(res in ("activationcodes", "activationcodes/status", "secrets") for (_, res) in g), name,
                  f"{ident(cr)} grants cluster-wide access although watchNamespaces is set: {sorted(g)}")
            check(g == RULES.cluster, name, f"{ident(cr)} grants more than the clusterRules although watchNamespaces "
                  f"is set: {sorted(g)}")
        stray = [b for b in of_kind(objs, "ClusterRoleBinding")
                 if b["roleRef"].get("name") not in (cluster_name, BROKER_NAME)]
        check(not stray, name, "a ClusterRoleBinding other than the clusterRules' exists although watchNamespaces "
              "is set: " + ", ".join(map(ident, stray)))
        for ns in watched:
            mine = [r for r in roles if r["metadata"].get("namespace") == ns and grants(r) == operator]
            check(len(mine) == 1, name, f"expected one Role with the operator's rules in namespace {ns}, found {len(mine)}")
            check(bool(mine) and len(bindings_of(objs, mine[0], sa)) == 1, name,
                  f"no RoleBinding in {ns} binds the operator's Role to ServiceAccount {sa}")
        others = {r["metadata"].get("namespace") for r in roles if grants(r) == operator} - set(watched)
        check(not others, name, f"operator Roles in namespaces that are not watched: {sorted(others)}")
    else:
        mine = [cr for cr in cluster_roles if grants(cr) == operator]
        check(len(mine) == 1, name, f"expected one ClusterRole with exactly the operator's rules, found {len(mine)}: "
              + "; ".join(f"{ident(c)} {sorted((k, sorted(v)) for k, v in grants(c).items())}" for c in cluster_roles))
        check(len(cluster_roles) == 2, name, f"expected two ClusterRoles (the operator's rules and {cluster_name}), "
              "found: " + ", ".join(map(ident, cluster_roles)))
        check(bool(mine) and len(bindings_of(objs, mine[0], sa)) == 1, name,
              f"no ClusterRoleBinding binds the operator's ClusterRole to ServiceAccount {sa}")
        check(not [r for r in roles if grants(r) == operator], name, "namespaced operator Roles without watchNamespaces")

    lease_roles = [r for r in roles if any(res == "leases" for (_, res) in grants(r))]
    if leader_election:
        ok = check(len(lease_roles) == 1, name, f"expected one Role for leases, found {len(lease_roles)}")
        if ok:
            lr = lease_roles[0]
            where = f"{name}: {ident(lr)}"
            check(lr["metadata"].get("namespace") == NAMESPACE, where, "the leases Role is not in the release namespace")
            check(set(grants(lr)) == {("coordination.k8s.io", "leases")}, where, f"grants more than leases: {sorted(grants(lr))}")
            check(grants(lr).get(("coordination.k8s.io", "leases")) == RULES.lease_verbs, where,
                  f"leases verbs are {sorted(grants(lr).get(('coordination.k8s.io', 'leases'), []))}, "
                  f"expected {sorted(RULES.lease_verbs)} (rbac/operator-rules.yaml)")
            check(len(bindings_of(objs, lr, sa)) == 1, where, f"no RoleBinding binds it to ServiceAccount {sa}")
    else:
        check(not lease_roles, name, "a leases Role exists although leader election is disabled")
    check_lease(name, objs, leader_election)


def check_lease(name, objs, leader_election):
    """The Lease the replicas elect a leader with is the chart's (empty: the replicas fill it in), so that helm
    uninstall deletes it; with the name the operator is given (LEASE_NAME)."""
    leases = of_kind(objs, "Lease")
    if not check(len(leases) == int(leader_election), name,
                 f"expected {int(leader_election)} Lease, found {len(leases)}") or not leases:
        return
    (lease,) = leases
    where = f"{name}: {ident(lease)}"
    check(lease["metadata"].get("namespace") == NAMESPACE and "spec" not in lease, where,
          f"the Lease is not an empty object in the release namespace: {lease}")
    deployments = of_kind(objs, "Deployment")
    if deployments:
        env = container_env(deployments[0]["spec"]["template"]["spec"]["containers"][0])
        check(env.get("LEASE_NAME", {}).get("value") == lease["metadata"]["name"], where,
              f"the operator elects on LEASE_NAME {env.get('LEASE_NAME', {}).get('value')!r}, not on this Lease")


# --- one render


def check_render(name, objs, *, watched=(), service_monitor=False, network_policy=False, pdb=True,
                 leader_election=True, broker=None, restart_targets=False):
    for o in objs:
        meta = o.get("metadata", {})
        check(meta.get("labels", {}).get("app.kubernetes.io/name") == RELEASE or o["kind"] == "Namespace",
              f"{name}: {ident(o)}", "no app.kubernetes.io/name label")
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"):
            allowed = {NAMESPACE} | (set(watched) if o["kind"] in ("Role", "RoleBinding") else set())
            check(meta.get("namespace") in allowed, f"{name}: {ident(o)}",
                  f"namespace is {meta.get('namespace')!r}, expected one of {sorted(allowed)}")
    d = check_deployment(name, objs)
    sas = of_kind(objs, "ServiceAccount")
    check(len(sas) == 1, name, f"expected one ServiceAccount, found {len(sas)}")
    sa = sas[0]["metadata"]["name"] if sas else "?"
    if d:
        check(d["spec"]["template"]["spec"].get("serviceAccountName") == sa, name, "the Deployment does not use the ServiceAccount")
    check_rbac(name, objs, list(watched), leader_election, sa, restart_targets)

    services = [s for s in of_kind(objs, "Service") if s["metadata"]["name"] != BROKER_NAME]
    ok = check(len(services) == 1, name, f"expected one Service besides the broker's, found {len(services)}")
    if ok:
        ports = services[0]["spec"]["ports"]
        check([(p.get("name"), p.get("port")) for p in ports] == [("metrics", 8080)], f"{name}: {ident(services[0])}",
              f"ports are {ports}, expected metrics 8080")
        if d:
            check(services[0]["spec"]["selector"] == d["spec"]["selector"]["matchLabels"], name,
                  "the Service does not select the Deployment's pods")

    monitors = of_kind(objs, "ServiceMonitor")
    check(len(monitors) == (1 if service_monitor else 0), name,
          f"expected {1 if service_monitor else 0} ServiceMonitor, found {len(monitors)}")
    for m in monitors:
        ep = m["spec"]["endpoints"]
        check([e.get("port") for e in ep] == ["metrics"], f"{name}: {ident(m)}", "does not scrape the metrics port")

    pdbs = of_kind(objs, "PodDisruptionBudget")
    check(len(pdbs) == (1 if pdb else 0), name, f"expected {1 if pdb else 0} PodDisruptionBudget, found {len(pdbs)}")
    for p in pdbs:
        check(p["spec"].get("maxUnavailable") == 1, f"{name}: {ident(p)}", "maxUnavailable is not 1")

    nps = of_kind(objs, "NetworkPolicy")
    check(len(nps) == (1 if network_policy else 0), name,
          f"expected {1 if network_policy else 0} NetworkPolicy, found {len(nps)}")
    for np in nps:
        where = f"{name}: {ident(np)}"
        spec = np["spec"]
        check(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"], where, "policyTypes are not Ingress and Egress")
        ingress_ports = [p.get("port") for rule in spec.get("ingress", []) for p in rule.get("ports", [])]
        allowed = {"metrics", 8080} | ({"broker"} if broker else set())
        check(ingress_ports and set(ingress_ports) <= allowed, where,
              f"ingress is not limited to the ports {sorted(map(str, allowed))}: {ingress_ports}")
        check(all(rule.get("ports") and rule.get("from") for rule in spec.get("ingress", [])), where,
              "an ingress rule without ports or peers")
        egress = {(p.get("protocol", "TCP"), p.get("port")) for rule in spec.get("egress", []) for p in rule.get("ports", [])}
        check(egress == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)}, where,
              f"egress ports are {sorted(egress, key=str)}, expected DNS 53/UDP+TCP, 443 and 6443")
        check(all(rule.get("ports") for rule in spec.get("egress", [])), where, "an egress rule without ports")
    check_broker(name, objs, d, broker, sa)
    return d


# --- the once-code broker

BROKER_NAME = f"{RELEASE}-broker"
BROKER_TLS_DIR = "/etc/metastudio-operator/broker-tls"
BROKER_ENV = ("BROKER_ADDR", "BROKER_TLS_CERT", "BROKER_TLS_KEY", "BROKER_AUDIENCE", "BROKER_CALLER_RATE",
              "BROKER_CALLER_BURST", "BROKER_QUOTA", "BROKER_REVIEW_RATE", "BROKER_REVIEW_BURST")


@dataclasses.dataclass
class Broker:
    """What a render with broker.enabled must hold: the values, as the operator receives them."""

    port: int = 8443
    audience: str = "metastudio-operator"
    caller_rate: str = "1"
    caller_burst: str = "5"
    quota: str = "20"
    review_rate: str = "20"
    review_burst: str = "20"
    secret: str = f"{RELEASE}-broker-tls"
    # The NetworkPolicy peers of the broker port (broker.networkPolicy.from).
    peers: list = dataclasses.field(default_factory=lambda: [{"namespaceSelector": {}}])
    # The cert-manager issuerRef; None: no Certificate (an existing Secret).
    issuer: dict = None


def check_broker(name, objs, d, broker, sa):
    """The broker's objects are there exactly when `broker` (a Broker) is given, and say what it says."""
    where = f"{name}: broker"
    if d:
        check_broker_pod(where, d, broker)
    check_broker_service(where, objs, d, broker)
    check_broker_rbac(where, objs, broker, sa)
    check_broker_network_policy(where, objs, broker)
    check_broker_certificate(where, objs, broker)


def check_broker_pod(where, d, broker):
    (c,) = d["spec"]["template"]["spec"]["containers"]
    env = container_env(c)
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"].get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    if not broker:
        check(not [v for v in BROKER_ENV if v in env], where, f"BROKER_* env set with the broker off: {sorted(env)}")
        check("broker" not in ports and "broker-tls" not in volumes and "broker-tls" not in mounts, where,
              "a broker port, volume or mount with the broker off")
        return
    expected = {"BROKER_ADDR": f"0.0.0.0:{broker.port}", "BROKER_TLS_CERT": f"{BROKER_TLS_DIR}/tls.crt",
                "BROKER_TLS_KEY": f"{BROKER_TLS_DIR}/tls.key", "BROKER_AUDIENCE": broker.audience,
                "BROKER_CALLER_RATE": broker.caller_rate, "BROKER_CALLER_BURST": broker.caller_burst,
                "BROKER_QUOTA": broker.quota, "BROKER_REVIEW_RATE": broker.review_rate,
                "BROKER_REVIEW_BURST": broker.review_burst}
    for var, value in expected.items():
        check(env.get(var, {}).get("value") == value, where, f"env {var} is {env.get(var, {}).get('value')!r}, "
              f"expected {value!r}")
    check(ports.get("broker") == broker.port, where, f"container port broker is {ports.get('broker')}, expected {broker.port}")
    secret = volumes.get("broker-tls", {}).get("secret", {})
    check(secret.get("secretName") == broker.secret and not secret.get("items"), where,
          f"volume broker-tls is not the whole Secret {broker.secret}: {volumes.get('broker-tls')}")
    mount = mounts.get("broker-tls", {})
    # A subPath mount would never see a renewed Secret.
    check(mount.get("mountPath") == BROKER_TLS_DIR and mount.get("readOnly") is True and "subPath" not in mount, where,
          f"broker-tls is not mounted read-only at {BROKER_TLS_DIR} (without subPath): {mount}")


def check_broker_service(where, objs, d, broker):
    services = [s for s in of_kind(objs, "Service") if s["metadata"]["name"] == BROKER_NAME]
    if not check(len(services) == (1 if broker else 0), where,
                 f"expected {1 if broker else 0} Service {BROKER_NAME}, found {len(services)}") or not broker:
        return
    (svc,) = services
    ports = [(p.get("name"), p.get("port"), p.get("targetPort")) for p in svc["spec"]["ports"]]
    check(ports == [("https", 443, "broker")], where, f"Service ports are {ports}, expected https 443 -> broker")
    check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", where, "the broker Service is not a ClusterIP")
    if d:
        check(svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"], where,
              "the broker Service does not select the Deployment's pods")


def check_broker_rbac(where, objs, broker, sa):
    mine = [cr for cr in of_kind(objs, "ClusterRole") if cr["metadata"]["name"] == BROKER_NAME]
    reviews = {k for k in BROKER_GRANTS}
    others = [o for o in of_kind(objs, "ClusterRole") + of_kind(objs, "Role")
              if o not in mine and set(grants(o)) & reviews]
    check(not others, where, "roles other than the broker's create reviews: " + ", ".join(map(ident, others)))
    if not check(len(mine) == (1 if broker else 0), where,
                 f"expected {1 if broker else 0} ClusterRole {BROKER_NAME}, found {len(mine)}") or not broker:
        return
    (role,) = mine
    check(grants(role) == BROKER_GRANTS == RULES.broker, where,
          f"{ident(role)} grants {sorted((k, sorted(v)) for k, v in grants(role).items())}, expected exactly "
          "create on tokenreviews and subjectaccessreviews (rbac/operator-rules.yaml)")
    check(not any(r.get("resourceNames") for r in role.get("rules", [])), where, f"{ident(role)} names resources")
    check(len(bindings_of(objs, role, sa)) == 1, where, f"no ClusterRoleBinding binds {ident(role)} to ServiceAccount {sa}")
    refs = [b for b in of_kind(objs, "ClusterRoleBinding") if b["roleRef"].get("name") == BROKER_NAME]
    check(len(refs) == 1 and len(refs[0].get("subjects", [])) == 1, where,
          f"{BROKER_NAME} is bound more than once, or to more than the operator: {[b.get('subjects') for b in refs]}")


def check_broker_network_policy(where, objs, broker):
    for np in of_kind(objs, "NetworkPolicy"):
        rules = [r for r in np["spec"].get("ingress", []) if any(p.get("port") == "broker" for p in r.get("ports", []))]
        if not broker:
            check(not rules, where, f"{ident(np)} opens the broker port with the broker off")
            continue
        if check(len(rules) == 1, where, f"{ident(np)} has {len(rules)} ingress rules for the broker port, expected 1"):
            rule = rules[0]
            check(rule["ports"] == [{"port": "broker", "protocol": "TCP"}], where,
                  f"the broker rule opens more than the broker port: {rule['ports']}")
            check(rule.get("from") == broker.peers, where,
                  f"the broker rule admits {rule.get('from')}, expected broker.networkPolicy.from {broker.peers}")


def check_broker_certificate(where, objs, broker):
    certificates = of_kind(objs, "Certificate")
    want = 1 if broker and broker.issuer else 0
    if not check(len(certificates) == want, where, f"expected {want} cert-manager Certificate, found "
                 f"{len(certificates)}") or not want:
        return
    (cert,) = certificates
    spec = cert["spec"]
    names = [BROKER_NAME, f"{BROKER_NAME}.{NAMESPACE}", f"{BROKER_NAME}.{NAMESPACE}.svc",
             f"{BROKER_NAME}.{NAMESPACE}.svc.cluster.local"]
    check(cert["apiVersion"] == "cert-manager.io/v1" and cert["metadata"].get("namespace") == NAMESPACE, where,
          f"{ident(cert)} is not a cert-manager.io/v1 Certificate in {NAMESPACE}")
    check(spec.get("secretName") == broker.secret, where,
          f"the Certificate writes Secret {spec.get('secretName')}, the pod mounts {broker.secret}")
    check(spec.get("dnsNames") == names, where, f"dnsNames are {spec.get('dnsNames')}, expected {names}")
    check(spec.get("issuerRef") == broker.issuer, where, f"issuerRef is {spec.get('issuerRef')}, expected {broker.issuer}")
    check("server auth" in spec.get("usages", []), where, f"usages lack server auth: {spec.get('usages')}")


# --- the broker client example (deploy/broker-client/)

BROKER_TOKEN_FILE = "/var/run/secrets/metastudio-operator/token"  # once-code's default --token-file


def broker_client_objects(directory):
    """(where, object) for every manifest of the broker client example."""
    return [(os.path.join(directory, f), o) for f in sorted(os.listdir(directory)) if f.endswith(".yaml")
            for o in load(os.path.join(directory, f))]


def check_broker_client(directory, chart, examples="examples"):
    """The example client: its kustomization lists every file; a ServiceAccount, a Role granting create on
    oncecodes of exactly the example MetaStudioConnection of its namespace, bound to it; a Deployment whose pod
    has the projected token (the chart's default broker.audience) where once-code reads it and calls the chart's
    broker Service for that connection, with --redact (its output is the pod's log)."""
    objs = broker_client_objects(directory)
    files = sorted(f for f in os.listdir(directory) if f.endswith(".yaml") and f != "kustomization.yaml")
    (kustomization,) = [o for _, o in objs if o.get("kind") == "Kustomization"] or [{}]
    check(sorted(kustomization.get("resources", [])) == files, directory,
          f"kustomization.yaml lists {kustomization.get('resources')}, the files are {files}")
    by_kind = {}
    for _, o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    kinds = ("ServiceAccount", "Role", "RoleBinding", "Deployment")
    counted = [check(len(by_kind.get(k, [])) == 1, directory, f"expected one {k}, found {len(by_kind.get(k, []))}")
               for k in kinds]
    if not all(counted):
        return
    (sa,), (role,), (binding,), (d,) = (by_kind[k] for k in kinds)
    namespace = sa["metadata"]["namespace"]
    connections = [o["metadata"]["name"] for f in sorted(os.listdir(examples)) if f.endswith(".yaml")
                   for o in load(os.path.join(examples, f))
                   if o.get("kind") == "MetaStudioConnection" and o["metadata"].get("namespace") == namespace]
    check(len(connections) == 1, directory, f"expected one MetaStudioConnection in {examples}/ for namespace "
          f"{namespace}, found {connections}")
    connection = connections[0] if connections else "?"
    check(role.get("rules") == [{"apiGroups": [GROUP], "resources": ["oncecodes"], "resourceNames": [connection],
                                 "verbs": ["create"]}], directory,
          f"{ident(role)} does not grant exactly create on oncecodes [{connection}]: {role.get('rules')}")
    check(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
          and binding.get("subjects") == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": namespace}],
          directory, f"{ident(binding)} does not bind {ident(role)} to {ident(sa)} alone")
    for o in (role, binding, d):
        check(o["metadata"].get("namespace") == namespace, directory, f"{ident(o)} is not in namespace {namespace}")
    check_broker_client_pod(directory, d, sa, connection, chart)


def check_broker_client_pod(where, d, sa, connection, chart):
    with open(os.path.join(chart, "values.yaml")) as f:
        audience = yaml.safe_load(f)["broker"]["audience"]
    pod = d["spec"]["template"]["spec"]
    check(pod.get("serviceAccountName") == sa["metadata"]["name"], where, "the Deployment does not use the ServiceAccount")
    check(pod.get("automountServiceAccountToken") is False, where, "the pod mounts an API token it does not need")
    (c,) = pod["containers"]
    args = c.get("args", [])
    flags = dict(zip(args[1::2], args[2::2])) if args[:1] == ["once-code"] else {}
    url = f"https://{BROKER_NAME}.{NAMESPACE}.svc"
    check(flags.get("--broker") == url and flags.get("--connection") == connection, where,
          f"the container does not run once-code --broker {url} --connection {connection}: {args}")
    check("--redact" in args, where, f"the container prints its once-codes to the pod's log: add --redact: {args}")
    tokens = [(v["name"], s["serviceAccountToken"]) for v in pod.get("volumes", [])
              for s in v.get("projected", {}).get("sources", []) if "serviceAccountToken" in s]
    if not check(len(tokens) == 1, where, f"expected one projected serviceAccountToken, found {len(tokens)}"):
        return
    (volume, token) = tokens[0]
    check(token == {"audience": audience, "expirationSeconds": 3600, "path": "token"}, where,
          f"the projected token is {token}, expected audience {audience} (broker.audience), 3600 s, path token")
    mounts = [m for m in c.get("volumeMounts", []) if m["name"] == volume]
    check(len(mounts) == 1 and os.path.join(mounts[0]["mountPath"], token.get("path", "")) == BROKER_TOKEN_FILE
          and mounts[0].get("readOnly") is True, where,
          f"the token is not mounted read-only at {BROKER_TOKEN_FILE} (once-code's default --token-file): {mounts}")
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
          and pod.get("securityContext", {}).get("runAsNonRoot") is True, where, "the example pod is not hardened")
    print(f"broker client example: {d['metadata']['namespace']}/{sa['metadata']['name']} gets codes of {connection} "
          f"from {url}")


# --- the CRDs as chart templates, per Kubernetes version

CEL_KEY = "x-kubernetes-validations"
KEEP = {"helm.sh/resource-policy": "keep"}
# The PodDisruptionBudget's fields the chart sets are the same in policy/v1beta1 (1.20) and policy/v1 (1.21+).
PDB_VERSIONS = {"1.20": "policy/v1beta1", "1.30": "policy/v1"}


def without_key(value, key):
    """`value` with every `key` of every mapping left out."""
    if isinstance(value, dict):
        return {k: without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [without_key(v, key) for v in value]
    return value


def bare(crd):
    """A CRD without the metadata the chart adds (labels, annotations)."""
    crd = json.loads(json.dumps(crd))
    crd["metadata"] = {"name": crd["metadata"]["name"]}
    return crd


def check_crds_of(where, objs, files, *, cel, annotations):
    """The CRDs of a render are those of `files`, CEL rules included when `cel`, with the chart's labels and
    `annotations`."""
    rendered = {o["metadata"]["name"]: o for o in of_kind(objs, "CustomResourceDefinition")}
    expected = {}
    for path in files:
        for crd in load(path):
            expected[crd["metadata"]["name"]] = (path, crd if cel else without_key(crd, CEL_KEY))
    check(sorted(rendered) == sorted(expected), where, f"renders the CRDs {sorted(rendered)}, crds/ holds {sorted(expected)}")
    for name, (path, crd) in expected.items():
        got = rendered.get(name)
        if got is None:
            continue
        check(bare(got) == crd, where, f"CRD {name} differs from {path}" + ("" if cel else f" without its {CEL_KEY}")
              + ": regenerate the templates (UPDATE_CRDS=1 cargo nextest run --test crd)")
        check(got["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm", where,
              f"CRD {name} lacks the chart's labels")
        check(got["metadata"].get("annotations", {}) == annotations, where,
              f"CRD {name} has the annotations {got['metadata'].get('annotations')}, expected {annotations}")
    has_cel = CEL_KEY in json.dumps([o for o in objs if o["kind"] == "CustomResourceDefinition"])
    check(has_cel == (cel and CEL_KEY in json.dumps([crd for _, crd in expected.values()])), where,
          f"CEL rules ({CEL_KEY}) {'missing' if cel else 'rendered for a server that refuses them'}")


def check_crd_templates(out, chart, files, default):
    """What each server gets: the CRDs (CEL rules from 1.25), the PodDisruptionBudget's version, and otherwise
    the same objects."""
    check(not os.path.exists(os.path.join(chart, "crds")), chart,
          "has a crds/ directory: Helm installs it on the first install only, and a CRD both there and in "
          "templates/crds/ conflicts (the CRDs are templates, generated by UPDATE_CRDS=1 cargo nextest run --test crd)")
    check_crds_of("default", default, files, cel=True, annotations=KEEP)
    check_crds_of("crds-not-kept", load(os.path.join(out, "crds-not-kept.yaml")), files, cel=True, annotations={})
    by_version = {}
    for version, pdb_api in PDB_VERSIONS.items():
        name = f"kube-{version}"
        objs = load(os.path.join(out, f"{name}.yaml"))
        by_version[version] = objs
        cel = version != "1.20"
        check_crds_of(name, objs, files, cel=cel, annotations=KEEP)
        pdbs = of_kind(objs, "PodDisruptionBudget")
        check([p["apiVersion"] for p in pdbs] == [pdb_api], name,
              f"the PodDisruptionBudget is {[p['apiVersion'] for p in pdbs]}, expected {pdb_api}")
        helm3 = os.path.join(out, f"helm3-{name}.yaml")
        if os.path.exists(helm3):
            check(load(helm3) == objs, helm3, f"Helm 3 renders other objects than Helm 4 for Kubernetes {version}")
    # Nothing else depends on the server's version.
    same = lambda objs: [without_key(o, CEL_KEY) if o["kind"] == "CustomResourceDefinition"
                         else {**o, "apiVersion": "policy/v1"} if o["kind"] == "PodDisruptionBudget" else o
                         for o in objs]
    check(same(by_version["1.20"]) == same(by_version["1.30"]), "kube-1.20",
          "renders other objects than for 1.30 beyond the CEL rules and the PodDisruptionBudget's version")
    # kubernetes-validate knows 1.25 and later: the 1.20 render is validated with the oldest schemas it has,
    # its policy/v1beta1 PodDisruptionBudget as policy/v1 (the same fields).
    validate({"kube-1.30": by_version["1.30"]}, [], version="1.30.0")
    validate({"kube-1.20": same(by_version["1.20"])}, [], version="1.25.0")
    print(f"CRD templates: {len(files)} CRDs equal crds/ (CEL rules from 1.25 on, none for 1.20), kept on uninstall; "
          f"PodDisruptionBudget {PDB_VERSIONS['1.20']} on 1.20, {PDB_VERSIONS['1.30']} on 1.30")


# --- files that must match


def same_file(a, b, what, regenerate):
    with open(a, "rb") as f:
        left = f.read()
    if not os.path.exists(b):
        failures.append(f"{b}: missing; {regenerate}")
        return
    with open(b, "rb") as f:
        right = f.read()
    if left != right:
        diff = difflib.unified_diff(left.decode().splitlines(), right.decode().splitlines(), a, b, lineterm="", n=1)
        lines = list(diff)
        failures.append(f"{b}: {what}; {regenerate}\n    " + "\n    ".join(lines[:40])
                        + ("\n    ..." if len(lines) > 40 else ""))


# --- the alerts and the dashboard (metrics.prometheusRule, metrics.dashboard)

RULES_PLAIN = "deploy/prometheus/metastudio-operator.rules.yaml"
DASHBOARD_PLAIN = "deploy/grafana/metastudio-operator-dashboard.json"
# The target selector of the plain rule file; the chart replaces it.
DEFAULT_TARGET = 'job="metastudio-operator-metrics"'
SHARD_TARGET = 'job="shard-a-metrics",namespace="ops"'


def validate_known(where, objs):
    """Validates the objects whose kind Kubernetes knows (not PrometheusRule, ServiceMonitor)."""
    import kubernetes_validate

    for obj in objs:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            check(obj["kind"] in ("PrometheusRule", "ServiceMonitor"), where, f"{ident(obj)}: no schema for this kind")
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{where}: {ident(obj)} is not a valid Kubernetes {K8S_VERSION} object: {e.message}")


def check_rule_shape(where, groups):
    """What the Prometheus Operator's PrometheusRule schema requires of each group and alerting rule."""
    for group in groups:
        check(isinstance(group.get("name"), str) and group.get("rules"), where, f"group {group.get('name')!r} without rules")
        for rule in group.get("rules", []):
            name = rule.get("alert", "?")
            check(set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, where, f"{name}: unexpected keys {sorted(rule)}")
            check(isinstance(rule.get("expr"), str) and isinstance(rule.get("for"), str), where, f"{name}: expr or for is not a string")
            for key in ("labels", "annotations"):
                check(all(isinstance(v, str) for v in rule.get(key, {}).values()), where, f"{name}: a {key} value is not a string")


def the_one(objs, kind, where):
    found = of_kind(objs, kind)
    check(len(found) == 1, where, f"expected one {kind}, found {len(found)}")
    return found[0] if len(found) == 1 else None


def check_prometheus_rule(where, objs, expected_groups, release_label):
    rule = the_one(objs, "PrometheusRule", where)
    if not rule:
        return
    check(rule["apiVersion"] == "monitoring.coreos.com/v1", where, f"PrometheusRule apiVersion is {rule['apiVersion']}")
    check(rule["metadata"]["labels"].get("release") == release_label, where,
          "metrics.prometheusRule.additionalLabels are not on the PrometheusRule")
    check(list(rule["spec"]) == ["groups"], where, f"PrometheusRule spec has {sorted(rule['spec'])}")
    check_rule_shape(where, rule["spec"]["groups"])
    check(rule["spec"]["groups"] == expected_groups, where,
          f"the PrometheusRule's groups differ from {RULES_PLAIN} (with the release's target selector)")


def check_dashboard_configmap(where, objs, dashboard, namespace, annotations):
    cm = the_one(objs, "ConfigMap", where)
    if not cm:
        return
    meta = cm["metadata"]
    check(meta["labels"].get("grafana_dashboard") == "1", where, "the dashboard ConfigMap lacks grafana_dashboard: \"1\"")
    check(meta["namespace"] == namespace, where, f"the dashboard ConfigMap is in {meta['namespace']}, expected {namespace}")
    check(meta.get("annotations", {}) == annotations, where, f"the dashboard ConfigMap's annotations are {meta.get('annotations')}")
    import json

    data = cm.get("data", {})
    check(list(data) == ["metastudio-operator.json"], where, f"the dashboard ConfigMap holds {sorted(data)}")
    check(json.loads(data.get("metastudio-operator.json", "null")) == dashboard, where,
          f"the dashboard ConfigMap differs from {DASHBOARD_PLAIN}")


def check_monitoring(out, chart, default_objs):
    """The PrometheusRule and the dashboard ConfigMap: rendered only when enabled, equal to the plain files."""
    import json

    for plain, copy in ((RULES_PLAIN, "metastudio-operator.rules.yaml"), (DASHBOARD_PLAIN, "metastudio-operator-dashboard.json")):
        copy = os.path.join(chart, "monitoring", copy)
        same_file(plain, copy, f"differs from {plain}", f"copy it: cp {plain} {copy}")
    with open(RULES_PLAIN) as f:
        text = f.read()
    plain_groups = yaml.safe_load(text)["groups"]
    check(DEFAULT_TARGET in text, RULES_PLAIN, f"does not select the operator by {DEFAULT_TARGET}")
    shard_groups = yaml.safe_load(text.replace(DEFAULT_TARGET, SHARD_TARGET))["groups"]
    with open(DASHBOARD_PLAIN) as f:
        dashboard = json.load(f)

    check(not of_kind(default_objs, "PrometheusRule") and not of_kind(default_objs, "ConfigMap"), "default",
          "the PrometheusRule or the dashboard ConfigMap is rendered although disabled")
    renders = {n: load(os.path.join(out, f"{n}.yaml")) for n in ("monitoring", "monitoring-shard")}
    for name, objs in renders.items():
        validate_known(name, objs)
        (monitor,) = of_kind(objs, "ServiceMonitor") or [None]
        check(monitor and all(e.get("honorLabels") is True for e in monitor["spec"]["endpoints"]), name,
              "the ServiceMonitor does not honour the per-resource namespace and name labels (honorLabels)")
    check_prometheus_rule("monitoring", renders["monitoring"], plain_groups, "kube-prometheus-stack")
    check_prometheus_rule("monitoring-shard", renders["monitoring-shard"], shard_groups, "kube-prometheus-stack")
    check_dashboard_configmap("monitoring", renders["monitoring"], dashboard, NAMESPACE, {})
    check_dashboard_configmap("monitoring-shard", renders["monitoring-shard"], dashboard, "monitoring",
                              {"grafana_folder": "Operators"})
    helm3 = os.path.join(out, "helm3-monitoring.yaml")
    if os.path.exists(helm3):
        check(load(helm3) == renders["monitoring"], helm3, "Helm 3 renders other objects than Helm 4 (monitoring values)")
    alerts = [r["alert"] for g in plain_groups for r in g["rules"]]
    print(f"alerts and dashboard: {len(alerts)} alerts in the PrometheusRule equal {RULES_PLAIN}, "
          f"the dashboard ConfigMap equals {DASHBOARD_PLAIN} ({len(dashboard['panels'])} panels)")


# --- Argo CD health check

def _sample(generation, conditions, observed=None, spec=None):
    """An ActivationCode with these conditions (each: type, status, reason, message)."""
    observed = generation if observed is None else observed
    return {"metadata": {"generation": generation}, "spec": spec or {"robotId": "r", "validPeriod": 7},
            "status": {"observedGeneration": observed, "conditions": [
                {"type": t, "status": st, "reason": r, "message": m, "observedGeneration": observed}
                for (t, st, r, m) in conditions]}}


# (title, object, health, text the message contains). The conditions are what
# the engine writes (src/engine/conditions.rs): Ready and Synced always;
# Reconciling=True while a retry is scheduled after a transient failure
# (RemoteError, RateLimited, ResetUnconfirmed); Stalled=True while progress
# needs a human (InvalidSpec, CredentialsNotFound, CredentialsRejected,
# Conflict, ExportFailed); both absent otherwise.
LUA_CASES = [
    ("just created, no status", {"metadata": {"generation": 1}, "spec": {"robotId": "r", "validPeriod": 7}},
     "Progressing", "Waiting for the operator"),
    ("status without conditions", {"metadata": {"generation": 1}, "spec": {"robotId": "r", "validPeriod": 7},
                                   "status": {"conditions": [], "managedCodes": 0}},
     "Progressing", "Waiting for the operator"),
    ("ready for the current generation",
     _sample(3, [("Ready", "True", "Synced", "3 codes match the spec"), ("Synced", "True", "InSync", "in sync")]),
     "Healthy", "Synced: 3 codes match the spec"),
    ("observing, drift reported",
     _sample(2, [("Ready", "True", "Observing", "2 code(s) observed, 2 difference(s)"),
                 ("Synced", "False", "DriftDetected", "2 difference(s) remain")]),
     "Healthy", "Observing"),
    ("ready, but for an older generation",
     _sample(4, [("Ready", "True", "Synced", "ok")], observed=3),
     "Progressing", "generation 4"),
    ("Ready condition behind although status is current",
     {"metadata": {"generation": 4}, "spec": {"robotId": "r", "validPeriod": 30},
      "status": {"observedGeneration": 4, "conditions": [
          {"type": "Ready", "status": "True", "reason": "Synced", "message": "ok", "observedGeneration": 3}]}},
     "Progressing", "generation 4"),
    ("stalled: credentials missing",
     _sample(2, [("Ready", "False", "CredentialsNotFound", "Secret retail/metastudio-credentials does not exist"),
                 ("Stalled", "True", "CredentialsNotFound", "Secret retail/metastudio-credentials does not exist"),
                 ("Synced", "Unknown", "CredentialsNotFound", "the remote codes were not compared")]),
     "Degraded", "CredentialsNotFound: Secret retail/metastudio-credentials does not exist"),
    ("stalled: credentials rejected",
     _sample(1, [("Ready", "False", "CredentialsRejected", "401; check the access key"),
                 ("Stalled", "True", "CredentialsRejected", "401; check the access key")]),
     "Degraded", "CredentialsRejected"),
    ("stalled: conflict with an older resource",
     _sample(1, [("Ready", "False", "Conflict", "ActivationCode retail/first manages some of the same codes"),
                 ("Stalled", "True", "Conflict", "ActivationCode retail/first manages some of the same codes")]),
     "Degraded", "Conflict: ActivationCode retail/first"),
    ("reconciling: remote error, a retry is scheduled",
     _sample(1, [("Ready", "False", "RemoteError", "1 of 3 changes failed"),
                 ("Reconciling", "True", "RemoteError", "1 of 3 changes failed; retrying")]),
     "Progressing", "RemoteError: 1 of 3 changes failed"),
    ("reconciling: rate limited",
     _sample(1, [("Ready", "False", "RateLimited", "429"), ("Reconciling", "True", "RateLimited", "backing off")]),
     "Progressing", "RateLimited"),
    ("reconciling: a reset not yet confirmed (Ready is False, as the engine sets it)",
     _sample(1, [("Ready", "False", "ResetUnconfirmed", "next sync settles it"),
                 ("Reconciling", "True", "ResetUnconfirmed", "next sync settles it"),
                 ("Synced", "False", "DriftDetected", "1 difference(s) remain")]),
     "Progressing", "ResetUnconfirmed: next sync settles it"),
    ("a condition present but not True is ignored",
     _sample(1, [("Ready", "True", "Synced", "ok"), ("Stalled", "False", "Synced", ""),
                 ("Reconciling", "False", "Synced", "")]),
     "Healthy", "Synced: ok"),
    ("suspended",
     _sample(5, [("Ready", "False", "Suspended", "spec.suspend is true: no remote calls are made"),
                 ("Synced", "Unknown", "Suspended", "the remote codes were not compared")],
             spec={"robotId": "r", "validPeriod": 7, "suspend": True}),
     "Suspended", "spec.suspend is true"),
    ("suspend requested, not yet observed",
     _sample(6, [("Ready", "True", "Synced", "ok")], observed=5, spec={"robotId": "r", "validPeriod": 7, "suspend": True}),
     "Progressing", "generation 6"),
    ("older operator: Ready False without Stalled or Reconciling",
     _sample(1, [("Ready", "False", "ExportFailed", "cannot write Secret lobby-codes")]),
     "Degraded", "ExportFailed: cannot write Secret lobby-codes"),
    ("Ready unknown",
     _sample(1, [("Ready", "Unknown", "Pending", "")]),
     "Progressing", "Pending"),
    ("only Synced reported",
     _sample(1, [("Synced", "True", "InSync", "in sync")]),
     "Progressing", "Waiting for the Ready condition"),
]


def lua_runtime():
    """lupa's Lua 5.1 runtime when the wheel has one (Argo CD uses gopher-lua, Lua 5.1), else its default."""
    try:
        import lupa.lua51 as lupa_module
        flavour = "Lua 5.1"
    except ImportError:
        import lupa as lupa_module
        flavour = "lupa default Lua"
    return lupa_module.LuaRuntime(unpack_returned_tuples=True), flavour


def to_lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def check_lua(path):
    try:
        lua, flavour = lua_runtime()
    except ImportError:
        notes.append("Argo CD health check NOT run: lupa is not installed (pip install lupa)")
        print(notes[-1])
        return
    with open(path) as f:
        script = f.read()
    passed = 0
    for title, obj, status, message in LUA_CASES:
        where = f"{path} (sample: {title})"
        lua.globals().obj = to_lua(lua, obj)
        try:
            hs = lua.execute(script)
        except Exception as e:  # lupa.LuaError and friends
            failures.append(f"{where}: Lua error: {e}")
            continue
        got_status, got_message = hs["status"], hs["message"]
        ok = check(got_status == status, where, f"health is {got_status!r}, expected {status!r} (message {got_message!r})")
        ok = check(isinstance(got_message, str) and message in got_message, where,
                   f"message {got_message!r} does not contain {message!r}") and ok
        passed += ok
    print(f"Argo CD health check ({flavour}): {passed}/{len(LUA_CASES)} sample ActivationCodes")


# --- the examples against the CRD


def strict(schema, root=True):
    """A copy of a CRD's structural schema that refuses unknown fields, as the API server does when a manifest
    is applied strictly (kubectl's default); at the root it knows apiVersion, kind and metadata itself."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {k: strict(v, root=False) for k, v in schema["properties"].items()}
        if root:
            schema["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                         "metadata": {"type": "object"}})
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = strict(schema[key], root=False)
    return schema


def check_examples(crd_paths, directory="examples"):
    """Every resource of a CRD's kind in examples/ validates against that CRD's openAPIV3Schema (what the API
    server checks, unknown fields refused), and the examples show each kind: an Enforce and an Observe ActivationCode, a
    MetaStudioConnection and a ClusterMetaStudioConnection."""
    import jsonschema

    schemas = {}
    for path in crd_paths:
        for crd in load(path):
            version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
            schemas[crd["spec"]["names"]["kind"]] = strict(version["schema"]["openAPIV3Schema"])
    checked = {kind: 0 for kind in schemas}
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml")):
            continue
        for doc in load(os.path.join(directory, name)):
            schema = schemas.get(doc.get("kind"))
            if schema is None:
                continue
            checked[doc["kind"]] += 1
            for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
                failures.append(f"{directory}/{name}: {ident(doc)} does not match the CRD schema: {error.message}"
                                f" (at {'/'.join(str(p) for p in error.path)})")
    minimum = {"ActivationCode": 2, "MetaStudioConnection": 1, "ClusterMetaStudioConnection": 1}
    for kind, count in minimum.items():
        check(checked.get(kind, 0) >= count, directory, f"expected at least {count} {kind} example(s), found "
              f"{checked.get(kind, 0)}")
    print("examples validate against the CRD schemas: " + ", ".join(f"{k} {n}" for k, n in sorted(checked.items())))


# --- values.schema.json covers values.yaml


def check_schema_covers_values(chart):
    """Every key of values.yaml is described (with a type) in values.schema.json."""
    import json

    with open(os.path.join(chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(chart, "values.schema.json")) as f:
        schema = json.load(f)

    def resolve(node):
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].split("/")[-1]]
        return node

    def walk(value, node, path):
        node = resolve(node)
        check("type" in node or "anyOf" in node or "const" in node, "values.schema.json", f"{path or '/'} has no type")
        if isinstance(value, dict) and node.get("type") == "object":
            props = node.get("properties")
            if props is None:  # a free-form map (labels, selectors, affinity)
                return
            for key, sub in value.items():
                if check(key in props, "values.schema.json", f"{path}/{key} (in values.yaml) is not described"):
                    walk(sub, props[key], f"{path}/{key}")

    check(schema.get("$schema", "").startswith("http://json-schema.org/draft-07/"), "values.schema.json", "is not draft-07")
    check(schema.get("additionalProperties") is False, "values.schema.json", "the top level allows additional properties")
    walk(values, schema, "")


# --- the container image


def check_same_layout(final, dockerfile):
    """The Dockerfile's final stage has the layout of the image that
    scripts/image packs (scripts/image_pack.py): user, entrypoint, command,
    ports, the binary's path, labels. The chart runs either."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
    import image_pack as pack

    def instruction(name):
        return [l.split(None, 1)[1] for l in final if l.split()[0].upper() == name]

    packed = f"scripts/image_pack.py ({{}})"
    check(instruction("USER") == [pack.USER], dockerfile,
          f"USER {instruction('USER')} differs from the packed image's {pack.USER} (and the chart's runAsUser 65532)")
    check([json.loads(e) for e in instruction("ENTRYPOINT")] == [pack.ENTRYPOINT], dockerfile,
          f"ENTRYPOINT differs from {packed.format(pack.ENTRYPOINT)}")
    check([json.loads(c) for c in instruction("CMD")] == [pack.CMD], dockerfile, f"CMD differs from {packed.format(pack.CMD)}")
    exposed = sorted(p if "/" in p else f"{p}/tcp" for e in instruction("EXPOSE") for p in e.split())
    check(exposed == sorted(pack.EXPOSED_PORTS), dockerfile,
          f"EXPOSE {exposed} differs from {packed.format(pack.EXPOSED_PORTS)} (the metrics port)")
    copies = [l.split()[-1] for l in final if l.split()[0].upper() == "COPY"]
    check(pack.BINARY in copies, dockerfile, f"the final stage does not copy the binary to {pack.BINARY}, as the packed image has it")
    labels = dict(re.findall(r'(\S+?)="([^"]*)"', " ".join(instruction("LABEL"))))
    check(labels == pack.LABELS, dockerfile, f"LABEL {labels} differs from {packed.format(pack.LABELS)}")


def check_image(dockerfile="Dockerfile", ignore=".dockerignore"):
    """The Dockerfile agrees with the chart, and .dockerignore keeps what it copies."""
    import fnmatch

    with open(dockerfile) as f:
        # One line per instruction: continuation lines joined.
        text = "".join(l for l in f if not l.lstrip().startswith("#")).replace("\\\n", " ")
        lines = [l.strip() for l in text.splitlines() if l.strip()]
    with open(ignore) as f:
        patterns = [p.strip().rstrip("/") for p in f if p.strip() and not p.startswith("#")]
    stages = [l for l in lines if l.upper().startswith("FROM ")]
    bases = [s.split()[1] for s in stages]
    check(len(stages) >= 2 and bases[-1].split("@")[0] == "gcr.io/distroless/cc-debian12:nonroot", dockerfile,
          f"the final stage is not gcr.io/distroless/cc-debian12:nonroot: {stages[-1:]}")
    for base in bases:
        check(re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", base) is not None, dockerfile,
              f"the base {base} is not pinned by digest (NAME:TAG@sha256:...): a tag can move under a rebuild")
    final = lines[lines.index(stages[-1]):]
    check_same_layout(final, dockerfile)
    for l in lines:
        words = l.split()
        if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
            for src in [w for w in words[1:-1] if not w.startswith("--")]:
                src = src.rstrip("/").removeprefix("./")
                hit = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(src, p.removeprefix("./"))]
                check(not hit, ignore, f"excludes {src}, which {dockerfile} copies ({l})")
    # cargo refuses a manifest whose declared targets are missing, so each
    # [[bin]]/[[bench]]/[[test]]/[[example]] of Cargo.toml must be copied into
    # the build or created by it.
    import tomllib

    with open("Cargo.toml", "rb") as f:
        manifest = tomllib.load(f)
    text = "\n".join(lines)
    defaults = {"bin": "src/bin", "bench": "benches", "test": "tests", "example": "examples"}
    for kind, folder in defaults.items():
        for target in manifest.get(kind, []):
            path = target.get("path", f"{folder}/{target['name']}.rs")
            covered = path in text or any(
                l.split()[0].upper() == "COPY" and path.startswith(src.rstrip("/").removeprefix("./") + "/")
                for l in lines for src in l.split()[1:-1] if not src.startswith("--"))
            check(covered, dockerfile, f"neither copies nor creates {path}, the {kind} `{target['name']}` of Cargo.toml: cargo build would fail")


# --- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory with the renders")
    ap.add_argument("--chart", required=True)
    ap.add_argument("--deploy", required=True, help="the committed plain manifests")
    ap.add_argument("--lua", required=True)
    ap.add_argument("--broker-client", required=True, help="the broker client example's directory")
    args = ap.parse_args()

    renders = {}
    for name in ("default", "scoped", "configured"):
        renders[name] = load(os.path.join(args.out, f"{name}.yaml"))
    renders["deploy"] = load(os.path.join(args.out, "deploy.yaml"))
    helm3 = [n for n in ("helm3-default", "helm3-scoped", "helm3-configured")
             if os.path.exists(os.path.join(args.out, f"{n}.yaml"))]

    crds = crd_files()
    validate(renders, crds, broker_client_objects(args.broker_client))
    global RULES
    RULES = load_rules(os.path.join(args.chart, "rbac", "operator-rules.yaml"))

    lease = f"{RELEASE}"
    # The chart's pacing equals the binary's default: the region's documented
    # quotas (no read or write rate passed), all of them, evenly spaced.
    base_env = {"METRICS_ADDR": "0.0.0.0:8080", "CONCURRENCY": "4", "LOG_LEVEL": "info", "LOG_FORMAT": "json",
                "METASTUDIO_RATE_SHARE": "1", "METASTUDIO_RATE_BURST": "1", "SHUTDOWN_TIMEOUT": "20s"}
    unset = ["WATCH_NAMESPACES", "LABEL_SELECTOR", "METASTUDIO_REGION", "METASTUDIO_PROJECT_ID", "METASTUDIO_ENDPOINT",
             "METASTUDIO_READ_RATE", "METASTUDIO_WRITE_RATE",
             "CLOUD_SDK_AK", "CLOUD_SDK_SK", "CLOUD_SDK_SECURITY_TOKEN", "DEFAULT_CREDENTIALS_NAMESPACES",
             "METASTUDIO_INSECURE_HTTP", "RESET_GRACE"]

    d = check_render("default", renders["default"])
    if d:
        check(d["spec"]["replicas"] == 2, "default", "replicas is not 2")
        expect_env("default", d, {**base_env, "LEADER_ELECTION": "true", "LEASE_NAME": lease, "LEASE_DURATION": "15s"},
                   absent=unset)
        (c,) = d["spec"]["template"]["spec"]["containers"]
        check(c["image"] == "ghcr.io/metastudio-operator/metastudio-operator:0.1.0", "default", f"image is {c['image']}")
        check(c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
              "default", f"resources are {c['resources']}")
        check_scheduling("default", d, grace=30, anti_affinity="preferred", spread=False)

    d = check_render("scoped", renders["scoped"], watched=WATCHED, service_monitor=True, network_policy=True,
                     restart_targets=True,
                     # Three replicas share broker.quota (20/s).
                     broker=Broker(quota=str(20 / 3), issuer={"name": "cluster-ca", "kind": "ClusterIssuer"}))
    if d:
        check(d["spec"]["replicas"] == 3, "scoped", "replicas is not 3")
        expect_env("scoped", d, {**base_env, "WATCH_NAMESPACES": "team-a,team-b", "LEADER_ELECTION": "true"},
                   absent=[v for v in unset if v != "WATCH_NAMESPACES"])
        check_scheduling("scoped", d, grace=30, anti_affinity="required", spread=True)

    d = check_render("configured", renders["configured"], pdb=False, leader_election=False, network_policy=True,
                     restart_targets=True,
                     broker=Broker(port=9443, audience="metastudio-broker", caller_rate="0.5", caller_burst="2",
                                   quota="10", review_rate="5", review_burst="8", secret="kiosk-broker-tls", peers=[{
                                       "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "retail"}},
                                       "podSelector": {"matchLabels": {"app": "kiosk-backend"}}}]))
    if d:
        expect_env("configured", d, {
            "LEADER_ELECTION": "false", "CONCURRENCY": "8", "LOG_LEVEL": "debug", "LOG_FORMAT": "text",
            "LABEL_SELECTOR": "shard=a", "METASTUDIO_REGION": "cn-north-4",
            "METASTUDIO_PROJECT_ID": "70b76e1c2d3f4a253880af501cd1a2b3",
            "METASTUDIO_ENDPOINT": "https://metastudio.cn-north-4.myhuaweicloud.com",
            # readRate 0 (no limit) is passed, not dropped as a falsy value.
            "METASTUDIO_READ_RATE": "0", "METASTUDIO_WRITE_RATE": "2.5", "METASTUDIO_RATE_SHARE": "0.8",
            "METASTUDIO_RATE_BURST": "3", "SHUTDOWN_TIMEOUT": "50s", "RESET_GRACE": "90s",
            # Listed with a duplicate in scripts/chart-check: passed once each, in order.
            "DEFAULT_CREDENTIALS_NAMESPACES": "retail,museum", "METASTUDIO_INSECURE_HTTP": "true"},
            absent=["LEASE_NAME", "LEASE_DURATION"])
        check_scheduling("configured", d, grace=60, anti_affinity=None, spread=False)
        check_credentials_env("configured", d, "metastudio-default-credentials")
        (c,) = d["spec"]["template"]["spec"]["containers"]
        check(c["image"].startswith("ghcr.io/metastudio-operator/metastudio-operator@sha256:"), "configured",
              f"image.digest is not used: {c['image']}")

    ns = [o for o in renders["deploy"] if o["kind"] == "Namespace"]
    check(len(ns) == 1 and renders["deploy"][0] is ns[0] and ns[0]["metadata"]["name"] == NAMESPACE,
          "deploy", f"the plain manifests do not start with Namespace {NAMESPACE}")
    check(renders["deploy"][1:] == [o for o in renders["default"] if o["kind"] != "CustomResourceDefinition"],
          "deploy", "the plain manifests are not the default render without its CRDs")

    # Helm 4 separates documents with a blank line, Helm 3 does not: compare objects.
    for name in helm3:
        base = name.removeprefix("helm3-")
        theirs = load(os.path.join(args.out, f"{name}.yaml"))
        if theirs != renders[base]:
            changed = [ident(o) for o in theirs if o not in renders[base]] + \
                      [ident(o) for o in renders[base] if o not in theirs]
            failures.append(f"{args.out}/{name}.yaml: Helm 3 renders other objects than Helm 4 ({base} values): "
                            f"{', '.join(sorted(set(changed))) or 'order differs'}")

    check_crd_templates(args.out, args.chart, crds, renders["default"])
    same_file(os.path.join(args.out, "deploy.yaml"), args.deploy, "is stale (differs from a fresh render)",
              "regenerate it with scripts/chart-check --update")

    check_schema_covers_values(args.chart)
    check_monitoring(args.out, args.chart, renders["default"])
    check_examples(crds)
    check_broker_client(args.broker_client, args.chart)
    check_image()
    check_lua(args.lua)

    counts = ", ".join(f"{n} {len(objs)}" for n, objs in renders.items())
    print(f"renders checked (objects): {counts}" + (f"; Helm 3 renders identical: {', '.join(helm3)}" if helm3 and not
                                                    [f for f in failures if 'Helm 3' in f] else ""))
    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print("chart_check.py: all checks passed" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
