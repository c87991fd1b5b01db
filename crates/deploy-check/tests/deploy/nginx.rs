//! `deploy/nginx.conf` against the compose file.

use crate::compose::{self, Compose};
use crate::support::{self, API_PORT, Binary, text_at, words};

const FILE: &str = "deploy/nginx.conf";

/// One nginx directive and its block, if it has one.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

/// Words, quoted strings and `{`, `}`, `;`, without comments.
fn tokens(source: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => while chars.next_if(|&n| n != '\n').is_some() {},
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' | '\'' => {
                let mut text = String::new();
                while let Some(n) = chars.next() {
                    match n {
                        '\\' => text.extend(chars.next()),
                        n if n == c => break,
                        n => text.push(n),
                    }
                }
                tokens.push(text);
            }
            c if c.is_whitespace() => {}
            c => {
                let mut word = c.to_string();
                while let Some(n) = chars.next_if(|&n| !n.is_whitespace() && !"{};".contains(n)) {
                    word.push(n);
                }
                tokens.push(word);
            }
        }
    }
    tokens
}

fn parse(tokens: &mut impl Iterator<Item = String>) -> Vec<Directive> {
    let mut directives = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while let Some(token) = tokens.next() {
        match token.as_str() {
            ";" | "{" => {
                let block = if token == "{" {
                    parse(tokens)
                } else {
                    Vec::new()
                };
                let mut words = std::mem::take(&mut words).into_iter();
                let name = words.next().unwrap_or_default();
                directives.push(Directive {
                    name,
                    args: words.collect(),
                    block,
                });
            }
            "}" => break,
            _ => words.push(token),
        }
    }
    directives
}

/// Every directive called `name`, at any depth.
fn all<'a>(directives: &'a [Directive], name: &str) -> Vec<&'a Directive> {
    let mut found = Vec::new();
    for directive in directives {
        if directive.name == name {
            found.push(directive);
        }
        found.extend(all(&directive.block, name));
    }
    found
}

fn config() -> Vec<Directive> {
    parse(&mut tokens(&support::read(FILE)).into_iter())
}

#[test]
fn the_parser_reads_blocks_quotes_and_comments() {
    let parsed = parse(
        &mut tokens("http { # note\n  log_format main '$a \"b\" ;' x;\n  upstream api { server api:8000 resolve; }\n}\n")
            .into_iter(),
    );
    assert_eq!(parsed.len(), 1);
    let log_format = &all(&parsed, "log_format")[0];
    assert_eq!(log_format.args, ["main", "$a \"b\" ;", "x"]);
    let upstream = &all(&parsed, "upstream")[0];
    assert_eq!(upstream.args, ["api"]);
    assert_eq!(upstream.block[0].args, ["api:8000", "resolve"]);
}

#[test]
fn nginx_proxies_to_every_api_replica() {
    let config = config();
    let compose = Compose::load();
    let (api_service, _) = compose.single(Binary::Api);

    let upstreams = all(&config, "upstream");
    assert_eq!(upstreams.len(), 1, "{FILE}: one upstream");
    let upstream = upstreams[0];
    let upstream_name = upstream.args.first().expect("the upstream's name");
    let servers = all(&upstream.block, "server");
    assert_eq!(
        servers.len(),
        1,
        "{FILE}: the upstream names the API service once"
    );
    let address = servers[0].args.first().expect("the server's address");
    assert_eq!(
        address,
        &format!("{api_service}:{API_PORT}"),
        "{FILE}: the upstream should be the compose service running the API, on its port"
    );
    // Every replica, not the first address the name resolved to at start-up.
    assert!(
        servers[0].args.iter().any(|a| a == "resolve"),
        "{FILE}: `server {address} resolve`, so each replica's address is a peer"
    );
    assert!(
        !all(&upstream.block, "zone").is_empty(),
        "{FILE}: `resolve` needs a shared-memory zone"
    );
    let resolvers = all(&config, "resolver");
    assert!(
        resolvers
            .iter()
            .any(|r| r.args.first().is_some_and(|a| a == "127.0.0.11")),
        "{FILE}: Docker's DNS (127.0.0.11) as resolver"
    );

    let proxy_passes = all(&config, "proxy_pass");
    assert!(!proxy_passes.is_empty(), "{FILE}: no proxy_pass");
    for proxy_pass in &proxy_passes {
        assert_eq!(
            proxy_pass.args,
            [format!("http://{upstream_name}")],
            "{FILE}: proxy_pass should go through the upstream"
        );
    }
    let request_id = all(&config, "proxy_set_header").into_iter().any(|h| {
        h.args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case("X-Request-Id"))
    });
    assert!(request_id, "{FILE}: pass X-Request-Id to the API");
    let retries: Vec<&String> = all(&config, "proxy_next_upstream")
        .into_iter()
        .flat_map(|d| &d.args)
        .collect();
    assert!(
        !retries.iter().any(|a| *a == "non_idempotent"),
        "{FILE}: a POST must not be re-sent to another replica"
    );
}

#[test]
fn compose_runs_nginx_with_this_file_on_port_8000() {
    let compose = Compose::load();
    let (name, nginx) = compose
        .services()
        .find(|(_, s)| text_at(s, &["image"]).is_some_and(|i| i.starts_with("nginx:")))
        .expect("an nginx service");
    let volumes = nginx.get("volumes").map(words).unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with(&format!("./{FILE}:/etc/nginx/nginx.conf"))),
        "{name} mounts {FILE} as /etc/nginx/nginx.conf, found {volumes:?}"
    );
    let ports = nginx.get("ports").map(words).unwrap_or_default();
    let listen = all(&config(), "listen")
        .first()
        .and_then(|l| l.args.first().cloned())
        .expect("nginx listens somewhere");
    assert!(
        ports.contains(&format!("{API_PORT}:{listen}")),
        "{name} publishes host port {API_PORT} to nginx's {listen}, found {ports:?}"
    );
    let (api_service, _) = compose.single(Binary::Api);
    let waits = nginx
        .get("depends_on")
        .and_then(|d| d.get(api_service))
        .and_then(|d| text_at(d, &["condition"]));
    assert_eq!(
        waits.as_deref(),
        Some("service_healthy"),
        "{name} starts once the API is healthy"
    );
    assert!(
        compose::health_probe(nginx).is_none(),
        "nginx's image has no healthcheck script"
    );
}
