//! Dashboard sign-in with an OpenID Connect provider (the test's, on a loopback port:
//! discovery, an authorization endpoint that grants every request, a token endpoint that
//! checks the client, the code and the PKCE verifier, keys generated here), followed
//! over HTTP hop by hop, the way a browser follows the redirects.

use orchestrator_testkit::idp::{IdpClient, IdpUser, TestIdp, TestKey};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_line};

const CLIENT_ID: &str = "orchestrator-dashboard";
const CLIENT_SECRET: &str = "dashboard-secret";

/// An identity provider that signs in `alice` of tenant `acme`, and an API that offers
/// sign-in with it.
pub async fn app_and_idp() -> (TestApp, TestIdp, TestKey, tempfile::TempDir) {
    let key = TestKey::rsa("idp-1");
    let idp = TestIdp::start(&[&key]).await;
    idp.oidc(client(), alice(), &key);
    let secrets = tempfile::tempdir().expect("a folder");
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).expect("writing the secret");
    let port = orchestrator_testkit::ports::free_port();
    let issuer = idp.issuer.clone();
    let app = TestApp::spawn_with(move |config| {
        config.port = port;
        config.auth.oidc.issuer = Some(issuer);
        config.auth.oidc.client_id = Some(CLIENT_ID.into());
        config.auth.oidc.client_secret_file = Some(secret_file);
        config.auth.oidc.redirect_url =
            Some(format!("http://127.0.0.1:{port}/ui/sign-in/oidc/callback"));
    })
    .await;
    (app, idp, key, secrets)
}

fn client() -> IdpClient {
    IdpClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
    }
}

/// `alice` of tenant `acme`, who may read and operate.
fn alice() -> IdpUser {
    IdpUser {
        subject: "alice".into(),
        claims: json!({"tenant": "acme", "scope": "tasks:read tasks:operate"}),
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// `name=value` of the `Set-Cookie` header naming `name`, if any.
fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| value.split(';').next().unwrap_or_default().to_owned())
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[LOCATION]
        .to_str()
        .expect("ASCII")
        .to_owned()
}

/// The browser back from the provider, with `state_cookie`.
async fn come_back(callback: &str, state_cookie: &str) -> reqwest::Response {
    browser()
        .get(callback)
        .header(COOKIE, state_cookie)
        .send()
        .await
        .expect("sent")
}

/// Starts a sign-in: the state cookie, and the provider's answer (where it sends the
/// browser back).
async fn through_the_provider(app: &TestApp) -> (String, String) {
    let client = browser();
    let start = client
        .get(app.url("/ui/sign-in/oidc"))
        .send()
        .await
        .expect("sent");
    assert_eq!(start.status(), 303);
    let state_cookie = cookie(&start, "orchestrator_oidc").expect("the state cookie");
    let at_provider = client
        .get(location(&start))
        .send()
        .await
        .expect("sent to the provider");
    assert_eq!(
        at_provider.status(),
        302,
        "{}",
        at_provider.text().await.unwrap_or_default()
    );
    (state_cookie, location(&at_provider))
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_with_the_provider_opens_a_session_of_its_tenant_and_scopes() {
    let (app, _idp, _key, _secrets) = app_and_idp().await;
    let page = browser()
        .get(app.url("/ui/sign-in"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("the page");
    assert!(page.contains(r#"<meta name="orchestrator-sso" content="/ui/sign-in/oidc">"#));

    let (state_cookie, callback) = through_the_provider(&app).await;
    assert!(
        callback.starts_with(&app.url("/ui/sign-in/oidc/callback?code=")),
        "{callback}"
    );
    let back = come_back(&callback, &state_cookie).await;
    assert_eq!(
        (back.status().as_u16(), location(&back)),
        (303, "/ui".to_owned())
    );
    let session = cookie(&back, "orchestrator_session").expect("a session cookie");
    assert_eq!(
        cookie(&back, "orchestrator_oidc").as_deref(),
        Some("orchestrator_oidc="),
        "the state cookie is cleared"
    );
    let me = json_line(
        browser()
            .get(app.url("/api/me"))
            .header(COOKIE, &session)
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(
        (&me["tenant"], &me["scopes"], &me["credential"]),
        (
            &json!("acme"),
            &json!(["tasks:read", "tasks:operate"]),
            &json!("session")
        )
    );

    // The same callback again (a replay): the sign-in was taken, nothing opens.
    let again = come_back(&callback, &state_cookie).await;
    assert_eq!(location(&again), "/ui/sign-in?failed=1");
    assert!(cookie(&again, "orchestrator_session").is_none());

    // The audit log has the sign-in, by the provider's subject.
    let admin = app
        .db
        .token("acme", &[orchestrator_core::Scope::Admin])
        .await;
    let audit: Value = json_line(
        orchestrator_testkit::api::client_with_token(&admin)
            .get(app.url("/api/audit?action=sign_in"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(audit["events"][0]["actor"], "oidc:alice", "{audit}");
    assert_eq!(audit["events"][0]["outcome"], "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_that_does_not_belong_to_this_browser_or_carries_a_bad_token_opens_nothing() {
    let (app, idp, key, _secrets) = app_and_idp().await;
    let refused = |response: reqwest::Response, case: &str| {
        assert_eq!(location(&response), "/ui/sign-in?failed=1", "{case}");
        assert!(
            cookie(&response, "orchestrator_session").is_none(),
            "{case}"
        );
    };

    // Without the state cookie (login CSRF: another browser's callback), or with
    // another sign-in's.
    let (_, callback) = through_the_provider(&app).await;
    let response = browser().get(&callback).send().await.expect("sent");
    refused(response, "no state cookie");
    let (other_cookie, _) = through_the_provider(&app).await;
    let (_, callback) = through_the_provider(&app).await;
    let response = come_back(&callback, &other_cookie).await;
    refused(response, "another sign-in's state cookie");

    // The provider says no.
    let response = browser()
        .get(app.url("/ui/sign-in/oidc/callback?error=access_denied&state=x"))
        .send()
        .await
        .expect("sent");
    refused(response, "the provider refused");

    // An ID token signed with a key the provider does not publish.
    let rogue = TestKey::rsa("idp-1");
    idp.oidc(client(), alice(), &rogue);
    let (state_cookie, callback) = through_the_provider(&app).await;
    let response = come_back(&callback, &state_cookie).await;
    refused(response, "a key the provider does not publish");

    // An ID token whose nonce is not this sign-in's.
    idp.oidc(client(), alice(), &key);
    idp.override_nonce("someone-elses");
    let (state_cookie, callback) = through_the_provider(&app).await;
    let response = come_back(&callback, &state_cookie).await;
    refused(response, "a foreign nonce");
    assert_eq!(app.db.count_rows("dashboard_sessions").await, 0);
}
