//! The downstream services: name → endpoint URL.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator_core::ServiceName;
use url::Url;

/// Where each known service is called: `POST {base}/{name}`.
#[derive(Debug, Clone)]
pub struct ServiceRegistry {
    endpoints: BTreeMap<ServiceName, Url>,
}

impl ServiceRegistry {
    /// Builds the registry from base URLs; the endpoint is the base with the service
    /// name appended as a path segment (a base path is kept).
    pub fn new(bases: impl IntoIterator<Item = (ServiceName, Url)>) -> Self {
        let endpoints = bases
            .into_iter()
            .map(|(name, mut base)| {
                if let Ok(mut segments) = base.path_segments_mut() {
                    segments.pop_if_empty().push(name.as_str());
                }
                (name, base)
            })
            .collect();
        Self { endpoints }
    }

    pub fn endpoint(&self, service: &str) -> Option<&Url> {
        let name = ServiceName::parse(service).ok()?;
        self.endpoints.get(&name)
    }

    pub fn names(&self) -> BTreeSet<ServiceName> {
        self.endpoints.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ServiceName, &Url)> {
        self.endpoints.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(base: &str) -> ServiceRegistry {
        let name = ServiceName::parse("revenue").expect("valid");
        ServiceRegistry::new([(name, Url::parse(base).expect("valid url"))])
    }

    #[test]
    fn appends_the_service_name_to_the_base() {
        for (base, expected) in [
            ("http://localhost:8001", "http://localhost:8001/revenue"),
            ("http://localhost:8001/", "http://localhost:8001/revenue"),
            ("http://gw:80/svc", "http://gw/svc/revenue"),
            ("http://gw/svc/", "http://gw/svc/revenue"),
        ] {
            let registry = registry(base);
            assert_eq!(
                registry.endpoint("revenue").map(Url::as_str),
                Some(expected)
            );
        }
        assert!(registry("http://x").endpoint("rebates").is_none());
    }
}
