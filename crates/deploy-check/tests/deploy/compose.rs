//! `docker-compose.yml`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_norway::Value;

use crate::support::{
    self, API_PORT, Binary, DEFAULT_DLQ_TOPIC, DEFAULT_PARTITIONS, DEFAULT_SHUTDOWN_TIMEOUT_SECS,
    DEFAULT_TOPIC, MOCK_PORTS, WORKER_HTTP_PORT, assert_no_problems, at, scalar, text_at, words,
};

pub const FILE: &str = "docker-compose.yml";

/// The compose file, merge keys applied.
pub struct Compose {
    services: BTreeMap<String, Value>,
}

impl Compose {
    pub fn load() -> Compose {
        let documents = support::yaml_documents(FILE);
        assert_eq!(documents.len(), 1, "{FILE} should hold one YAML document");
        let services = documents[0]
            .get("services")
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("{FILE} has no services"))
            .iter()
            .filter_map(|(name, service)| Some((scalar(name)?, service.clone())))
            .collect();
        Compose { services }
    }

    pub fn services(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.services.iter().map(|(name, s)| (name.as_str(), s))
    }

    pub fn service(&self, name: &str) -> Option<&Value> {
        self.services.get(name)
    }

    /// Services that run `binary` (migration jobs excluded).
    pub fn running(&self, binary: Binary) -> Vec<(&str, &Value)> {
        self.services()
            .filter(|(_, s)| binary_of(s) == Some(binary) && !is_migration(s))
            .collect()
    }

    /// The one service that runs `binary`.
    pub fn single(&self, binary: Binary) -> (&str, &Value) {
        let running = self.running(binary);
        assert_eq!(
            running.len(),
            1,
            "{FILE}: expected one service running {}, found {:?}",
            binary.file_name(),
            running.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        running[0]
    }
}

/// The service's command; for the app image without one, the image's `CMD`.
pub fn command(service: &Value) -> Vec<String> {
    let command = service.get("command").map(words).unwrap_or_default();
    if command.is_empty() && uses_app_image(service) {
        return vec![Binary::Api.file_name().to_owned()];
    }
    command
}

pub fn binary_of(service: &Value) -> Option<Binary> {
    Binary::of_command(&command(service))
}

fn is_migration(service: &Value) -> bool {
    command(service).iter().any(|word| word == "migrate")
}

/// Built from deploy/Dockerfile (and so has deploy/healthcheck.sh as `healthcheck`).
fn uses_app_image(service: &Value) -> bool {
    text_at(service, &["build", "dockerfile"]).as_deref() == Some("deploy/Dockerfile")
}

fn is_one_shot(service: &Value) -> bool {
    text_at(service, &["restart"]).as_deref() == Some("no")
}

/// `environment`, as a mapping or as a list of `NAME=value`.
pub fn environment(service: &Value) -> BTreeMap<String, Option<String>> {
    match service.get("environment") {
        Some(Value::Mapping(mapping)) => mapping
            .iter()
            .filter_map(|(k, v)| Some((scalar(k)?, scalar(v))))
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(scalar)
            .map(|item| match item.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (item, None),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn env_value(service: &Value, name: &str) -> Option<String> {
    environment(service).get(name).cloned().flatten()
}

/// `depends_on` as (service, condition); the short list form has no condition.
fn depends_on(service: &Value) -> Vec<(String, Option<String>)> {
    match service.get("depends_on") {
        Some(Value::Sequence(items)) => {
            items.iter().filter_map(scalar).map(|n| (n, None)).collect()
        }
        Some(Value::Mapping(mapping)) => mapping
            .iter()
            .filter_map(|(name, spec)| Some((scalar(name)?, text_at(spec, &["condition"]))))
            .collect(),
        _ => Vec::new(),
    }
}

/// The words of the health check's `test`, without the leading `CMD`/`CMD-SHELL`.
fn health_test(service: &Value) -> Option<Vec<String>> {
    let test = words(at(service, &["healthcheck", "test"])?);
    let (kind, rest) = test.split_first()?;
    match kind.as_str() {
        "CMD" => Some(rest.to_vec()),
        "CMD-SHELL" => Some(
            rest.iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect(),
        ),
        "NONE" => None,
        _ => Some(test),
    }
}

/// Port and path of a `healthcheck PORT [PATH]` test (deploy/healthcheck.sh).
pub fn health_probe(service: &Value) -> Option<(u16, String)> {
    let test = health_test(service)?;
    let script = test.iter().position(|word| word == "healthcheck")?;
    let port = test.get(script + 1)?.parse().ok()?;
    let path = test
        .get(script + 2)
        .cloned()
        .unwrap_or_else(|| "/health".to_owned());
    Some((port, path))
}

/// The word after `flag` in a command.
fn flag_value(command: &[String], flag: &str) -> Option<String> {
    let at = command.iter().position(|word| word == flag)?;
    command.get(at + 1).cloned()
}

/// Port a service's process listens on: its setting, else the binary's default.
fn listen_port(service: &Value, binary: Binary) -> Option<u16> {
    let (env, contract_default) = match binary {
        Binary::Api => ("API_PORT", API_PORT),
        Binary::Worker => ("WORKER_HTTP_PORT", WORKER_HTTP_PORT),
        Binary::Mocks => return flag_value(&command(service), "--port")?.parse().ok(),
    };
    let value = env_value(service, env)
        .or_else(|| binary.help().defaults.get(env).cloned())
        .unwrap_or_else(|| contract_default.to_string());
    value.parse().ok()
}

fn shutdown_timeout(service: &Value) -> Duration {
    let secs = env_value(service, "SHUTDOWN_TIMEOUT_SECS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

fn replicas(service: &Value) -> Option<u64> {
    at(service, &["deploy", "replicas"]).and_then(Value::as_u64)
}

#[test]
fn services_start_after_what_they_depend_on() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for (name, service) in compose.services() {
        for (target, condition) in depends_on(service) {
            let Some(dependency) = compose.service(&target) else {
                problems.push(format!(
                    "{name} depends on {target}, which is not a service"
                ));
                continue;
            };
            match condition.as_deref() {
                Some("service_healthy") if dependency.get("healthcheck").is_none() => problems
                    .push(format!("{name} waits for {target} to be healthy, but it has no health check")),
                Some("service_completed_successfully") if !is_one_shot(dependency) => problems.push(
                    format!("{name} waits for {target} to complete, but it is not a one-shot (restart: \"no\")"),
                ),
                Some("service_healthy" | "service_completed_successfully") => {}
                other => problems.push(format!(
                    "{name} depends on {target} with condition {other:?}: use service_healthy or \
                     service_completed_successfully so start-up waits for it"
                )),
            }
        }
    }
    // `docker compose up --wait` counts a one-shot's exit as a failure unless a long-running
    // service waits for it to complete.
    for (name, _) in compose.services().filter(|(_, s)| is_one_shot(s)) {
        let adopted = compose.services().any(|(_, s)| {
            !is_one_shot(s)
                && depends_on(s).contains(&(
                    name.to_owned(),
                    Some("service_completed_successfully".to_owned()),
                ))
        });
        if !adopted {
            problems.push(format!(
                "no long-running service waits for the one-shot {name} to complete"
            ));
        }
    }
    assert_no_problems(&format!("{FILE}: depends_on"), &problems);
}

#[test]
fn every_long_running_service_has_a_health_check() {
    let compose = Compose::load();
    let missing: Vec<String> = compose
        .services()
        .filter(|(_, s)| !is_one_shot(s) && health_test(s).is_none())
        .map(|(name, _)| format!("{name} has no health check"))
        .collect();
    assert_no_problems(FILE, &missing);
}

#[test]
fn health_checks_use_the_script_only_where_the_image_has_it() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for (name, service) in compose.services() {
        let Some(test) = health_test(service) else {
            continue;
        };
        if test.iter().any(|w| w == "healthcheck") && !uses_app_image(service) {
            problems.push(format!(
                "{name} runs `healthcheck`, which only the deploy/Dockerfile image has"
            ));
        }
        if uses_app_image(service) && test.iter().any(|w| w == "curl" || w == "wget") {
            problems.push(format!(
                "{name}: the app image has no curl or wget; use `healthcheck PORT PATH`"
            ));
        }
    }
    assert_no_problems(FILE, &problems);
}

#[test]
fn settings_of_the_binaries_are_their_flags() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for (name, service) in compose.services() {
        let Some(binary) = binary_of(service) else {
            continue;
        };
        for env in environment(service).keys() {
            if !binary.accepts_env(env) {
                problems.push(format!(
                    "{name}: {env} is not a setting of {}",
                    binary.file_name()
                ));
            }
        }
        // After the program: --flags (each followed by its value) and subcommands.
        let command = command(service);
        let mut words = command.iter().skip(1);
        while let Some(word) = words.next() {
            if let Some(flag) = word.strip_prefix("--") {
                let flag = format!("--{}", flag.split('=').next().unwrap_or(flag));
                if !binary.help().flags.contains(&flag) {
                    problems.push(format!(
                        "{name}: {flag} is not a flag of {}",
                        binary.file_name()
                    ));
                }
                if !word.contains('=') {
                    words.next();
                }
            } else if !binary.help().commands.contains(word) {
                problems.push(format!(
                    "{name}: {word} is not a command of {}",
                    binary.file_name()
                ));
            }
        }
    }
    assert_no_problems(&format!("{FILE}: settings"), &problems);
}

#[test]
fn api_runs_two_replicas_behind_nginx_on_the_documented_port() {
    let compose = Compose::load();
    let (name, api) = compose.single(Binary::Api);
    assert_eq!(replicas(api), Some(2), "{name}: deploy.replicas");
    assert!(
        api.get("ports").is_none(),
        "{name}: no host port (replicas would clash on it); nginx publishes the API"
    );
    assert!(
        api.get("container_name").is_none(),
        "{name}: a container_name allows one replica only"
    );
    assert_eq!(
        listen_port(api, Binary::Api),
        Some(API_PORT),
        "{name}: API_PORT"
    );
    assert_eq!(
        health_probe(api),
        Some((API_PORT, "/ready".to_owned())),
        "{name}: the health check should ask /ready on the API's port"
    );
    assert_eq!(
        env_value(api, "USE_KAFKA").as_deref(),
        Some("true"),
        "{name}: the stack runs the Kafka pipeline"
    );
    let grace = api
        .get("stop_grace_period")
        .and_then(scalar)
        .and_then(|s| support::parse_duration(&s));
    assert!(
        grace.is_some_and(|grace| grace > shutdown_timeout(api)),
        "{name}: stop_grace_period {grace:?} should exceed SHUTDOWN_TIMEOUT_SECS"
    );
}

#[test]
fn workers_scale_and_stop_gracefully() {
    let compose = Compose::load();
    let (name, worker) = compose.single(Binary::Worker);
    assert_eq!(replicas(worker), Some(2), "{name}: deploy.replicas");
    assert!(
        !environment(worker).contains_key("WORKER_ID"),
        "{name}: WORKER_ID must stay unset so each replica names itself <host>-<pid>"
    );
    for key in ["ports", "container_name"] {
        assert!(
            worker.get(key).is_none(),
            "{name}: `{key}` stops `--scale worker=N` from working"
        );
    }
    assert_eq!(
        listen_port(worker, Binary::Worker),
        Some(WORKER_HTTP_PORT),
        "{name}: WORKER_HTTP_PORT"
    );
    assert_eq!(
        health_probe(worker).map(|(port, _)| port),
        Some(WORKER_HTTP_PORT),
        "{name}: the health check should use the worker's HTTP port"
    );
    let grace = worker
        .get("stop_grace_period")
        .and_then(scalar)
        .and_then(|s| support::parse_duration(&s));
    assert!(
        grace.is_some_and(|grace| grace > shutdown_timeout(worker)),
        "{name}: stop_grace_period {grace:?} should exceed SHUTDOWN_TIMEOUT_SECS ({:?}), or \
         Docker kills records in flight",
        shutdown_timeout(worker)
    );
}

#[test]
fn mock_services_listen_where_the_service_urls_point() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    let mocks = compose.running(Binary::Mocks);
    let mut ports = BTreeSet::new();
    for (name, mock) in &mocks {
        let port = listen_port(mock, Binary::Mocks);
        match port {
            Some(port) if MOCK_PORTS.contains(&port) => {
                ports.insert(port);
            }
            other => problems.push(format!(
                "{name} listens on {other:?}, not one of {MOCK_PORTS:?}"
            )),
        }
        if flag_value(&command(mock), "--host").as_deref() != Some("0.0.0.0") {
            problems.push(format!(
                "{name}: --host 0.0.0.0, or other containers cannot reach it"
            ));
        }
        if health_probe(mock).map(|(p, _)| p) != port {
            problems.push(format!("{name}: the health check port differs from --port"));
        }
    }
    if ports.len() != MOCK_PORTS.len() {
        problems.push(format!(
            "mock services listen on {ports:?}, expected {MOCK_PORTS:?}"
        ));
    }
    // Every service URL of the API and the worker names a mock service, its port, and a
    // service it serves.
    for binary in [Binary::Api, Binary::Worker] {
        for (name, service) in compose.running(binary) {
            for (env, value) in environment(service) {
                let Some(downstream) = env.strip_suffix("_SERVICE_URL") else {
                    continue;
                };
                let downstream = downstream.to_ascii_lowercase();
                let url = value.unwrap_or_default();
                let Some((host, port)) = url
                    .strip_prefix("http://")
                    .and_then(|rest| rest.trim_end_matches('/').split_once(':'))
                else {
                    problems.push(format!("{name}: {env}={url} is not http://HOST:PORT"));
                    continue;
                };
                let target = mocks.iter().find(|(mock, _)| *mock == host);
                let Some((_, mock)) = target else {
                    problems.push(format!(
                        "{name}: {env} points at {host}, not a mock service"
                    ));
                    continue;
                };
                if listen_port(mock, Binary::Mocks)
                    .map(|p| p.to_string())
                    .as_deref()
                    != Some(port)
                {
                    problems.push(format!(
                        "{name}: {env} uses port {port}, {host} listens elsewhere"
                    ));
                }
                let serves = flag_value(&command(mock), "--services")
                    .map(|list| list.split(',').any(|s| s.trim() == downstream))
                    .unwrap_or(true);
                if !serves {
                    problems.push(format!(
                        "{name}: {env} points at {host}, which does not serve {downstream}"
                    ));
                }
            }
        }
    }
    assert_no_problems(&format!("{FILE}: mock services"), &problems);
}

#[test]
fn kafka_runs_in_kraft_mode_and_the_topics_are_created_up_front() {
    let compose = Compose::load();
    let (kafka_name, kafka) = compose
        .services()
        .find(|(_, s)| environment(s).contains_key("KAFKA_PROCESS_ROLES"))
        .expect("a Kafka service in KRaft mode (KAFKA_PROCESS_ROLES)");
    let image = text_at(kafka, &["image"]).unwrap_or_default();
    let tag = image.strip_prefix("apache/kafka:");
    assert!(
        tag.is_some_and(|tag| tag.starts_with(|c: char| c.is_ascii_digit())),
        "{kafka_name}: the official apache/kafka image at a pinned version, not {image:?}"
    );
    let env = environment(kafka);
    let setting = |name: &str| env.get(name).cloned().flatten().unwrap_or_default();
    let roles = setting("KAFKA_PROCESS_ROLES");
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{kafka_name}: one node that is broker and controller, got {roles:?}"
    );
    assert!(
        !setting("CLUSTER_ID").is_empty(),
        "{kafka_name}: KRaft needs a CLUSTER_ID"
    );
    assert_eq!(
        setting("KAFKA_AUTO_CREATE_TOPICS_ENABLE"),
        "false",
        "{kafka_name}: rskafka's metadata requests would create the topic with the broker's \
         default partition count"
    );
    assert!(
        !compose
            .services()
            .any(|(_, s)| text_at(s, &["image"]).is_some_and(|i| i.contains("zookeeper")))
            && !env.keys().any(|k| k.contains("ZOOKEEPER")),
        "KRaft mode: no ZooKeeper"
    );

    // The apps reach the broker at an advertised address, and find their topics made.
    let (_, api) = compose.single(Binary::Api);
    let (_, worker) = compose.single(Binary::Worker);
    let bootstrap =
        env_value(api, "KAFKA_BOOTSTRAP_SERVERS").expect("api: KAFKA_BOOTSTRAP_SERVERS");
    assert_eq!(
        env_value(worker, "KAFKA_BOOTSTRAP_SERVERS"),
        Some(bootstrap.clone())
    );
    assert!(
        setting("KAFKA_ADVERTISED_LISTENERS").contains(&format!("//{bootstrap}")),
        "{kafka_name}: KAFKA_BOOTSTRAP_SERVERS {bootstrap} is not an advertised listener"
    );
    let topic = env_value(api, "KAFKA_TOPIC").unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
    assert_eq!(
        env_value(worker, "KAFKA_TOPIC").unwrap_or_else(|| DEFAULT_TOPIC.to_owned()),
        topic,
        "the API and the worker use the same topic"
    );
    let dlq = env_value(worker, "KAFKA_DLQ_TOPIC").unwrap_or_else(|| DEFAULT_DLQ_TOPIC.to_owned());
    let partitions = env_value(api, "KAFKA_PARTITIONS")
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PARTITIONS);

    let (job_name, job) = compose
        .services()
        .find(|(_, s)| is_one_shot(s) && command(s).iter().any(|w| w.contains("kafka-topics.sh")))
        .expect("a one-shot service that creates the topics with kafka-topics.sh");
    assert_eq!(
        text_at(job, &["image"]),
        Some(image.clone()),
        "{job_name}: the broker's image"
    );
    let created = created_topics(&command(job));
    for wanted in [&topic, &dlq] {
        match created.get(wanted.as_str()) {
            Some((Some(p), server)) if *p == partitions && *server == Some(bootstrap.clone()) => {}
            other => panic!(
                "{job_name} should create {wanted} with {partitions} partitions on {bootstrap}, \
                 found {other:?}"
            ),
        }
    }
    for (name, app) in [("api", api), ("worker", worker)] {
        assert!(
            depends_on(app).contains(&(
                job_name.to_owned(),
                Some("service_completed_successfully".to_owned())
            )),
            "{name} should wait for {job_name} to complete"
        );
    }
}

/// Topic → (partitions, bootstrap server) of each `kafka-topics.sh --create` in a script.
fn created_topics(command: &[String]) -> BTreeMap<String, (Option<u32>, Option<String>)> {
    let script = command.join("\n").replace("\\\n", " ");
    script
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|words| words.iter().any(|w| w == "--create"))
        .filter_map(|words| {
            let topic = flag_value(&words, "--topic")?;
            let partitions = flag_value(&words, "--partitions").and_then(|p| p.parse().ok());
            Some((
                topic,
                (partitions, flag_value(&words, "--bootstrap-server")),
            ))
        })
        .collect()
}

/// The override file that points the stack at Azure Event Hubs (README, "Azure Event
/// Hubs"). Docker is not here to merge it, so what the merge needs is checked as text:
/// Compose's `!reset` and `!override` tags where the base file's values must go.
pub const EVENT_HUBS_FILE: &str = "deploy/compose/event-hubs.yml";

#[test]
fn the_event_hubs_override_swaps_the_local_broker_for_a_connection_string_file() {
    use serde_norway::value::TaggedValue;
    let base = Compose::load();
    let documents = support::yaml_documents(EVENT_HUBS_FILE);
    assert_eq!(documents.len(), 1, "{EVENT_HUBS_FILE}: one YAML document");
    let file = &documents[0];
    let secret_files: BTreeMap<String, String> = file
        .get("secrets")
        .and_then(Value::as_mapping)
        .map(|secrets| {
            secrets
                .iter()
                .filter_map(|(name, spec)| Some((scalar(name)?, text_at(spec, &["file"])?)))
                .collect()
        })
        .unwrap_or_default();
    let ignored = support::read(".gitignore");
    let kafka_services: BTreeSet<&str> = base
        .services()
        .filter(|(_, s)| text_at(s, &["image"]).is_some_and(|i| i.starts_with("apache/kafka")))
        .map(|(name, _)| name)
        .collect();
    assert!(!kafka_services.is_empty(), "the base file runs Kafka");
    let tagged = |value: Option<&Value>, tag: &str| -> Option<Value> {
        match value? {
            Value::Tagged(tagged) => {
                let TaggedValue { tag: found, value } = tagged.as_ref();
                (*found == tag).then(|| value.clone())
            }
            _ => None,
        }
    };

    let mut problems = Vec::new();
    for binary in [Binary::Api, Binary::Worker] {
        let (name, base_service) = base.single(binary);
        let Some(service) = at(file, &["services", name]) else {
            problems.push(format!("{name}: not in the override"));
            continue;
        };
        let env = service
            .get("environment")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let value_of = |key: &str| env.get(Value::String(key.to_owned()));
        if tagged(value_of("KAFKA_BOOTSTRAP_SERVERS"), "reset").is_none() {
            problems.push(format!(
                "{name}: KAFKA_BOOTSTRAP_SERVERS must be `!reset null`: beside the \
                 connection string it stops the start"
            ));
        }
        if value_of("KAFKA_CONNECTION_STRING").is_some() {
            problems.push(format!(
                "{name}: the connection string goes in a file, not the environment"
            ));
        }
        if value_of("KAFKA_CREATE_TOPICS").and_then(scalar).as_deref() != Some("false") {
            problems.push(format!("{name}: KAFKA_CREATE_TOPICS must be \"false\""));
        }
        for key in env.keys().filter_map(scalar) {
            if !binary.accepts_env(&key) {
                problems.push(format!("{name}: {key} is not a setting of {binary:?}"));
            }
        }
        let file_setting = value_of("KAFKA_CONNECTION_STRING_FILE").and_then(scalar);
        let secret = file_setting
            .as_deref()
            .and_then(|path| path.strip_prefix("/run/secrets/"));
        let granted = service.get("secrets").map(words).unwrap_or_default();
        match secret {
            Some(secret) if granted.iter().any(|g| g == secret) => match secret_files.get(secret) {
                Some(path) => {
                    let dir = path.trim_start_matches("./").split('/').next();
                    if !dir.is_some_and(|d| ignored.lines().any(|l| l == format!("/{d}/"))) {
                        problems.push(format!("{path}: not git-ignored"));
                    }
                }
                None => problems.push(format!("secret {secret}: no `file:` declared")),
            },
            _ => problems.push(format!(
                "{name}: KAFKA_CONNECTION_STRING_FILE ({file_setting:?}) must be \
                 /run/secrets/<a secret the service is granted>"
            )),
        }
        // Everything the base file waits for but the broker and its topic job.
        let Some(Value::Mapping(depends)) = tagged(service.get("depends_on"), "override") else {
            problems.push(format!("{name}: depends_on must be `!override`"));
            continue;
        };
        let waits: BTreeSet<String> = depends.keys().filter_map(scalar).collect();
        let kafka_jobs: BTreeSet<String> = base
            .services()
            .filter(|(_, s)| {
                depends_on(s)
                    .iter()
                    .any(|(target, _)| kafka_services.contains(target.as_str()))
            })
            .map(|(name, _)| name.to_owned())
            .collect();
        let expected: BTreeSet<String> = depends_on(base_service)
            .into_iter()
            .map(|(target, _)| target)
            .filter(|t| !kafka_services.contains(t.as_str()) && !kafka_jobs.contains(t))
            .collect();
        if waits != expected {
            problems.push(format!(
                "{name}: waits for {waits:?}; the base file's dependencies without Kafka are \
                 {expected:?}"
            ));
        }
    }
    assert_no_problems(EVENT_HUBS_FILE, &problems);
}
