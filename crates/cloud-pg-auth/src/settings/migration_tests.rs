//! The migration identity: environment → the settings migrations log in with, and bad
//! combinations refused by name.

use super::tests::{check, env};
use super::*;
use crate::azure::{AzureCredentialKind, UserAssigned};

const AZURE_HOST: &str = "db.postgres.database.azure.com";
const RDS_HOST: &str = "db.abc123.eu-west-1.rds.amazonaws.com";
const MIGRATION_ID: &str = "11111111-2222-3333-4444-555555555555";

/// What the migration settings of an environment log in as: user, Azure credential kind,
/// user-assigned identity, whether the fallback password stays.
type Login = (
    Option<&'static str>,
    AzureCredentialKind,
    Option<UserAssigned>,
    bool,
);

/// A case's name, its environment and the login its migration settings make.
type Case = (&'static str, &'static [(&'static str, &'static str)], Login);

#[test]
fn the_environment_gives_migrations_their_own_login() {
    let cases: [Case; 6] = [
        (
            "nothing set: the service's login",
            &[("PGHOST", RDS_HOST), ("PGUSER", "app")],
            (Some("app"), AzureCredentialKind::Auto, None, true),
        ),
        (
            "aws: the token is signed for the migration user",
            &[
                ("PGHOST", RDS_HOST),
                ("PGUSER", "app"),
                ("PGAUTH_MIGRATION_USER", "app_owner"),
            ],
            (Some("app_owner"), AzureCredentialKind::Auto, None, false),
        ),
        (
            "password: another role, the same password",
            &[
                ("PGHOST", "localhost"),
                ("PGUSER", "app"),
                ("PGPASSWORD", "pw"),
                ("PGAUTH_MIGRATION_USER", "app_owner"),
            ],
            (Some("app_owner"), AzureCredentialKind::Auto, None, true),
        ),
        (
            "azure: another identity, its user from its token",
            &[
                ("PGHOST", AZURE_HOST),
                ("PGUSER", "app-identity"),
                ("PGAUTH_AZURE_MANAGED_IDENTITY", "1"),
                ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
            ],
            (
                None,
                AzureCredentialKind::ManagedIdentity,
                Some(UserAssigned::ClientId(MIGRATION_ID.into())),
                false,
            ),
        ),
        (
            "azure: another identity and its role",
            &[
                ("PGHOST", AZURE_HOST),
                ("PGUSER", "app-identity"),
                ("PGAUTH_AZURE_CREDENTIAL", "managed-identity"),
                ("AZURE_CLIENT_ID", "99999999-2222-3333-4444-555555555555"),
                ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
                ("PGAUTH_MIGRATION_USER", "migrator-identity"),
            ],
            (
                Some("migrator-identity"),
                AzureCredentialKind::ManagedIdentity,
                Some(UserAssigned::ClientId(MIGRATION_ID.into())),
                false,
            ),
        ),
        (
            "azure workload identity: the same federated token file, the other client id",
            &[
                ("PGHOST", AZURE_HOST),
                ("PGUSER", "app-identity"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
                ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
                ("AZURE_CLIENT_ID", "99999999-2222-3333-4444-555555555555"),
                ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
            ],
            (
                None,
                AzureCredentialKind::Auto,
                Some(UserAssigned::ClientId(MIGRATION_ID.into())),
                false,
            ),
        ),
    ];
    for (name, pairs, (user, credential, identity, fallback)) in cases {
        let mut pairs = pairs.to_vec();
        if !pairs.iter().any(|(k, _)| *k == "PGPASSWORD") {
            pairs.push(("PGAUTH_FALLBACK_PASSWORD", "fallback"));
        }
        let service =
            Settings::from_env_vars(&env(&pairs)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let migrations = service.for_migrations();
        assert_eq!(migrations.get_user(), user, "{name}");
        assert_eq!(
            migrations.get_azure().get_credential(),
            credential,
            "{name}"
        );
        assert_eq!(migrations.azure.managed_identity, identity, "{name}");
        let kept =
            migrations.get_fallback_password().is_some() || migrations.get_password().is_some();
        assert_eq!(kept, fallback, "{name}");
        assert!(migrations.validate().is_ok(), "{name}");
        // Derived once: the migration settings are gone, so deriving again changes nothing.
        assert_eq!(migrations.get_migration_user(), None, "{name}");
        assert_eq!(migrations.get_migration_azure_client_id(), None, "{name}");
        assert_eq!(
            format!("{:?}", migrations.for_migrations()),
            format!("{migrations:?}"),
            "{name}"
        );
        // The service's own settings are untouched.
        assert_eq!(
            service.get_user(),
            pairs.iter().find(|(k, _)| *k == "PGUSER").map(|(_, v)| *v),
            "{name}"
        );
    }
    let azure = Settings::from_env_vars(&env(&[
        ("PGHOST", AZURE_HOST),
        ("PGAUTH_AZURE_MANAGED_IDENTITY", "1"),
        ("AZURE_CLIENT_SECRET", "s3cret"),
        ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
    ]))
    .unwrap()
    .for_migrations();
    assert_eq!(azure.get_azure().client_id.as_deref(), Some(MIGRATION_ID));
    assert!(
        azure.get_azure().client_secret.is_none(),
        "the service's secret stays with it"
    );
}

#[test]
fn builder_methods_match_the_environment() {
    let built = Settings::default()
        .host(RDS_HOST)
        .user("app")
        .migration_user("app_owner");
    assert_eq!(built.get_migration_user(), Some("app_owner"));
    assert!(built.validate().is_ok());
    assert_eq!(built.for_migrations().get_user(), Some("app_owner"));
    let azure = Settings::default()
        .host(AZURE_HOST)
        .migration_azure_client_id(MIGRATION_ID);
    assert_eq!(azure.get_migration_azure_client_id(), Some(MIGRATION_ID));
    let text = format!("{:?}", built);
    assert!(
        text.contains("migration_user: Some(\"app_owner\")"),
        "{text}"
    );
}

#[test]
fn bad_migration_settings_are_refused_by_name() {
    let aws = [("PGHOST", RDS_HOST), ("PGUSER", "app")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        aws.iter().chain(extra).copied().collect()
    };
    check(
        &with(&[("PGAUTH_MIGRATION_USER", "owner;drop")]),
        "PGAUTH_MIGRATION_USER",
        "an rds iam token cannot carry",
    );
    check(
        &with(&[("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID)]),
        "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
        "resolves to aws",
    );
    check(
        &[
            ("PGHOST", "localhost"),
            ("PGUSER", "app"),
            ("PGPASSWORD", "hunter2"),
            ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
        ],
        "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
        "resolves to password",
    );
    check(
        &[
            ("PGHOST", AZURE_HOST),
            ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", "migrator"),
        ],
        "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
        "is not a client id",
    );
    // A migration password belongs to a migration role, and excludes a migration identity.
    check(
        &with(&[("PGAUTH_MIGRATION_PASSWORD", "owner-pw")]),
        "PGAUTH_MIGRATION_PASSWORD",
        "PGAUTH_MIGRATION_USER is not",
    );
    check(
        &[
            ("PGHOST", AZURE_HOST),
            ("PGAUTH_AZURE_MANAGED_IDENTITY", "1"),
            ("PGAUTH_MIGRATION_USER", "owner"),
            ("PGAUTH_MIGRATION_PASSWORD", "owner-pw"),
            ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
        ],
        "PGAUTH_MIGRATION_PASSWORD",
        "together with PGAUTH_MIGRATION_AZURE_CLIENT_ID",
    );
    for credential in ["cli", "client-secret"] {
        check(
            &[
                ("PGHOST", AZURE_HOST),
                ("PGAUTH_AZURE_CREDENTIAL", credential),
                ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
            ],
            "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
            "logs in as one identity only",
        );
    }
    let error = Settings::default()
        .host(RDS_HOST)
        .user("app")
        .migration_user("")
        .validate()
        .unwrap_err();
    assert_eq!(error.setting(), "PGAUTH_MIGRATION_USER", "{error}");
}

/// A case's name, its environment (with `PGAUTH_MIGRATION_USER=app_owner` and
/// `PGAUTH_MIGRATION_PASSWORD=owner-pw` added) and the sslmode in force for migrations.
type PasswordCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    SslMode,
);

#[test]
fn a_migration_password_logs_migrations_in_with_the_password_method() {
    let cases: [PasswordCase; 5] = [
        (
            "aws: the owner role logs in with its password, over verified tls",
            &[("PGHOST", RDS_HOST), ("PGUSER", "app")],
            SslMode::VerifyFull,
        ),
        (
            "azure: no token, the owner's password",
            &[
                ("PGHOST", AZURE_HOST),
                ("PGUSER", "app-identity"),
                ("PGAUTH_AZURE_MANAGED_IDENTITY", "1"),
            ],
            SslMode::VerifyFull,
        ),
        (
            "aws with its sslmode: kept",
            &[
                ("PGHOST", RDS_HOST),
                ("PGUSER", "app"),
                ("PGSSLMODE", "require"),
            ],
            SslMode::Require,
        ),
        (
            "a custom source's settings: the token default",
            &[("PGHOST", "db.internal"), ("PGUSER", "app")],
            SslMode::VerifyFull,
        ),
        (
            "password: the migration password replaces PGPASSWORD, libpq's default sslmode",
            &[
                ("PGHOST", "db.internal"),
                ("PGUSER", "app"),
                ("PGPASSWORD", "app-pw"),
            ],
            SslMode::Prefer,
        ),
    ];
    for (name, pairs, ssl) in cases {
        let mut pairs = pairs.to_vec();
        pairs.extend([
            ("PGAUTH_MIGRATION_USER", "app_owner"),
            ("PGAUTH_MIGRATION_PASSWORD", "owner-pw"),
        ]);
        if !pairs.iter().any(|(k, _)| *k == "PGPASSWORD") {
            pairs.push(("PGAUTH_FALLBACK_PASSWORD", "fallback"));
        }
        let service =
            Settings::from_env_vars(&env(&pairs)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(service.has_migration_identity(), "{name}");
        let secret = service.get_migration_password();
        assert_eq!(
            secret.as_ref().map(Secret::expose),
            Some("owner-pw"),
            "{name}"
        );
        let migrations = service.for_migrations();
        assert_eq!(migrations.get_method(), AuthMethod::Password, "{name}");
        assert_eq!(migrations.get_user(), Some("app_owner"), "{name}");
        let password = migrations.get_password().map(Secret::expose);
        assert_eq!(password, Some("owner-pw"), "{name}");
        assert_eq!(migrations.effective_ssl_mode().unwrap(), ssl, "{name}");
        assert!(migrations.get_fallback_password().is_none(), "{name}");
        assert!(migrations.validate().is_ok(), "{name}");
        // Derived once: deriving again changes nothing, and nothing says "migrate otherwise".
        assert!(!migrations.has_migration_identity(), "{name}");
        assert_eq!(
            format!("{:?}", migrations.for_migrations()),
            format!("{migrations:?}"),
            "{name}"
        );
        // The service's own login is untouched.
        let set = |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(service.get_user(), set("PGUSER"), "{name}");
        let service_password = service.get_password().map(Secret::expose);
        assert_eq!(service_password, set("PGPASSWORD"), "{name}");
    }
    // Settings built in code take it from the environment they are given.
    let built = Settings::default()
        .host(RDS_HOST)
        .user("app")
        .migration_user("app_owner")
        .env(env(&[("PGAUTH_MIGRATION_PASSWORD", "owner-pw")]));
    assert!(built.validate().is_ok());
    assert_eq!(built.for_migrations().get_method(), AuthMethod::Password);
}

#[test]
fn the_migration_password_is_a_secret_and_debug_never_shows_it() {
    assert!(crate::env::SECRET_VARS.contains(&"PGAUTH_MIGRATION_PASSWORD"));
    let pairs = [
        ("PGHOST", RDS_HOST),
        ("PGUSER", "app"),
        ("PGAUTH_MIGRATION_USER", "app_owner"),
        ("PGAUTH_MIGRATION_PASSWORD", "owner-s3cret"),
    ];
    let vars = env(&pairs);
    // Only as a secret: never as plain text.
    assert_eq!(vars.get("PGAUTH_MIGRATION_PASSWORD"), None);
    let service = Settings::from_env_vars(&vars).unwrap();
    let migrations = service.for_migrations();
    for text in [
        format!("{vars:?}"),
        format!("{service:?}"),
        format!("{service:#?}"),
        format!("{migrations:?}"),
        format!("{migrations:#?}"),
        format!("{:?}", service.get_migration_password()),
    ] {
        assert!(!text.contains("owner-s3cret"), "{text}");
    }
    // Nor does an error about it.
    let mut bad = pairs.to_vec();
    bad.retain(|(k, _)| *k != "PGAUTH_MIGRATION_USER");
    let error = Settings::from_env_vars(&env(&bad)).unwrap_err();
    assert_eq!(error.setting(), "PGAUTH_MIGRATION_PASSWORD", "{error}");
    assert!(!format!("{error} {error:?}").contains("owner-s3cret"));
}
