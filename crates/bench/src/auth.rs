//! What authentication costs the accept path: the same fixed rate against the API
//! started with an API token checked, with a JWT checked, and with authentication
//! disabled, alternating the three in each round (so a drift of the machine over the
//! phase falls on all three alike), comparing the API process's CPU per accepted task,
//! which the machine's ±20% run-to-run noise in throughput does not hide.

use std::path::Path;

use orchestrator_testkit::idp::TestKey;
use serde::Serialize;
use serde_json::json;

use crate::BenchError;

/// How the API checks the load's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The stack's API token (the default stack).
    Token,
    /// A JWT of an issuer the API is told to trust (keys from a file).
    Jwt,
    /// `AUTH_DISABLED=true`: the baseline.
    Disabled,
}

impl Credential {
    pub const ALL: [Credential; 3] = [Credential::Token, Credential::Jwt, Credential::Disabled];

    pub fn name(self) -> &'static str {
        match self {
            Credential::Token => "API token",
            Credential::Jwt => "JWT (ES256)",
            Credential::Disabled => "auth disabled",
        }
    }

    /// The order of round `round`: each credential leads once every three rounds.
    pub fn order(round: usize) -> [Credential; 3] {
        let mut order = Self::ALL;
        order.rotate_left(round % Self::ALL.len());
        order
    }
}

/// The JWT the JWT runs send, and the API settings that trust its issuer.
pub struct JwtSetup {
    pub token: String,
    pub env: Vec<(&'static str, String)>,
}

const ISSUER: &str = "orchestrator-bench";
const AUDIENCE: &str = "orchestrator-api";

/// Makes a P-256 key, writes its JWK set to `dir`, and signs a token for the tenant
/// `default` that can submit, valid for the run.
pub fn jwt_setup(dir: &Path) -> Result<JwtSetup, BenchError> {
    let key = TestKey::ec("bench");
    let path = dir.join("bench-jwks.json");
    let keys = json!({ "keys": [key.jwk()] }).to_string();
    std::fs::write(&path, keys).map_err(|e| BenchError::io(&path, e))?;
    let now = chrono::Utc::now().timestamp();
    let token = key.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "bench",
        "nbf": now - 60, "exp": now + 6 * 3600,
        "tenant": "default", "scope": "tasks:submit tasks:read",
    }));
    Ok(JwtSetup {
        token,
        env: vec![
            ("AUTH_JWT_ISSUER", ISSUER.to_owned()),
            ("AUTH_JWT_AUDIENCE", AUDIENCE.to_owned()),
            ("AUTH_JWT_JWKS_FILE", path.display().to_string()),
        ],
    })
}

/// One timed run.
#[derive(Debug, Clone, Serialize)]
pub struct AuthRun {
    pub credential: &'static str,
    pub round: usize,
    pub accepted: u64,
    pub rate: f64,
    /// The API process's CPU (user + system) per accepted task.
    pub api_cpu_ms_per_task: f64,
}

/// The runs of one credential.
#[derive(Debug, Clone, Serialize)]
pub struct AuthSummary {
    pub credential: &'static str,
    pub runs: usize,
    pub median_rate: f64,
    pub median_api_cpu_ms_per_task: f64,
    /// Over the median of `auth disabled`, in percent.
    pub cpu_over_disabled_pct: Option<f64>,
}

/// Every run, and each credential's medians.
#[derive(Debug, Clone, Serialize)]
pub struct AuthOverhead {
    pub rounds: usize,
    /// The offered rate of every run, tasks/s.
    pub rate: u32,
    pub runs: Vec<AuthRun>,
    pub summary: Vec<AuthSummary>,
}

impl AuthOverhead {
    pub fn new(rounds: usize, rate: u32, runs: Vec<AuthRun>) -> AuthOverhead {
        let median_of = |credential: Credential, value: fn(&AuthRun) -> f64| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter(|run| run.credential == credential.name())
                .map(value)
                .collect();
            values.sort_by(f64::total_cmp);
            median(&values)
        };
        let baseline = median_of(Credential::Disabled, |run| run.api_cpu_ms_per_task);
        let summary = Credential::ALL
            .into_iter()
            .map(|credential| {
                let cpu = median_of(credential, |run| run.api_cpu_ms_per_task);
                AuthSummary {
                    credential: credential.name(),
                    runs: runs
                        .iter()
                        .filter(|run| run.credential == credential.name())
                        .count(),
                    median_rate: median_of(credential, |run| run.rate),
                    median_api_cpu_ms_per_task: cpu,
                    cpu_over_disabled_pct: (credential != Credential::Disabled && baseline > 0.0)
                        .then(|| (cpu / baseline - 1.0) * 100.0),
                }
            })
            .collect();
        AuthOverhead {
            rounds,
            rate,
            runs,
            summary,
        }
    }

    /// The larger of the token's and the JWT's CPU over the baseline, in percent.
    pub fn worst_overhead_pct(&self) -> Option<f64> {
        self.summary
            .iter()
            .filter_map(|summary| summary.cpu_over_disabled_pct)
            .reduce(f64::max)
    }
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(credential: Credential, cpu: f64) -> AuthRun {
        AuthRun {
            credential: credential.name(),
            round: 0,
            accepted: 100,
            rate: 1000.0,
            api_cpu_ms_per_task: cpu,
        }
    }

    #[test]
    fn each_credential_leads_a_round_and_overheads_are_over_the_median_baseline() {
        assert_eq!(Credential::order(0)[0], Credential::Token);
        assert_eq!(Credential::order(1)[0], Credential::Jwt);
        assert_eq!(Credential::order(2)[0], Credential::Disabled);
        let overhead = AuthOverhead::new(
            3,
            8,
            vec![
                run(Credential::Disabled, 0.10),
                run(Credential::Disabled, 0.20),
                run(Credential::Disabled, 0.30),
                run(Credential::Token, 0.21),
                run(Credential::Jwt, 0.25),
            ],
        );
        let pct = |i: usize| overhead.summary[i].cpu_over_disabled_pct.expect("a figure");
        assert!((pct(0) - 5.0).abs() < 1e-9);
        assert!((pct(1) - 25.0).abs() < 1e-9);
        assert_eq!(overhead.summary[2].cpu_over_disabled_pct, None);
        assert!((overhead.worst_overhead_pct().expect("a figure") - 25.0).abs() < 1e-9);
    }
}
