//! `pgauth` with Google Cloud SQL and AlloyDB against the emulator's metadata server and key
//! file: token, env, doctor (and its explanations of refusals) and create-role.

mod common;

use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};
use common::{env, parse_exports, pgauth};
use serde_json::Value;

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default()).await.unwrap()
}

/// The doctor's report for `overrides` on the emulator's exports.
async fn doctor(emulator: &Emulator, overrides: &[(&str, &str)]) -> Value {
    let ran = pgauth(&["doctor", "--json"], &env(emulator, overrides)).await;
    serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}{}", ran.out, ran.err))
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn token_env_and_doctor_work_for_both_products() {
    let emulator = emulator().await;
    let role = emulator.gcp_role();
    for product in ["cloudsql", "alloydb"] {
        let overrides = [("PGAUTH_METHOD", "gcp"), ("PGAUTH_GCP_PRODUCT", product)];
        let env = env(&emulator, &overrides);
        let json = pgauth(&["-q", "token", "--json"], &env).await;
        assert_eq!(json.code(), Some(0), "{}", json.err);
        let v: Value = serde_json::from_str(&json.out).unwrap();
        assert_eq!(v["method"], "gcp", "{v}");
        assert_eq!(v["cloud"], product, "{v}");
        assert_eq!(v["username"], role.as_str(), "{v}");
        assert_eq!(v["username_source"], "google_email", "{v}");
        let token = v["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("ya29."), "{token}");

        let exported = pgauth(&["env"], &env).await;
        assert_eq!(exported.code(), Some(0), "{}", exported.err);
        let vars = parse_exports(&exported.out);
        let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(get("PGUSER"), Some(role.clone()));
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert!(get("PGPASSWORD").unwrap().starts_with("ya29."));

        let report = doctor(&emulator, &overrides).await;
        assert_eq!(report["ok"], true, "{report:#}");
        let audience = step(&report, "audience");
        assert_eq!(audience["data"]["product"], product, "{audience:#}");
        assert_eq!(
            audience["data"]["derived_user"],
            role.as_str(),
            "{audience:#}"
        );
        let token_step = step(&report, "token");
        assert!(
            token_step["summary"]
                .as_str()
                .unwrap()
                .contains("google_email"),
            "{token_step:#}"
        );
        assert!(!report.to_string().contains(&token["ya29.".len()..]));
    }
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_file_logs_in_as_its_service_account() {
    let emulator = emulator().await;
    let key = emulator.gcp_key_file().display().to_string();
    let overrides = [
        ("PGAUTH_METHOD", "gcp"),
        ("GOOGLE_APPLICATION_CREDENTIALS", key.as_str()),
    ];
    let ran = pgauth(&["-q", "token", "--json"], &env(&emulator, &overrides)).await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    let v: Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(v["username"], emulator.gcp_key_role().as_str(), "{v}");
    let report = doctor(&emulator, &overrides).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        step(&report, "current_user")["data"]["current_user"],
        emulator.gcp_key_role().as_str()
    );
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn doctor_explains_wrong_users() {
    let emulator = emulator().await;
    let key = emulator.gcp_key_file().display().to_string();
    let vm_role = emulator.gcp_role();
    let key_role = emulator.gcp_key_role();

    // The key's principal is known: a PGUSER of another principal fails before the login.
    let report = doctor(
        &emulator,
        &[
            ("PGAUTH_METHOD", "gcp"),
            ("GOOGLE_APPLICATION_CREDENTIALS", key.as_str()),
            ("PGUSER", vm_role.as_str()),
        ],
    )
    .await;
    assert_eq!(report["failed_step"], "audience", "{report:#}");
    let fix = step(&report, "audience")["fix"].as_str().unwrap();
    assert!(fix.contains(&format!("set PGUSER={key_role}")), "{fix}");

    // With the metadata server and PGUSER set, the server refuses: Cloud SQL's text and fix.
    let report = doctor(
        &emulator,
        &[("PGAUTH_METHOD", "gcp"), ("PGUSER", key_role.as_str())],
    )
    .await;
    assert_eq!(report["failed_step"], "login", "{report:#}");
    let login = step(&report, "login");
    assert_eq!(login["data"]["cause"], "gcp_iam_rejected", "{login:#}");
    assert!(
        login["summary"]
            .as_str()
            .unwrap()
            .contains("Cloud SQL IAM service account authentication failed"),
        "{login:#}"
    );
    let fix = login["fix"].as_str().unwrap();
    assert!(fix.contains("roles/cloudsql.instanceUser"), "{fix}");

    // A user that keeps the suffix: refused at the settings step, naming the right name.
    let suffixed = format!("{vm_role}.gserviceaccount.com");
    let report = doctor(
        &emulator,
        &[("PGAUTH_METHOD", "gcp"), ("PGUSER", suffixed.as_str())],
    )
    .await;
    assert_eq!(report["failed_step"], "settings", "{report:#}");
    assert!(
        report
            .to_string()
            .contains(&format!("set PGUSER=\\\"{vm_role}\\\"")),
        "{report:#}"
    );

    // No IAM user of that name: the token is checked as a password.
    let report = doctor(
        &emulator,
        &[
            ("PGAUTH_METHOD", "gcp"),
            ("PGUSER", emulator.password_role()),
        ],
    )
    .await;
    let login = step(&report, "login");
    assert_eq!(login["data"]["cause"], "gcp_not_iam_user", "{login:#}");
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn create_role_prints_the_gcloud_line_and_the_grants() {
    let env = cloud_pg_auth::Env::from_pairs(Vec::<(String, String)>::new());
    let ran = pgauth(
        &[
            "sql",
            "create-role",
            "--method",
            "gcp",
            "--name",
            "app@my-project.iam",
            "--grant",
            "write",
            "--database",
            "app",
        ],
        &env,
    )
    .await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    for line in [
        "gcloud sql users create 'app@my-project.iam' --instance=INSTANCE --type=cloud_iam_service_account",
        "roles/cloudsql.instanceUser",
        "GRANT CONNECT ON DATABASE \"app\" TO \"app@my-project.iam\";",
    ] {
        assert!(ran.out.contains(line), "{line}: {}", ran.out);
    }
    let ran = pgauth(
        &[
            "sql",
            "create-role",
            "--method",
            "gcp",
            "--gcp-product",
            "alloydb",
            "--name",
            "jane@example.com",
        ],
        &env,
    )
    .await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    assert!(
        ran.out.contains(
            "gcloud alloydb users create 'jane@example.com' --cluster=CLUSTER --region=REGION --type=IAM_BASED"
        ),
        "{}",
        ran.out
    );
}
