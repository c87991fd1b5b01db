//! Credentials sent to downstream services that are themselves protected: a bearer
//! token or a whole header, each read from a file at start (a mounted secret).
//!
//! The value is a `HeaderValue` marked sensitive, so it prints as `Sensitive` in any
//! `Debug` output and HTTP/2 never indexes it; no error message quotes a file's content.

use std::fmt;
use std::path::Path;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// A header sent with every call to one service.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    name: HeaderName,
    value: HeaderValue,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("header", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

impl Credential {
    /// `Authorization: Bearer <token>`, the token being the file's content (white space
    /// around it ignored).
    pub fn bearer_from_file(path: &Path) -> Result<Credential, String> {
        let token = read(path)?;
        Self::new(AUTHORIZATION, &format!("Bearer {}", token.trim()), path)
    }

    /// The header written in the file as one `Name: value` line.
    pub fn header_from_file(path: &Path) -> Result<Credential, String> {
        let text = read(path)?;
        let line = text.trim();
        let (name, value) = line
            .split_once(':')
            .filter(|_| !line.contains('\n'))
            .ok_or_else(|| format!("{}: expected one line `Name: value`", path.display()))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{}: not a valid header name", path.display()))?;
        Self::new(name, value.trim(), path)
    }

    fn new(name: HeaderName, value: &str, path: &Path) -> Result<Credential, String> {
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("{}: not a valid header value", path.display()))?;
        value.set_sensitive(true);
        Ok(Credential { name, value })
    }

    pub fn header_name(&self) -> &HeaderName {
        &self.name
    }

    pub(crate) fn header(&self) -> (HeaderName, HeaderValue) {
        (self.name.clone(), self.value.clone())
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("write");
        file
    }

    #[test]
    fn a_bearer_token_file_becomes_an_authorization_header() {
        let secret = file("s3cret-token\n");
        let credential = Credential::bearer_from_file(secret.path()).expect("valid");
        let (name, value) = credential.header();
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value, "Bearer s3cret-token");
        assert!(value.is_sensitive());
        assert!(!format!("{credential:?}").contains("s3cret"));
    }

    #[test]
    fn a_header_file_names_its_header() {
        let secret = file("X-Api-Key: k3y\n");
        let credential = Credential::header_from_file(secret.path()).expect("valid");
        assert_eq!(credential.header_name(), "x-api-key");
        assert_eq!(credential.header().1, "k3y");
    }

    #[test]
    fn errors_never_quote_the_content() {
        for content in [
            "no colon here s3cret",
            "X: a\nY: s3cret",
            "Bad Name: s3cret",
        ] {
            let secret = file(content);
            let error = Credential::header_from_file(secret.path()).expect_err(content);
            assert!(!error.contains("s3cret"), "{error}");
        }
        let secret = file("bad\u{1}s3cret");
        let error = Credential::bearer_from_file(secret.path()).expect_err("control char");
        assert!(!error.contains("s3cret"), "{error}");
        assert!(Credential::bearer_from_file(Path::new("/nonexistent/token")).is_err());
    }
}
