//! Where a webhook may go: the URL's own rules (scheme, host, no credentials) and, for
//! a host name, the addresses it resolves to, checked when the task is submitted and
//! again on every connection by [`GuardedResolver`], the resolver of the webhook's HTTP
//! client. Checking inside the resolver means the address checked is the address
//! connected to: a name that resolves to a public address at submit time and to
//! 169.254.169.254 at delivery (DNS rebinding) is refused at delivery.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use crate::address::{self, Refusal};

/// The longest callback URL accepted.
pub const MAX_URL_CHARS: usize = 2_048;

/// What a callback URL may be: from `WEBHOOK_ALLOW_INSECURE` and
/// `WEBHOOK_ALLOWED_HOSTS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Also `http`, and loopback and private addresses: local runs and tests only.
    pub allow_insecure: bool,
    /// When not empty, the only hosts allowed: `example.com` (that host) or
    /// `*.example.com` (its subdomains, not itself).
    pub allowed_hosts: Vec<String>,
}

/// Why a callback URL is refused; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    #[error("must be an absolute URL: {0}")]
    Invalid(String),
    #[error("must be at most {MAX_URL_CHARS} characters")]
    TooLong,
    #[error("must use https")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error("host {0} is not among the allowed hosts (WEBHOOK_ALLOWED_HOSTS)")]
    HostNotAllowed(String),
    #[error("{host} is {refusal}")]
    Address { host: String, refusal: Refusal },
    #[error("host {0} does not resolve")]
    Unresolved(String),
}

impl TargetPolicy {
    /// Checks the URL on its own (no DNS): scheme, length, credentials, host allowed,
    /// and an address given as the host.
    pub fn check_url(&self, raw: &str) -> Result<Url, TargetRefusal> {
        if raw.chars().count() > MAX_URL_CHARS {
            return Err(TargetRefusal::TooLong);
        }
        let url = Url::parse(raw).map_err(|e| TargetRefusal::Invalid(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err(TargetRefusal::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetRefusal::Credentials);
        }
        let host = url.host().ok_or(TargetRefusal::NoHost)?;
        // Checked before every delivery: the host's name is written out only for a
        // refusal or an allow-list.
        if !self.allowed_hosts.is_empty() {
            let name = host.to_string();
            if !self.host_allowed(&name) {
                return Err(TargetRefusal::HostNotAllowed(name));
            }
        }
        let literal = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            self.check_address(&host, ip)?;
        }
        Ok(url)
    }

    /// Checks the URL and every address its host resolves to now: what a submit is
    /// refused for. (Delivery checks again, inside the resolver.)
    pub async fn check(&self, raw: &str) -> Result<Url, TargetRefusal> {
        let url = self.check_url(raw)?;
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| TargetRefusal::Unresolved(name.to_owned()))?
                .collect();
            if addresses.is_empty() {
                return Err(TargetRefusal::Unresolved(name.to_owned()));
            }
            for address in addresses {
                self.check_address(name, address.ip())?;
            }
        }
        Ok(url)
    }

    fn check_address(
        &self,
        host: &(impl std::fmt::Display + ?Sized),
        ip: IpAddr,
    ) -> Result<(), TargetRefusal> {
        match address::refusal(ip) {
            Some(refusal) if !(self.allow_insecure && refusal.allowed_when_insecure()) => {
                Err(TargetRefusal::Address {
                    host: host.to_string(),
                    refusal,
                })
            }
            _ => Ok(()),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|pattern| {
                let pattern = pattern.to_ascii_lowercase();
                match pattern.strip_prefix("*.") {
                    Some(domain) => host
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                    None => host == pattern,
                }
            })
    }

    /// The HTTP client of deliveries: the guarded resolver, no proxy (a proxy would
    /// connect where we cannot check), no redirects (a redirect would send the body
    /// where we did not check), and `timeout` per request.
    ///
    /// A URL whose host is an address does not go through the resolver: check every
    /// URL with [`TargetPolicy::check_url`] before sending to it.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.clone(),
            }))
            .timeout(timeout)
            .build()
    }
}

/// Resolves names with the system's resolver and hands reqwest only the addresses
/// the policy allows; a name with none left fails to resolve.
#[derive(Debug)]
pub struct GuardedResolver {
    policy: TargetPolicy,
}

impl GuardedResolver {
    pub fn new(policy: TargetPolicy) -> Self {
        Self { policy }
    }

    /// The allowed addresses of `name`, or why there are none.
    pub async fn allowed(&self, name: &str) -> Result<Vec<SocketAddr>, TargetRefusal> {
        // The port is reqwest's to set; 0 here.
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|_| TargetRefusal::Unresolved(name.to_owned()))?
            .collect();
        let mut last_refusal = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(
                |address| match self.policy.check_address(name, address.ip()) {
                    Ok(()) => true,
                    Err(refusal) => {
                        last_refusal = Some(refusal);
                        false
                    }
                },
            )
            .collect();
        match (allowed.is_empty(), last_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refusal)) => Err(refusal),
            (true, None) => Err(TargetRefusal::Unresolved(name.to_owned())),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = GuardedResolver {
            policy: self.policy.clone(),
        };
        Box::pin(async move {
            let allowed = resolver.allowed(name.as_str()).await?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn only_https_urls_without_credentials_are_taken() {
        assert!(strict().check_url("https://hooks.example.com/done").is_ok());
        assert_eq!(
            strict().check_url("http://hooks.example.com/done"),
            Err(TargetRefusal::NotHttps)
        );
        assert_eq!(
            strict().check_url("ftp://hooks.example.com/"),
            Err(TargetRefusal::NotHttps)
        );
        assert_eq!(
            strict().check_url("https://user:pw@hooks.example.com/"),
            Err(TargetRefusal::Credentials)
        );
        assert!(matches!(
            strict().check_url("not a url"),
            Err(TargetRefusal::Invalid(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(strict().check_url(&long), Err(TargetRefusal::TooLong));
    }

    #[test]
    fn address_hosts_are_judged_without_resolving() {
        for refused in [
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1:8443/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(
                    strict().check_url(refused),
                    Err(TargetRefusal::Address { .. })
                ),
                "{refused}"
            );
        }
        assert!(strict().check_url("https://93.184.216.34/hook").is_ok());
    }

    #[test]
    fn insecure_allows_http_and_the_machine_but_not_metadata() {
        let insecure = TargetPolicy {
            allow_insecure: true,
            ..TargetPolicy::default()
        };
        assert!(insecure.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(insecure.check_url("http://10.1.2.3/hook").is_ok());
        assert!(matches!(
            insecure.check_url("http://169.254.169.254/"),
            Err(TargetRefusal::Address {
                refusal: Refusal::LinkLocal,
                ..
            })
        ));
    }

    #[test]
    fn allowed_hosts_match_exactly_or_as_subdomains() {
        let policy = TargetPolicy {
            allow_insecure: false,
            allowed_hosts: vec!["hooks.example.com".into(), "*.acme.test".into()],
        };
        assert!(policy.check_url("https://hooks.example.com/x").is_ok());
        assert!(policy.check_url("https://HOOKS.example.com/x").is_ok());
        assert!(policy.check_url("https://a.acme.test/x").is_ok());
        assert!(policy.check_url("https://a.b.acme.test/x").is_ok());
        for refused in [
            "https://example.com/x",
            "https://acme.test/x",
            "https://evilacme.test/x",
            "https://hooks.example.com.evil.test/x",
        ] {
            assert!(
                matches!(
                    policy.check_url(refused),
                    Err(TargetRefusal::HostNotAllowed(_))
                ),
                "{refused}"
            );
        }
    }

    // `localhost` resolves to 127.0.0.1 (and ::1) from /etc/hosts: no packet leaves.
    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_submit_and_by_the_resolver() {
        assert!(matches!(
            strict().check("https://localhost/hook").await,
            Err(TargetRefusal::Address {
                refusal: Refusal::Loopback,
                ..
            })
        ));
        let resolver = GuardedResolver::new(strict());
        assert!(matches!(
            resolver.allowed("localhost").await,
            Err(TargetRefusal::Address {
                refusal: Refusal::Loopback,
                ..
            })
        ));
        let insecure = GuardedResolver::new(TargetPolicy {
            allow_insecure: true,
            ..TargetPolicy::default()
        });
        let allowed = insecure.allowed("localhost").await.expect("allowed");
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }

    // The client refuses at connect time, inside the resolver: the request fails before
    // any connection, even though the URL itself passed `check_url`.
    #[tokio::test]
    async fn the_client_never_connects_to_a_refused_address() {
        let client = strict().client(Duration::from_secs(2)).expect("client");
        let url = "https://localhost:9/never";
        assert!(
            strict().check_url(url).is_ok(),
            "a host name passes the URL check"
        );
        let error = client.post(url).send().await.expect_err("refused");
        assert!(error.is_connect() || error.is_request(), "{error:?}");
        let chain = format!("{:?}", error);
        assert!(chain.contains("refusal: Loopback"), "{chain}");
    }
}
