//! `pgauth` with Aurora DSQL against the emulator's DSQL endpoint name (dialled through
//! `PGHOSTADDR=127.0.0.1`, verified by name): token, env, doctor and create-role.

mod common;

use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};
use common::{env, parse_exports, pgauth};
use serde_json::Value;

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default()).await.unwrap()
}

/// The emulator's exports pointed at its DSQL endpoint, as `user`, auto-detected.
fn dsql<'a>(host: &'a str, user: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PGHOST", host),
        ("PGHOSTADDR", "127.0.0.1"),
        ("PGUSER", user),
    ]
}

#[tokio::test]
async fn token_env_and_doctor_work_for_dsql() {
    let emulator = emulator().await;
    let host = emulator.dsql_host();
    for user in [emulator.dsql_role(), emulator.dsql_admin_role()] {
        let env = env(&emulator, &dsql(&host, user));
        let json = pgauth(&["-q", "token", "--json"], &env).await;
        assert_eq!(json.code(), Some(0), "{}", json.err);
        let v: Value = serde_json::from_str(&json.out).unwrap();
        assert_eq!(v["method"], "dsql", "{v}");
        assert_eq!(v["cloud"], "us-east-1", "{v}");
        let token = v["token"].as_str().unwrap();
        assert!(
            token.starts_with(&format!("{host}/?Action=DbConnect")),
            "{token}"
        );

        let exported = pgauth(&["env"], &env).await;
        assert_eq!(exported.code(), Some(0), "{}", exported.err);
        let vars = parse_exports(&exported.out);
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PGHOST"), Some(host.as_str()));
        assert_eq!(get("PGHOSTADDR"), Some("127.0.0.1"));
        assert_eq!(get("PGSSLMODE"), Some("verify-full"));

        let ran = pgauth(&["doctor", "--json"], &env).await;
        let report: Value = serde_json::from_str(&ran.out).unwrap();
        assert_eq!(report["ok"], true, "{report:#}");
        let audience = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "audience")
            .unwrap();
        let action = if user == "admin" {
            "DbConnectAdmin"
        } else {
            "DbConnect"
        };
        assert_eq!(audience["data"]["signed_action"], action, "{audience:#}");
        assert!(
            !report
                .to_string()
                .contains(token.rsplit('=').next().unwrap())
        );
    }
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn doctor_explains_a_refused_dsql_token_and_an_ip_host() {
    let emulator = emulator().await;
    let host = emulator.dsql_host();
    let role = emulator.dsql_role();
    // Signed for another region than the cluster's: DSQL's one refusal text, and the fix.
    let mut overrides = dsql(&host, role);
    overrides.push(("AWS_REGION", "eu-west-1"));
    overrides.push(("AWS_DEFAULT_REGION", ""));
    let ran = pgauth(&["doctor", "--json"], &env(&emulator, &overrides)).await;
    let report: Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(report["failed_step"], "login", "{report:#}");
    let login = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "login")
        .unwrap();
    let fix = login["fix"].as_str().unwrap();
    assert!(
        fix.contains("pgauth sql create-role --method dsql"),
        "{fix}"
    );
    assert!(fix.contains("AWS_REGION"), "{fix}");

    // By IP, DSQL cannot route: refused at the settings step, naming PGHOSTADDR.
    let ran = pgauth(
        &["doctor", "--json"],
        &env(&emulator, &[("PGAUTH_METHOD", "dsql"), ("PGUSER", role)]),
    )
    .await;
    let report: Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(report["failed_step"], "settings", "{report:#}");
    assert!(report.to_string().contains("PGHOSTADDR"), "{report:#}");
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn create_role_prints_the_dsql_mapping() {
    let env = cloud_pg_auth::Env::from_pairs(Vec::<(String, String)>::new());
    let ran = pgauth(
        &[
            "sql",
            "create-role",
            "--method",
            "dsql",
            "--name",
            "app",
            "--arn",
            "arn:aws:iam::123456789012:role/app",
        ],
        &env,
    )
    .await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    assert!(
        ran.out.contains("CREATE ROLE \"app\" WITH LOGIN;"),
        "{}",
        ran.out
    );
    assert!(
        ran.out
            .contains("AWS IAM GRANT \"app\" TO 'arn:aws:iam::123456789012:role/app';"),
        "{}",
        ran.out
    );
}
