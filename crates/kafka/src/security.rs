//! TLS for broker connections (KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL).
//!
//! rskafka does the handshake itself ([`rskafka::client::ClientBuilder::tls_config`]) on
//! the TCP stream it opened, so with the NODELAY relay on, TLS runs end to end through
//! the relay: the relay only ever sees ciphertext, and rskafka names the broker it asked
//! the relay for (its host from the bootstrap list or the cluster metadata) in SNI and in
//! the certificate check. SASL needs nothing here: rskafka authenticates on the (TLS or
//! plain) connection with [`crate::KafkaConfig::sasl_config`].

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};

use crate::{KafkaConfig, KafkaError};

const CA_FILE: &str = "KAFKA_TLS_CA_FILE";

/// The rustls configuration for the brokers, or `None` when the protocol has no TLS.
///
/// The certificate authorities come from KAFKA_TLS_CA_FILE, or else from the system's
/// store (`SSL_CERT_FILE` and `SSL_CERT_DIR` override where that is looked for).
///
/// # Errors
/// If the CA file cannot be read or holds no usable certificate (the error names
/// KAFKA_TLS_CA_FILE), or the system has no root certificates.
pub fn tls_config(config: &KafkaConfig) -> Result<Option<Arc<ClientConfig>>, KafkaError> {
    if !config.security_protocol.uses_tls() {
        return Ok(None);
    }
    let roots = match &config.tls_ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots()?,
    };
    // Explicitly `ring`: the process-wide default provider would need one installed, and
    // rustls' default choice (aws-lc-rs) is not built.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(KafkaError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(tls)))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, KafkaError> {
    let invalid = |reason: String| KafkaError::InvalidSetting {
        setting: CA_FILE,
        reason,
    };
    let pem = std::fs::read(path)
        .map_err(|error| invalid(format!("cannot read {}: {error}", path.display())))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate
            .map_err(|error| invalid(format!("{} is not a PEM file: {error}", path.display())))?;
        roots.add(certificate).map_err(|error| {
            invalid(format!(
                "{} holds a certificate that cannot be used: {error}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(invalid(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, KafkaError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "Could not load some of the system's root certificates.");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(
        added,
        ignored,
        "Loaded the system's root certificates for Kafka."
    );
    if roots.is_empty() {
        return Err(KafkaError::InvalidSetting {
            setting: CA_FILE,
            reason: "is unset, and no root certificates were found on this system \
                     (install ca-certificates, or point KAFKA_TLS_CA_FILE at the brokers' CA)"
                .to_owned(),
        });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> KafkaConfig {
        crate::config::tests::parse(flags)
    }

    fn ca_file_error(contents: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!(
            "orchestrator-kafka-ca-{}.pem",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, contents).expect("write the test file");
        let config = config(&[
            "--kafka-security-protocol",
            "SSL",
            "--kafka-tls-ca-file",
            path.to_str().expect("UTF-8 temp path"),
        ]);
        let result = tls_config(&config);
        let _ = std::fs::remove_file(&path);
        match result {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{contents:?} should not make a TLS configuration"),
        }
    }

    #[test]
    fn no_tls_without_a_tls_protocol() {
        for protocol in ["PLAINTEXT", "SASL_PLAINTEXT"] {
            let config = config(&["--kafka-security-protocol", protocol]);
            assert!(tls_config(&config).expect("no TLS").is_none());
        }
    }

    #[test]
    fn unset_ca_file_uses_the_system_roots() {
        let config = config(&["--kafka-security-protocol", "SASL_SSL"]);
        match tls_config(&config) {
            Ok(Some(_)) => {}
            // A machine without ca-certificates: the error must say what to do.
            Err(error) => assert!(error.to_string().contains("KAFKA_TLS_CA_FILE"), "{error}"),
            Ok(None) => panic!("SASL_SSL uses TLS"),
        }
    }

    #[test]
    fn unusable_ca_files_are_named() {
        let message = ca_file_error(b"not a certificate\n");
        assert!(
            message.starts_with("KAFKA_TLS_CA_FILE: ") && message.contains("no PEM certificate"),
            "{message}"
        );
        let message = ca_file_error(b"-----BEGIN CERTIFICATE-----\nnot base64!\n");
        assert!(message.starts_with("KAFKA_TLS_CA_FILE: "), "{message}");
        let message =
            ca_file_error(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(
            message.starts_with("KAFKA_TLS_CA_FILE: ") && message.contains("cannot be used"),
            "{message}"
        );
    }
}
