//! `deploy/k8s/`.

use std::collections::BTreeSet;

use serde_norway::Value;

use crate::support::{
    self, API_PORT, Binary, DEFAULT_PARTITIONS, DEFAULT_SHUTDOWN_TIMEOUT_SECS, WORKER_HTTP_PORT,
    assert_no_problems, at, scalar, text_at, words,
};

const DIR: &str = "deploy/k8s";

/// One resource and the file it came from.
struct Resource {
    file: String,
    value: Value,
}

impl Resource {
    fn kind(&self) -> String {
        text_at(&self.value, &["kind"]).unwrap_or_default()
    }

    fn name(&self) -> String {
        text_at(&self.value, &["metadata", "name"]).unwrap_or_default()
    }

    fn label(&self) -> String {
        format!("{}/{} ({})", self.kind(), self.name(), self.file)
    }
}

/// Every resource the kustomization lists.
struct Manifests {
    resources: Vec<Resource>,
}

impl Manifests {
    fn load() -> Manifests {
        let resources = kustomization_resources()
            .into_iter()
            .flat_map(|file| {
                support::yaml_documents(&format!("{DIR}/{file}"))
                    .into_iter()
                    .map(move |value| Resource {
                        file: file.clone(),
                        value,
                    })
            })
            .collect();
        Manifests { resources }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Resource> {
        self.resources.iter().filter(|r| r.kind() == kind).collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Resource> {
        self.of_kind(kind).into_iter().find(|r| r.name() == name)
    }

    /// Deployments and Jobs with the binary their (single) container runs.
    fn workloads(&self) -> Vec<(&Resource, Binary)> {
        self.resources
            .iter()
            .filter(|r| matches!(r.kind().as_str(), "Deployment" | "Job"))
            .filter_map(|r| {
                let container = containers(&r.value).into_iter().next()?;
                Some((r, Binary::of_command(&container_command(container))?))
            })
            .collect()
    }

    /// The one Deployment running `binary`.
    fn deployment(&self, binary: Binary) -> &Resource {
        let found: Vec<&Resource> = self
            .workloads()
            .into_iter()
            .filter(|(r, b)| r.kind() == "Deployment" && *b == binary)
            .map(|(r, _)| r)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{DIR}: expected one Deployment running {}",
            binary.file_name()
        );
        found[0]
    }

    /// Every variable a container gets, by name, with its literal value where one is
    /// known (`env[].value` or a ConfigMap's data). Unknown references are problems.
    fn container_env(
        &self,
        container: &Value,
        problems: &mut Vec<String>,
    ) -> Vec<(String, Option<String>)> {
        let mut env = Vec::new();
        for source in sequence(container.get("envFrom")) {
            let (kind, name) = if let Some(name) = text_at(source, &["configMapRef", "name"]) {
                ("ConfigMap", name)
            } else if let Some(name) = text_at(source, &["secretRef", "name"]) {
                ("Secret", name)
            } else {
                problems.push("envFrom without configMapRef or secretRef".to_owned());
                continue;
            };
            let Some(resource) = self.find(kind, &name) else {
                problems.push(format!(
                    "envFrom names {kind} {name}, which is not in the kustomization"
                ));
                continue;
            };
            let data = data_of(&resource.value);
            if let Some(prefix) = text_at(source, &["prefix"]) {
                problems.push(format!(
                    "envFrom {kind} {name} has a prefix {prefix}; not supported here"
                ));
            }
            env.extend(data);
        }
        for variable in sequence(container.get("env")) {
            let Some(name) = text_at(variable, &["name"]) else {
                continue;
            };
            for (reference, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")]
            {
                let Some(reference) = at(variable, &["valueFrom", reference]) else {
                    continue;
                };
                let source = text_at(reference, &["name"]).unwrap_or_default();
                let key = text_at(reference, &["key"]).unwrap_or_default();
                let has_key = self
                    .find(kind, &source)
                    .is_some_and(|r| data_of(&r.value).iter().any(|(k, _)| *k == key));
                if !has_key {
                    problems.push(format!(
                        "{name} refers to key {key} of {kind} {source}, which does not exist"
                    ));
                }
            }
            env.push((name, text_at(variable, &["value"])));
        }
        env
    }
}

/// `resources` of kustomization.yaml.
fn kustomization_resources() -> Vec<String> {
    let documents = support::yaml_documents(&format!("{DIR}/kustomization.yaml"));
    let kustomization = documents.first().expect("kustomization.yaml is empty");
    sequence(kustomization.get("resources"))
        .into_iter()
        .filter_map(scalar)
        .collect()
}

fn sequence(value: Option<&Value>) -> Vec<&Value> {
    value
        .and_then(Value::as_sequence)
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

/// `data` and `stringData` of a ConfigMap or Secret.
fn data_of(resource: &Value) -> Vec<(String, Option<String>)> {
    ["data", "stringData"]
        .into_iter()
        .filter_map(|field| resource.get(field)?.as_mapping())
        .flat_map(|mapping| {
            mapping
                .iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v))))
        })
        .collect()
}

fn pod_spec(workload: &Value) -> Option<&Value> {
    at(workload, &["spec", "template", "spec"])
}

fn containers(workload: &Value) -> Vec<&Value> {
    sequence(pod_spec(workload).and_then(|spec| spec.get("containers")))
}

fn container_command(container: &Value) -> Vec<String> {
    let mut command = container.get("command").map(words).unwrap_or_default();
    command.extend(container.get("args").map(words).unwrap_or_default());
    command
}

/// A probe's or a Service's port, by number or by the container port's name.
fn resolve_port(port: &Value, container: &Value) -> Option<u16> {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).ok();
    }
    let name = port.as_str()?;
    sequence(container.get("ports"))
        .into_iter()
        .find(|p| text_at(p, &["name"]).as_deref() == Some(name))
        .and_then(|p| at(p, &["containerPort"]))
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
}

fn probe(container: &Value, kind: &str) -> Option<(u16, String)> {
    let http = at(container, &[kind, "httpGet"])?;
    Some((
        resolve_port(http.get("port")?, container)?,
        text_at(http, &["path"])?,
    ))
}

fn pod_labels(workload: &Value) -> Vec<(String, String)> {
    at(workload, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_mapping)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every label of `selector` is on the pods of `workload`.
fn selects(selector: Option<&Value>, workload: &Value) -> bool {
    let labels = pod_labels(workload);
    let Some(selector) = selector.and_then(Value::as_mapping) else {
        return false;
    };
    !selector.is_empty()
        && selector.iter().all(|(k, v)| {
            let (Some(k), Some(v)) = (scalar(k), scalar(v)) else {
                return false;
            };
            labels.contains(&(k, v))
        })
}

#[test]
fn kustomization_lists_every_manifest_and_only_existing_ones() {
    let listed: BTreeSet<String> = kustomization_resources().into_iter().collect();
    let dir = support::workspace_root().join(DIR);
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .filter(|name| name != "kustomization.yaml")
        .collect();
    let missing: Vec<String> = listed
        .difference(&present)
        .map(|f| format!("kustomization.yaml lists {f}, which does not exist"))
        .chain(
            present
                .difference(&listed)
                .map(|f| format!("{f} is not in kustomization.yaml")),
        )
        .collect();
    assert_no_problems(DIR, &missing);

    let manifests = Manifests::load();
    let mut problems = Vec::new();
    for resource in &manifests.resources {
        if resource.kind().is_empty()
            || resource.name().is_empty()
            || text_at(&resource.value, &["apiVersion"]).is_none()
        {
            problems.push(format!(
                "{}: a resource without apiVersion, kind or name",
                resource.file
            ));
        }
    }
    assert_no_problems(DIR, &problems);
}

#[test]
fn settings_of_the_binaries_are_their_flags() {
    let manifests = Manifests::load();
    let mut problems = Vec::new();
    for (workload, binary) in manifests.workloads() {
        for container in containers(&workload.value) {
            let mut found = Vec::new();
            let env = manifests.container_env(container, &mut found);
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("{}: {p}", workload.label())),
            );
            for (name, _) in env {
                if !binary.accepts_env(&name) {
                    problems.push(format!(
                        "{}: {name} is not a setting of {}",
                        workload.label(),
                        binary.file_name()
                    ));
                }
            }
            for word in container_command(container).iter().skip(1) {
                if !binary.help().commands.contains(word) && !binary.help().flags.contains(word) {
                    problems.push(format!(
                        "{}: {word} is not a command of {}",
                        workload.label(),
                        binary.file_name()
                    ));
                }
            }
        }
    }
    assert!(
        manifests
            .workloads()
            .iter()
            .all(|(_, b)| *b != Binary::Mocks),
        "the mock services are not deployed to Kubernetes"
    );
    // Settings nobody reads would escape the checks above.
    let referenced: BTreeSet<String> = manifests
        .workloads()
        .iter()
        .flat_map(|(w, _)| containers(&w.value))
        .flat_map(|c| {
            let from = sequence(c.get("envFrom")).into_iter().filter_map(|s| {
                text_at(s, &["configMapRef", "name"]).or_else(|| text_at(s, &["secretRef", "name"]))
            });
            let refs = sequence(c.get("env")).into_iter().filter_map(|v| {
                text_at(v, &["valueFrom", "secretKeyRef", "name"])
                    .or_else(|| text_at(v, &["valueFrom", "configMapKeyRef", "name"]))
            });
            from.chain(refs).collect::<Vec<_>>()
        })
        .collect();
    for kind in ["ConfigMap", "Secret"] {
        for unused in manifests
            .of_kind(kind)
            .into_iter()
            .filter(|r| !referenced.contains(&r.name()))
        {
            problems.push(format!("{}: no workload reads it", unused.label()));
        }
    }
    assert_no_problems(&format!("{DIR}: settings"), &problems);
}

#[test]
fn probes_use_the_documented_ports_and_paths() {
    let manifests = Manifests::load();
    for (binary, port, setting, replicas) in [
        (Binary::Api, API_PORT, "API_PORT", 2),
        (Binary::Worker, WORKER_HTTP_PORT, "WORKER_HTTP_PORT", 3),
    ] {
        let deployment = manifests.deployment(binary);
        let label = deployment.label();
        assert_eq!(
            at(&deployment.value, &["spec", "replicas"]).and_then(Value::as_u64),
            Some(replicas),
            "{label}: replicas"
        );
        let container = containers(&deployment.value)[0];
        assert_eq!(
            probe(container, "readinessProbe"),
            Some((port, "/ready".to_owned())),
            "{label}: readiness"
        );
        assert_eq!(
            probe(container, "livenessProbe"),
            Some((port, "/health".to_owned())),
            "{label}: liveness"
        );
        if container.get("startupProbe").is_some() {
            assert_eq!(
                probe(container, "startupProbe").map(|(p, _)| p),
                Some(port),
                "{label}: startup"
            );
        }
        let mut problems = Vec::new();
        let env = manifests.container_env(container, &mut problems);
        let configured = env
            .iter()
            .find(|(name, _)| name == setting)
            .and_then(|(_, v)| v.clone());
        assert!(
            configured.is_none_or(|value| value == port.to_string()),
            "{label}: {setting} should be {port}, the port the probes use"
        );
    }

    // The API's Service forwards to the API's port.
    let api = manifests.deployment(Binary::Api);
    let container = containers(&api.value)[0];
    let services: Vec<&Resource> = manifests
        .of_kind("Service")
        .into_iter()
        .filter(|s| selects(at(&s.value, &["spec", "selector"]), &api.value))
        .collect();
    assert_eq!(services.len(), 1, "one Service selects the API's pods");
    for port in sequence(at(&services[0].value, &["spec", "ports"])) {
        let target = port
            .get("targetPort")
            .or_else(|| port.get("port"))
            .expect("a Service port");
        assert_eq!(
            resolve_port(target, container),
            Some(API_PORT),
            "{}: targetPort",
            services[0].label()
        );
    }
}

#[test]
fn worker_id_is_the_pod_name() {
    let manifests = Manifests::load();
    let worker = manifests.deployment(Binary::Worker);
    let container = containers(&worker.value)[0];
    let worker_id = sequence(container.get("env"))
        .into_iter()
        .find(|v| text_at(v, &["name"]).as_deref() == Some("WORKER_ID"))
        .expect("the worker sets WORKER_ID");
    assert_eq!(
        text_at(worker_id, &["valueFrom", "fieldRef", "fieldPath"]).as_deref(),
        Some("metadata.name"),
        "WORKER_ID comes from the downward API, so each pod has its own"
    );
}

#[test]
fn workloads_run_hardened_with_resources_and_time_to_stop() {
    let manifests = Manifests::load();
    let mut problems = Vec::new();
    for (workload, _) in manifests.workloads() {
        let label = workload.label();
        let pod = pod_spec(&workload.value).expect("a pod template");
        if at(pod, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{label}: securityContext.runAsNonRoot: true"));
        }
        let mut env_problems = Vec::new();
        for container in containers(&workload.value) {
            for (field, wanted) in [
                ("readOnlyRootFilesystem", true),
                ("allowPrivilegeEscalation", false),
            ] {
                if at(container, &["securityContext", field]).and_then(Value::as_bool)
                    != Some(wanted)
                {
                    problems.push(format!(
                        "{label}: container securityContext.{field}: {wanted}"
                    ));
                }
            }
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    if at(container, &["resources", bound, resource]).is_none() {
                        problems.push(format!("{label}: resources.{bound}.{resource}"));
                    }
                }
            }
            if workload.kind() != "Deployment" {
                continue;
            }
            let shutdown = manifests
                .container_env(container, &mut env_problems)
                .into_iter()
                .find(|(name, _)| name == "SHUTDOWN_TIMEOUT_SECS")
                .and_then(|(_, v)| v?.parse().ok())
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS);
            let grace = pod
                .get("terminationGracePeriodSeconds")
                .and_then(Value::as_u64);
            if grace.is_none_or(|grace| grace <= shutdown) {
                problems.push(format!(
                    "{label}: terminationGracePeriodSeconds {grace:?} should exceed SHUTDOWN_TIMEOUT_SECS ({shutdown})"
                ));
            }
        }
    }
    assert_no_problems(&format!("{DIR}: workloads"), &problems);
}

#[test]
fn the_migration_job_runs_the_api_migrate_command() {
    let manifests = Manifests::load();
    let jobs: Vec<Vec<String>> = manifests
        .of_kind("Job")
        .into_iter()
        .flat_map(|job| containers(&job.value).into_iter().map(container_command))
        .collect();
    assert!(
        jobs.iter()
            .any(|command| Binary::of_command(command) == Some(Binary::Api)
                && command.get(1).is_some_and(|c| c == "migrate")),
        "a Job runs `orchestrator-api migrate`, found {jobs:?}"
    );
}

#[test]
fn autoscalers_and_disruption_budgets_cover_both_deployments() {
    let manifests = Manifests::load();
    let partitions = manifests
        .of_kind("ConfigMap")
        .into_iter()
        .flat_map(|c| data_of(&c.value))
        .find(|(k, _)| k == "KAFKA_PARTITIONS")
        .and_then(|(_, v)| v?.parse::<u64>().ok())
        .unwrap_or(DEFAULT_PARTITIONS.into());
    for binary in [Binary::Api, Binary::Worker] {
        let deployment = manifests.deployment(binary);
        let name = deployment.name();
        let hpa = manifests
            .of_kind("HorizontalPodAutoscaler")
            .into_iter()
            .find(|h| text_at(&h.value, &["spec", "scaleTargetRef", "name"]) == Some(name.clone()))
            .unwrap_or_else(|| panic!("no HorizontalPodAutoscaler targets Deployment {name}"));
        let label = hpa.label();
        assert_eq!(
            text_at(&hpa.value, &["apiVersion"]).as_deref(),
            Some("autoscaling/v2"),
            "{label}"
        );
        assert_eq!(
            text_at(&hpa.value, &["spec", "scaleTargetRef", "kind"]).as_deref(),
            Some("Deployment"),
            "{label}"
        );
        let min = at(&hpa.value, &["spec", "minReplicas"])
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let max = at(&hpa.value, &["spec", "maxReplicas"])
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let replicas = at(&deployment.value, &["spec", "replicas"])
            .and_then(Value::as_u64)
            .unwrap_or(1);
        assert!(
            min <= replicas && replicas <= max,
            "{label}: {min}..={max} should hold the {replicas} replicas"
        );
        let cpu = sequence(at(&hpa.value, &["spec", "metrics"]))
            .into_iter()
            .any(|m| text_at(m, &["resource", "name"]).as_deref() == Some("cpu"));
        assert!(cpu, "{label}: scales on CPU");
        if binary == Binary::Worker {
            assert!(
                max <= partitions,
                "{label}: workers beyond the {partitions} partitions would idle"
            );
        }
        let budgets = manifests
            .of_kind("PodDisruptionBudget")
            .into_iter()
            .filter(|p| {
                selects(
                    at(&p.value, &["spec", "selector", "matchLabels"]),
                    &deployment.value,
                )
            })
            .count();
        assert_eq!(
            budgets, 1,
            "one PodDisruptionBudget selects the pods of {name}"
        );
    }
}

/// The optional monitoring component holds copies (kustomize reads no file outside a
/// kustomization's folder): they must say what deploy/monitoring says.
#[test]
fn the_monitoring_component_copies_the_rules_and_the_dashboard() {
    let component = format!("{DIR}/components/monitoring");
    let rules = support::yaml_documents("deploy/monitoring/alerts.yaml");
    let rule = support::yaml_documents(&format!("{component}/prometheusrule.yaml"));
    assert_eq!(
        text_at(&rule[0], &["kind"]).as_deref(),
        Some("PrometheusRule")
    );
    assert_eq!(
        rule[0].get("spec").and_then(|spec| spec.get("groups")),
        rules[0].get("groups"),
        "prometheusrule.yaml's groups differ from deploy/monitoring/alerts.yaml"
    );
    assert!(
        support::read(&format!("{component}/orchestrator.json"))
            == support::read("deploy/monitoring/grafana/orchestrator.json"),
        "{component}/orchestrator.json differs from deploy/monitoring/grafana/orchestrator.json"
    );
    // Every file the component lists exists; the monitors pick the workloads' labels.
    let kustomization = support::yaml_documents(&format!("{component}/kustomization.yaml"));
    for resource in sequence(kustomization[0].get("resources")) {
        let file = scalar(resource).expect("a file name");
        let monitor = support::yaml_documents(&format!("{component}/{file}"));
        let name = text_at(&monitor[0], &["metadata", "name"]).expect("a name");
        if let Some(selected) = text_at(
            &monitor[0],
            &["spec", "selector", "matchLabels", "app.kubernetes.io/name"],
        ) {
            assert_eq!(selected, name, "{file} selects what it is named after");
        }
    }
}
