"""deploy/kubernetes/ passes the Kubernetes schemas offline and runs what compose and the README run (issue 25).

The example overlay is rendered here, in Python, the way kustomize would render it (no kustomize binary is needed):
``render`` takes the few kustomization fields the manifests use (resources, namespace, images, a secretGenerator,
patches) and refuses any other, so a manifest that grows past what it understands fails here instead of being
checked half-rendered. Every rendered object is then validated with kubernetes-validate (PyPI, pinned in
requirements-dev.txt), whose bundled JSON schemas need no network, in strict mode (an unknown field is an error).
The ServiceMonitors are a CRD of the Prometheus Operator, which those schemas do not cover: their shape and their
references are checked by hand below.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from .conftest import ROOT

# The newest Kubernetes whose schemas kubernetes-validate 1.37.0 bundles (its 1.37.0-local-strict folder).
KUBERNETES_VERSION = "1.37.0"

K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
# The overlay's secrets file is never committed: the suite renders its example (placeholders) in its place.
SECRET_FILES = {"secrets.env": "secrets.env.example"}
# Kinds a namespace does not apply to.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass"}
KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "images",
    "secretGenerator",
    "generatorOptions",
    "patches",
}

compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
readme = (ROOT / "README.md").read_text()


# --- rendering -----------------------------------------------------------------------------------------------


def _documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def render(folder: Path) -> list[dict]:
    """The objects ``kustomize build folder`` makes, for the kustomization fields the manifests use."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, (
        f"{folder}/kustomization.yaml uses {sorted(unknown)}, which tests/test_kubernetes.py cannot render"
    )
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        objects += render(path) if path.is_dir() else _documents(path)
    options = kustomization.get("generatorOptions", {})
    assert options in ({}, {"disableNameSuffixHash": True}), f"{folder}: generatorOptions {options} not rendered here"
    for generator in kustomization.get("secretGenerator", []):
        assert set(generator) <= {"name", "envs"}, f"{folder}: secretGenerator fields {sorted(generator)}"
        data = {}
        for name in generator["envs"]:
            data.update(env_file(folder / SECRET_FILES.get(name, name)))
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "data": encoded,
            }
        )
    for patch in kustomization.get("patches", []):
        assert set(patch) <= {"path", "target"}, f"{folder}: patch fields {sorted(patch)}"
        _apply_patch(objects, yaml.safe_load((folder / patch["path"]).read_text()), patch.get("target"))
    for image in kustomization.get("images", []):
        for container in containers(objects):
            if container["image"].split(":")[0].split("@")[0] == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if namespace := kustomization.get("namespace"):
        for thing in objects:
            if thing["kind"] not in CLUSTER_KINDS:
                thing["metadata"]["namespace"] = namespace
    return objects


def env_file(path: Path) -> dict[str, str]:
    """A kustomize env file: KEY=VALUE lines, # comments and blank lines skipped."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _apply_patch(objects: list[dict], patch, target: dict | None) -> None:
    if isinstance(patch, list):  # JSON 6902
        assert target, "a JSON 6902 patch needs a target"
        matched = [
            thing
            for thing in objects
            if thing["kind"] == target["kind"]
            and target.get("name", thing["metadata"]["name"]) == thing["metadata"]["name"]
        ]
        assert matched, f"patch target {target} matches nothing"
        for thing in matched:
            for operation in patch:
                _json_patch(thing, operation)
        return
    # A strategic-merge patch, for maps only (lists would need kustomize's merge keys: use JSON 6902 for them).
    matched = [
        thing
        for thing in objects
        if thing["kind"] == patch["kind"] and thing["metadata"]["name"] == patch["metadata"]["name"]
    ]
    assert len(matched) == 1, (
        f"strategic-merge patch of {patch['kind']}/{patch['metadata']['name']} matches {len(matched)}"
    )
    _merge(matched[0], patch)


def _merge(into: dict, patch: dict) -> None:
    for key, value in patch.items():
        assert not isinstance(value, list), f"{key}: a list in a strategic-merge patch; use a JSON 6902 patch"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _json_patch(thing: dict, operation: dict) -> None:
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
    node = thing
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if operation["op"] == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif operation["op"] == "replace":
            node[index] = copy.deepcopy(operation["value"])
        else:
            assert operation["op"] == "remove", operation
            del node[index]
    elif operation["op"] in ("add", "replace"):
        assert operation["op"] == "add" or last in node, f"replace of a missing {operation['path']}"
        node[last] = copy.deepcopy(operation["value"])
    else:
        assert operation["op"] == "remove", operation
        del node[last]


def containers(objects: list[dict], *, init: bool = True) -> list[dict]:
    """Every container of every pod template (Deployments, Jobs)."""
    found = []
    for thing in objects:
        if thing["kind"] in ("Deployment", "Job"):
            pod = thing["spec"]["template"]["spec"]
            found += pod["containers"] + (pod.get("initContainers", []) if init else [])
    return found


rendered = render(OVERLAY)


def one(kind: str, name: str, objects: list[dict] | None = None) -> dict:
    matched = [t for t in (objects or rendered) if t["kind"] == kind and t["metadata"]["name"] == name]
    assert len(matched) == 1, f"{kind}/{name}: {len(matched)} in the rendered overlay"
    return matched[0]


def container(deployment: str, kind: str = "Deployment") -> dict:
    return one(kind, deployment)["spec"]["template"]["spec"]["containers"][0]


def pod(name: str, kind: str = "Deployment") -> dict:
    return one(kind, name)["spec"]["template"]["spec"]


def schema_error(thing: dict) -> str | None:
    """None when ``thing`` passes the Kubernetes schemas of KUBERNETES_VERSION (strict); otherwise what is wrong."""
    try:
        kubernetes_validate.validate(thing, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path) or "(top)"
        return f"{thing['kind']}/{thing['metadata']['name']}: {where}: {error.message} (Kubernetes {error.version})"
    except kubernetes_validate.SchemaNotFoundError as error:
        return f"{thing['kind']}/{thing['metadata']['name']}: {error.message}"
    return None


def environment(name: str, kind: str = "Deployment", *, index: int = 0) -> dict[str, str | None]:
    """The variables a container sets, by name: the ConfigMaps it takes whole, then its own env (a secret's
    value as None)."""
    spec = one(kind, name)["spec"]["template"]["spec"]["containers"][index]
    names: dict[str, str | None] = {}
    for source in spec.get("envFrom", []):
        names.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in spec.get("env", []):
        names[variable["name"]] = variable.get("value")
    return names


# --- the schemas ---------------------------------------------------------------------------------------------


def test_the_bundled_schemas_are_the_newest_kubernetes_validate_has():
    """KUBERNETES_VERSION is the newest minor version kubernetes-validate bundles, so the check is of a current one."""
    newest = kubernetes_validate.latest_version()
    assert kubernetes_validate.major_minor(newest) == kubernetes_validate.major_minor(KUBERNETES_VERSION), (
        f"kubernetes-validate bundles Kubernetes {newest}: set KUBERNETES_VERSION to it"
    )


def test_every_manifest_passes_the_kubernetes_schemas():
    """Every object of the rendered overlay but the ServiceMonitors (a CRD) passes the schemas, strictly."""
    checked = [thing for thing in rendered if thing["kind"] != "ServiceMonitor"]
    errors = [error for thing in checked if (error := schema_error(thing))]
    assert errors == []
    kinds = {thing["kind"] for thing in checked}
    assert {"Deployment", "Job", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"NetworkPolicy", "ConfigMap", "Secret", "Namespace"} <= kinds


def test_the_base_renders_alone_and_every_file_is_rendered_or_named():
    """The base renders without the overlay, and every YAML file under deploy/kubernetes/ is one the suite checks."""
    base = render(BASE)
    assert [error for thing in base if thing["kind"] != "ServiceMonitor" and (error := schema_error(thing))] == []
    used = {BASE / "kustomization.yaml", OVERLAY / "kustomization.yaml"}
    for folder in (BASE, OVERLAY):
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        used |= {folder / entry for entry in kustomization["resources"] if (folder / entry).is_file()}
        used |= {folder / patch["path"] for patch in kustomization.get("patches", [])}
    # Checked by their own tests below.
    used |= {
        OVERLAY / "hpa-on-connections.yaml",
        K8S / "redis" / "values.yaml",
        K8S / "prometheus-adapter" / "values.yaml",
    }
    files = set(K8S.rglob("*.yaml")) | set(K8S.rglob("*.yml"))
    unchecked = sorted(str(path.relative_to(K8S)) for path in files - used)
    assert not unchecked, f"manifests no test renders: {unchecked}; list them in a kustomization or check them here"


BROKEN = {
    "replicas as a word": (lambda d: d["spec"].update(replicas="two"), "spec.replicas: 'two' is not of type 'integer'"),
    "a misspelled field": (
        lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSecond=25),
        "Additional properties are not allowed ('terminationGracePeriodSecond' was unexpected)",
    ),
    "no selector": (lambda d: d["spec"].pop("selector"), "spec: 'selector' is a required property"),
}


@pytest.mark.parametrize("breakage", BROKEN)
def test_a_broken_manifest_fails_with_a_message_naming_the_problem(breakage):
    """The check can be seen to fail: the web Deployment, broken on purpose, is refused, and the message says where."""
    broken = copy.deepcopy(one("Deployment", "web"))
    change, expected = BROKEN[breakage]
    change(broken)
    error = schema_error(broken)
    assert error is not None, f"{breakage}: passed the schemas"
    assert expected in error, error
    assert error.startswith("Deployment/web: "), error


# --- the same processes as compose and the README ------------------------------------------------------------


def test_the_commands_are_compose_s_and_the_readme_s():
    """web, market and migrate run exactly docker-compose.yml's commands, which are README.md's."""
    services = compose["services"]
    for name, kind in (("web", "Deployment"), ("market", "Deployment"), ("migrate", "Job")):
        command = container(name, kind)["command"]
        assert command == services[name]["command"], (
            f"{kind}/{name} runs {command}, compose {services[name]['command']}"
        )
    web = " ".join(container("web")["command"]).replace("-b 0.0.0.0 -p 8000", "-b HOST -p PORT")
    assert f"`{web}`" in readme, f"README.md's Processes table does not name {web!r}"
    assert "`python manage.py run_market" in readme, "README.md does not name the market command"
    migrate = " ".join(container("migrate", "Job")["command"])
    assert migrate.removesuffix(" --noinput") in readme, f"README.md does not name {migrate!r}"
    for name in ("web", "market"):
        wait = pod(name)["initContainers"][0]["command"]
        assert wait == ["python", "manage.py", "migrate", "--check"], f"{name} waits with {wait}"


def _settings_variables() -> set[str]:
    """Every variable config/settings.py reads through config/environment.py's readers."""
    text = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r"env\.(?:flag|whole|number|text|names|raw)\(\s*\"([A-Z][A-Z0-9_]+)\"", text))


def _readme_variables() -> set[str]:
    """The variables README.md's Environment table names (first column)."""
    section = readme.split("### Environment", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


@pytest.mark.parametrize("name,kind", [("web", "Deployment"), ("market", "Deployment"), ("migrate", "Job")])
def test_the_environment_is_compose_s_and_every_variable_is_a_known_one(name, kind):
    """Each container sets every variable compose sets for it, and only variables the settings read and the
    README documents."""
    variables = environment(name, kind)
    ours = set(variables)
    theirs = set(compose["services"][name]["environment"])
    missing, unread, undocumented = theirs - ours, ours - _settings_variables(), ours - _readme_variables()
    assert not missing, f"{kind}/{name} lacks what docker-compose.yml sets: {sorted(missing)}"
    assert not unread, f"{kind}/{name} sets variables config/settings.py never reads: {sorted(unread)}"
    assert not undocumented, f"{kind}/{name} sets variables README.md's Environment table lacks: {sorted(undocumented)}"
    for same in ("DJANGO_DEBUG", "TICKER_TRUSTED_PROXIES", "MARKET_METRICS_PORT", "MARKET_METRICS_ADDRESS"):
        if same in theirs:
            assert variables[same] == compose["services"][name]["environment"][same], (
                f"{kind}/{name}: {same}={variables[same]!r}, compose {compose['services'][name]['environment'][same]!r}"
            )


def test_the_secrets_come_from_a_secret_and_no_secret_is_in_the_repository():
    """DJANGO_SECRET_KEY and DATABASE_URL (and the Redis and metrics passwords) are secretKeyRefs to a key the
    example file names; the example's placeholders are refused at start-up; the real file is git-ignored."""
    from config.environment import Environment, SettingError

    example = env_file(OVERLAY / "secrets.env.example")
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL"} <= set(example)
    for name, value in example.items():
        with pytest.raises(SettingError, match="placeholder"):
            Environment({name: value}).raw(name)
    for spec in containers(rendered):
        for variable in spec.get("env", []):
            if variable["name"] in example:
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                assert reference, f"{spec['name']}: {variable['name']} is set in the manifest, not from the Secret"
                assert reference["name"] == "ticker-secrets" and reference["key"] in example, reference
    assert not set(example) & set(one("ConfigMap", "ticker-env")["data"]), "a secret in the ConfigMap"
    committed = [path for path in K8S.rglob("*") if path.is_file() and "kind: Secret" in path.read_text()]
    assert committed == [], "a Secret manifest is committed"
    assert "deploy/kubernetes/overlays/*/secrets.env" in (ROOT / ".gitignore").read_text().splitlines()


# --- web ---------------------------------------------------------------------------------------------------------


def test_web_probes_are_readyz_and_healthz_on_its_port():
    """Readiness asks /readyz, liveness (and start-up) /healthz, on the port daphne listens on."""
    from ticker.ops.health import PATHS

    web = container("web")
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= set(PATHS)
    (port,) = web["ports"]
    listens = int(web["command"][web["command"].index("-p") + 1])
    assert port["containerPort"] == listens, f"web's port {port['containerPort']}, daphne's -p {listens}"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert web[probe]["httpGet"]["port"] == port["name"], probe
    # /readyz takes up to READY_WAIT_S to answer; compose's check gives it 5 s.
    assert web["readinessProbe"]["timeoutSeconds"] >= 5


def test_web_stops_after_its_clients_are_sent_elsewhere():
    """preStop waits while the pod leaves the endpoints; then SIGTERM's 1001 closes and daphne's exit fit the grace."""
    from ticker.edge.server import GOING_AWAY, GRACE_S

    spec = pod("web")
    wait = container("web")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert wait >= 5, "ingress-nginx and the endpoints need a few seconds to stop sending new clients"
    assert GOING_AWAY == 1001
    assert spec["terminationGracePeriodSeconds"] >= wait + GRACE_S + 5, "no room for daphne's 1001s and exit"


def test_web_resources_are_requested_and_the_autoscaler_targets_web():
    """Every container requests CPU and memory; the HPA scales the web Deployment on CPU within its replicas."""
    for spec in containers(rendered):
        assert {"cpu", "memory"} <= set(spec["resources"]["requests"]), spec["name"]
        assert "memory" in spec["resources"]["limits"], spec["name"]
    hpa = one("HorizontalPodAutoscaler", "web")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in one("Deployment", "web")["spec"], "each kubectl apply would undo the autoscaler's count"
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]


def test_the_connections_autoscaling_patch_is_valid_and_names_a_real_metric():
    """The documented path to ticker_connections: the patch renders a valid HPA on a metric web exports, served
    by the adapter rule."""
    from ticker.ops import metrics

    hpa = copy.deepcopy(one("HorizontalPodAutoscaler", "web"))
    for operation in yaml.safe_load((OVERLAY / "hpa-on-connections.yaml").read_text()):
        _json_patch(hpa, operation)
    assert schema_error(hpa) is None, schema_error(hpa)
    (pods,) = [metric["pods"] for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"]
    assert pods["metric"]["name"] == "ticker_connections"
    # The gauge web processes export (read from its registry: rendering the exposition would ask the process's
    # hub for its figures, and another test may have left one whose event loop is closed).
    exported = metrics.WEB.restricted_registry(["ticker_connections"]).collect()
    assert [family.name for family in exported] == ["ticker_connections"]
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == "ticker_connections" and "ticker_connections" in rule["seriesQuery"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert "hpa-on-connections.yaml" in (K8S / "README.md").read_text()


def test_the_ingress_is_set_for_websockets_and_sse_and_names_the_allowed_host():
    """ingress-nginx: long timeouts, no buffering; its host is DJANGO_ALLOWED_HOSTS; it sends to web's port."""
    ingress = one("Ingress", "web")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 75, f"{timeout} below compose's nginx"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    allowed = {name.strip() for name in one("ConfigMap", "ticker-env")["data"]["DJANGO_ALLOWED_HOSTS"].split(",")}
    assert hosts == allowed, f"Ingress hosts {hosts}, DJANGO_ALLOWED_HOSTS {allowed}"
    assert {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]} == hosts
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = one("Service", backend["name"])
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


# --- market, services, disruption, policies, scraping ------------------------------------------------------------


def test_two_markets_and_their_metrics_port_as_in_compose():
    """Two market replicas (the lease makes one lead); the metrics port compose gives it, on its container and
    headless Service."""
    assert one("Deployment", "market")["spec"]["replicas"] == compose["services"]["market"]["deploy"]["replicas"] == 2
    port = int(compose["services"]["market"]["environment"]["MARKET_METRICS_PORT"])
    assert [p["containerPort"] for p in container("market")["ports"]] == [port]
    service = one("Service", "market")
    assert service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in service["spec"]["ports"]] == [port]


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(name: str, kind: str = "Deployment") -> dict:
    return one(kind, name)["spec"]["template"]["metadata"]["labels"]


def test_services_and_budgets_select_their_pods_only():
    """Each Service and PodDisruptionBudget selects its own Deployment's pods and no other's."""
    for kind in ("Service", "PodDisruptionBudget"):
        for name in ("web", "market"):
            thing = one(kind, name)
            selector = thing["spec"]["selector"]
            selector = selector if kind == "PodDisruptionBudget" else {"matchLabels": selector}
            for other in ("web", "market"):
                assert _selects(selector, _pod_labels(other)) == (other == name), f"{kind}/{name} and {other}'s pods"
    assert one("PodDisruptionBudget", "market")["spec"]["minAvailable"] == 1


def test_network_policies_keep_metrics_and_the_database_private():
    """Every ticker pod has an ingress policy; the market's metrics port opens to the monitoring namespace only;
    the database's port to web, market and migrate only."""
    policies = [thing for thing in rendered if thing["kind"] == "NetworkPolicy"]
    for name, kind in (("web", "Deployment"), ("market", "Deployment"), ("migrate", "Job")):
        assert any(_selects(p["spec"]["podSelector"], _pod_labels(name, kind)) for p in policies), f"{name}: no policy"
    (market,) = [p for p in policies if _selects(p["spec"]["podSelector"], _pod_labels("market"))]
    sources = [peer for rule in market["spec"]["ingress"] for peer in rule["from"]]
    assert sources and all(
        peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"} for peer in sources
    ), sources
    database = one("NetworkPolicy", "database")
    (rule,) = database["spec"]["ingress"]
    assert [port["port"] for port in rule["ports"]] == [5432]
    (peer,) = rule["from"]
    for name, kind in (("web", "Deployment"), ("market", "Deployment"), ("migrate", "Job")):
        assert _selects(peer["podSelector"], _pod_labels(name, kind)), f"{name} cannot reach the database"
    assert not _selects(peer["podSelector"], {"app.kubernetes.io/name": "ticker", "app.kubernetes.io/component": "x"})
    assert "namespaceSelector" not in peer, "the database opens to other namespaces"


def test_service_monitors_are_well_formed_and_scrape_both_processes():
    """The ServiceMonitors (a CRD the schemas lack), checked by hand: shape, a Service each selects, a named port
    of it, and web's token from the Secret."""
    monitors = [thing for thing in rendered if thing["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"web", "market"}
    secrets = env_file(OVERLAY / "secrets.env.example")
    for monitor in monitors:
        name = monitor["metadata"]["name"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}, f"ServiceMonitor/{name}: {sorted(monitor)}"
        assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector"}, sorted(monitor["spec"])
        selected = [
            s
            for s in rendered
            if s["kind"] == "Service" and _selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in selected] == [name], f"ServiceMonitor/{name} selects {selected}"
        ports = {port["name"] for port in selected[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "authorization"}, sorted(endpoint)
            assert endpoint["port"] in ports, f"ServiceMonitor/{name}: port {endpoint['port']} not in {ports}"
            assert endpoint["path"] == "/metrics" and re.fullmatch(r"\d+s", endpoint["interval"])
            if "authorization" in endpoint:
                credentials = endpoint["authorization"]["credentials"]
                assert endpoint["authorization"]["type"] == "Bearer"
                assert credentials["name"] == "ticker-secrets" and credentials["key"] in secrets
    web = next(m for m in monitors if m["metadata"]["name"] == "web")
    assert "authorization" in web["spec"]["endpoints"][0], "web's /metrics needs TICKER_METRICS_TOKEN"
    assert environment("web")["TICKER_METRICS_ALLOW"] == "127.0.0.1/32,::1/128"


def test_the_overlay_asks_the_sentinels_of_the_redis_chart_values():
    """REDIS_SENTINELS lists the chart's three sentinel pods by name and REDIS_SENTINEL_MASTER is its master set, in
    a form the site accepts."""
    from ticker.runtime.redis_conn import RedisConfig

    values = yaml.safe_load((K8S / "redis" / "values.yaml").read_text())
    assert values["sentinel"]["enabled"] and values["architecture"] == "replication"
    data = one("ConfigMap", "ticker-env")["data"]
    config = RedisConfig.parse(
        url="redis://:password@unused/0",
        sentinels=data["REDIS_SENTINELS"],
        master_name=data["REDIS_SENTINEL_MASTER"],
        sentinel_password="password",
    )
    namespace = one("Namespace", "ticker")["metadata"]["name"]
    expected = {
        (f"ticker-redis-node-{i}.ticker-redis-headless.{namespace}.svc.cluster.local", 26379)
        for i in range(values["replica"]["replicaCount"])
    }
    assert set(config.sentinels) == expected
    assert config.master_name == values["sentinel"]["masterSet"]
    assert values["auth"]["sentinel"] and "REDIS_SENTINEL_PASSWORD" in env_file(OVERLAY / "secrets.env.example")
    assert values["networkPolicy"] == {"enabled": True, "allowExternal": False}
    for name in ("web", "market"):
        assert _pod_labels(name)["ticker-redis-client"] == "true", f"{name} cannot reach Redis past the chart's policy"
