//! `orchestrator-api token create|list|revoke`, run as the real binary against a
//! database of its own.

use std::process::{Command, Output};

use orchestrator_auth::PresentedToken;
use orchestrator_store::tokens;
use orchestrator_testkit::database::TestDatabase;
use serde_json::Value;
use uuid::Uuid;

fn token_command(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator-api"))
        .arg("token")
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("NO_COLOR", "1")
        .output()
        .expect("orchestrator-api runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn create_prints_only_the_token_and_stores_only_its_hash() {
    let db = TestDatabase::create().await;
    let created = token_command(
        &db,
        &[
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "tasks:read,tasks:submit",
            "--name",
            "ci",
            "--expires-in",
            "90d",
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    let token = stdout
        .strip_suffix('\n')
        .expect("one line ending with a newline");
    assert!(
        !token.contains('\n'),
        "stdout is the token alone: {stdout:?}"
    );
    let presented = PresentedToken::parse(token).expect("a well-formed token");
    let stderr = text(&created.stderr);
    assert!(stderr.contains(&presented.id.to_string()), "{stderr}");
    assert!(stderr.contains("only this once"), "{stderr}");
    assert!(!stderr.contains(token), "the secret is not in the logs");

    let mut conn = db.connection().await;
    let row = tokens::find(&mut conn, presented.id)
        .await
        .expect("read")
        .expect("stored");
    assert!(presented.matches(&row.secret_hash));
    assert_eq!(row.tenant, "acme");
    assert_eq!(row.scopes, "tasks:submit tasks:read");
    assert_eq!(row.name.as_deref(), Some("ci"));
    let valid_for = row.expires_at.expect("expires") - row.created_at;
    assert!((89..=90).contains(&valid_for.num_days()), "{valid_for}");

    let listed = token_command(&db, &["list", "--json"]);
    assert!(listed.status.success());
    let listed_text = text(&listed.stdout);
    assert!(
        !listed_text.contains(&token[token.len() - 43..]),
        "no secret listed"
    );
    let listed: Value = serde_json::from_str(&listed_text).expect("JSON");
    assert_eq!(listed[0]["id"], presented.id.to_string());
    assert_eq!(
        listed[0]["scopes"],
        serde_json::json!(["tasks:submit", "tasks:read"])
    );
    assert_eq!(listed[0]["revoked_at"], Value::Null);
    assert!(listed[0].get("secret_hash").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_marks_the_token_and_list_filters_by_tenant() {
    let db = TestDatabase::create().await;
    let create = |tenant: &str| {
        let output = token_command(&db, &["create", "--tenant", tenant, "--scopes", "admin"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        PresentedToken::parse(text(&output.stdout).trim_end())
            .expect("token")
            .id
    };
    let first = create("one");
    let second = create("two");

    let revoked = token_command(&db, &["revoke", &first.to_string()]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let mut conn = db.connection().await;
    let row = tokens::find(&mut conn, first)
        .await
        .expect("read")
        .expect("row");
    assert!(row.revoked_at.is_some());
    assert!(!row.is_usable(chrono::Utc::now()));

    let table = text(&token_command(&db, &["list", "--tenant", "one"]).stdout);
    assert!(
        table.contains(&first.to_string()) && table.contains("revoked"),
        "{table}"
    );
    assert!(!table.contains(&second.to_string()), "{table}");

    let unknown = token_command(&db, &["revoke", &Uuid::new_v4().to_string()]);
    assert!(!unknown.status.success());

    // Both actions are in the audit log of the token's tenant, by the actor `cli`.
    let tenant = orchestrator_core::TenantName::parse("one").expect("tenant");
    let events = orchestrator_store::audit::page(&mut conn, &tenant, &Default::default(), None, 10)
        .await
        .expect("audit");
    let seen: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .map(|event| {
            (
                event.actor.as_str(),
                event.action.as_str(),
                event.target.as_deref(),
            )
        })
        .collect();
    let first = first.to_string();
    assert_eq!(
        seen,
        [
            ("cli", "token.revoke", Some(first.as_str())),
            ("cli", "token.create", Some(first.as_str())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_create_nothing() {
    let db = TestDatabase::create().await;
    for args in [
        &["create", "--tenant", "acme", "--scopes", "tasks:write"][..],
        &["create", "--tenant", "Acme", "--scopes", "admin"],
        &["create", "--tenant", "acme", "--scopes", ""],
        &[
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "admin",
            "--expires-in",
            "soon",
        ],
    ] {
        let output = token_command(&db, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(db.count_rows("api_tokens").await, 0);
}
