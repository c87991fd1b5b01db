//! `deploy/Dockerfile`, `.dockerignore` and `deploy/healthcheck.sh`.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrator_testkit::ports::free_port;

use crate::support::{self, API_PORT, Binary, WORKER_HTTP_PORT};

const DOCKERFILE: &str = "deploy/Dockerfile";
const HEALTHCHECK: &str = "deploy/healthcheck.sh";

/// (instruction, arguments) of each Dockerfile line, continuations joined.
fn instructions() -> Vec<(String, String)> {
    support::read(DOCKERFILE)
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (instruction, rest) = line.split_once(char::is_whitespace)?;
            Some((instruction.to_ascii_uppercase(), rest.trim().to_owned()))
        })
        .collect()
}

/// `.dockerignore` patterns, without comments.
fn ignore_patterns() -> Vec<String> {
    support::read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_end_matches('/').to_owned())
        .collect()
}

/// The patterns used here: a path (and all below it), or `**/*.ext`.
fn ignored(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|pattern| {
        if let Some(suffix) = pattern.strip_prefix("**/*") {
            path.ends_with(suffix)
        } else {
            path == pattern || path.starts_with(&format!("{pattern}/"))
        }
    })
}

#[test]
fn the_image_builds_the_three_binaries_with_the_tested_toolchain() {
    let instructions = instructions();
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, args)| args)
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "{DOCKERFILE}: a build stage and a runtime stage"
    );
    let builder = froms[0].split_whitespace().next().unwrap_or_default();
    let (version, release) = builder
        .strip_prefix("rust:")
        .and_then(|tag| tag.split_once('-'))
        .unwrap_or_else(|| {
            panic!("{DOCKERFILE}: the builder should be rust:MAJOR.MINOR-RELEASE, not {builder}")
        });
    assert!(
        version.split('.').count() >= 2 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
        "{DOCKERFILE}: pin the Rust version, not {builder}"
    );
    let runtime = froms[1].split_whitespace().next().unwrap_or_default();
    assert_eq!(
        runtime,
        format!("debian:{release}-slim"),
        "{DOCKERFILE}: the runtime should be the builder's Debian release (glibc, OpenSSL)"
    );

    let build = instructions
        .iter()
        .find(|(i, args)| i == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| args.clone())
        .expect("a RUN cargo build");
    for needed in ["--locked", "--release", "--mount=type=cache"] {
        assert!(build.contains(needed), "{DOCKERFILE}: cargo build {needed}");
    }
    for binary in [Binary::Api, Binary::Worker, Binary::Mocks] {
        assert!(
            build.contains(&format!("target/release/{}", binary.file_name())),
            "{DOCKERFILE}: copies {} out of the build",
            binary.file_name()
        );
    }

    let user = instructions
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, args)| args.clone())
        .expect("a USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "{DOCKERFILE}: a numeric non-root USER (Kubernetes' runAsNonRoot checks it), not {user}"
    );
    let exposed: Vec<String> = instructions
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, args)| args.split_whitespace().map(str::to_owned))
        .collect();
    for port in [API_PORT, WORKER_HTTP_PORT] {
        assert!(
            exposed.contains(&port.to_string()),
            "{DOCKERFILE}: EXPOSE {port}"
        );
    }
    assert!(
        !instructions
            .iter()
            .any(|(i, args)| i == "RUN" && args.contains("install") && args.contains("curl")),
        "{DOCKERFILE}: no curl in the runtime image; the health checks use {HEALTHCHECK}"
    );
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies_and_no_build_output() {
    let patterns = ignore_patterns();
    for kept_out in ["target", ".git", "tools", ".run", ".env"] {
        assert!(
            ignored(kept_out, &patterns),
            ".dockerignore should exclude {kept_out}"
        );
    }
    let root = support::workspace_root();
    let mut problems = Vec::new();
    for (instruction, args) in instructions() {
        if instruction != "COPY" || args.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some((_, sources)) = words.split_last() else {
            continue;
        };
        for source in sources {
            let source = source.trim_end_matches('/');
            if !root.join(source).exists() {
                problems.push(format!("COPY {source}: no such path"));
            }
            if ignored(source, &patterns) {
                problems.push(format!("COPY {source}: excluded by .dockerignore"));
            }
        }
    }
    support::assert_no_problems(DOCKERFILE, &problems);
}

/// Kills the process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn healthcheck(port: u16, path: &str) -> bool {
    let script = support::workspace_root().join(HEALTHCHECK);
    run_bash(&script, &[&port.to_string(), path])
}

fn run_bash(script: &Path, args: &[&str]) -> bool {
    Command::new("bash")
        .arg(script)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running bash {}: {e}", script.display()))
        .success()
}

#[test]
fn the_health_check_script_passes_on_2xx_only() {
    let port = free_port();
    let mocks = Binary::Mocks.help(); // fails clearly if the binary is missing
    assert!(mocks.flags.contains("--port"));
    let child = Command::new(Binary::Mocks.path())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting mock-services");
    let _server = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(15);
    while !healthcheck(port, "/health") {
        assert!(
            Instant::now() < deadline,
            "healthcheck {port} /health never passed against mock-services"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!healthcheck(port, "/no-such-path"), "a 404 is unhealthy");
    assert!(
        !healthcheck(free_port(), "/health"),
        "a refused connection is unhealthy"
    );
}

/// A one-connection server on a free port that answers `status` to whatever it is asked,
/// once the request's headers are in (as a real server does; the script writes them in
/// several writes).
fn answer_once(status: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    let port = listener.local_addr().expect("its address").port();
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = Vec::new();
        let mut buffer = [0_u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = stream.write_all(response.as_bytes());
    });
    port
}

#[test]
fn the_health_check_script_judges_by_the_status_code() {
    for (status, healthy) in [
        ("200 OK", true),
        ("204 No Content", true),
        ("302 Found", false),
        ("503 Service Unavailable", false),
    ] {
        let port = answer_once(status);
        assert_eq!(
            healthcheck(port, "/ready"),
            healthy,
            "an answer of {status}"
        );
    }
}
