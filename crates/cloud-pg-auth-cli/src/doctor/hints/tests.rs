//! The hint table against the servers' refusal texts, and the fixes' wording.

use super::*;

/// A refusal of a login as `app` to `appdb`, with the token's identity named `uami`.
fn refusal<'a>(
    env: &'a Env,
    method: AuthMethod,
    sqlstate: &'a str,
    message: &'a str,
) -> Refusal<'a> {
    Refusal {
        sqlstate,
        message,
        method,
        user: "app",
        database: "appdb",
        oid: Some("11111111-2222-3333-4444-555555555555"),
        derived: Some("uami"),
        env,
    }
}

/// The cause `find` picks (`None`: no hint) for a server's refusal.
fn check(method: AuthMethod, sqlstate: &str, message: &str, expected: Option<&str>) {
    let env = Env::from_pairs(Vec::<(String, String)>::new());
    let found = find(&refusal(&env, method, sqlstate, message)).map(|h| h.cause);
    assert_eq!(found, expected, "{method:?} {sqlstate} {message:?}");
}

#[test]
fn each_known_refusal_has_its_cause() {
    use AuthMethod::{Aws, Azure, Custom, Dsql, Gcp, Password};
    let cases: &[(AuthMethod, &str, &str, Option<&str>)] = &[
        (
            Gcp,
            "28000",
            "Cloud SQL IAM service account authentication failed for user \"app@p.iam\"",
            Some("gcp_iam_rejected"),
        ),
        (
            Gcp,
            "28000",
            "Cloud SQL IAM user authentication failed for user \"jane@example.com\"",
            Some("gcp_iam_rejected"),
        ),
        (
            Custom,
            "28000",
            "AlloyDB IAM user authentication failed for user \"app@p.iam\"",
            Some("gcp_iam_rejected"),
        ),
        (
            Gcp,
            "28P01",
            "password authentication failed for user \"app@p.iam.gserviceaccount.com\"",
            Some("gcp_not_iam_user"),
        ),
        (
            Dsql,
            "28000",
            "unable to accept connection, access denied",
            Some("dsql_access_denied"),
        ),
        (
            Custom,
            "28000",
            "unable to accept connection, access denied",
            Some("dsql_access_denied"),
        ),
        (
            Dsql,
            "53400",
            "unable to accept connection, rate exceeded",
            Some("dsql_rate"),
        ),
        (
            Dsql,
            "53300",
            "too many connections",
            Some("dsql_connections"),
        ),
        (Password, "53300", "sorry, too many clients already", None),
        (
            Azure,
            "28000",
            "The access token does not have a valid audience claim. Please acquire a new token for the resource \"https://ossrdbms-aad.database.usgovcloudapi.net\".",
            Some("audience"),
        ),
        (
            Azure,
            "28000",
            "Service principal oid mismatch for role[app]",
            Some("oid_mismatch"),
        ),
        (
            Azure,
            "28000",
            "User oid mismatch for role[app]",
            Some("oid_mismatch"),
        ),
        (
            Azure,
            "28000",
            "Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role[a@b.c]",
            Some("token_type"),
        ),
        (
            Azure,
            "28000",
            "The access token has expired. Please acquire a new token and retry.",
            Some("clock"),
        ),
        (
            Azure,
            "28000",
            "The access token is not yet valid. Please acquire a new token and retry.",
            Some("clock"),
        ),
        (
            Azure,
            "28000",
            "The access token was issued by a tenant that is not associated with this server. Please acquire a new token from the right tenant and retry.",
            Some("tenant"),
        ),
        (
            Azure,
            "28000",
            "The access token has invalid format. Please ensure the token is passed exactly as returned by the authentication endpoint and retry.",
            Some("token_rejected"),
        ),
        (
            Azure,
            "28000",
            "An error occurred while validating the access token. Please acquire a new token and retry.",
            Some("token_rejected"),
        ),
        (
            Aws,
            "28000",
            "PAM authentication failed for user \"app\"",
            Some("iam_rejected"),
        ),
        (
            Azure,
            "28P01",
            "password authentication failed for user \"app\"",
            Some("unmapped_identity"),
        ),
        (
            Aws,
            "28P01",
            "password authentication failed for user \"app\"",
            Some("unmapped_identity"),
        ),
        (
            Custom,
            "28P01",
            "password authentication failed for user \"app\"",
            Some("unmapped_identity"),
        ),
        (
            Password,
            "28000",
            "no pg_hba.conf entry for host \"10.0.0.1\", user \"app\", database \"appdb\", no encryption",
            Some("hba"),
        ),
        (
            Password,
            "3D000",
            "database \"appdb\" does not exist",
            Some("database"),
        ),
        // The first entry that matches wins: an expired token refused in another way.
        (
            Azure,
            "28000",
            "The access token has expired and has invalid format",
            Some("clock"),
        ),
        // Nothing known: no hint.
        (
            Password,
            "28P01",
            "password authentication failed for user \"app\"",
            None,
        ),
        (Azure, "53300", "sorry, too many clients already", None),
        (
            Aws,
            "28000",
            "role \"app\" is not permitted to log in",
            None,
        ),
        (Azure, "3D00", "", None),
        (Azure, "", "", None),
    ];
    for (method, sqlstate, message, expected) in cases {
        check(*method, sqlstate, message, *expected);
    }
}

/// No entry is hidden behind an earlier one: each pattern, alone in a message and for a
/// method the entry applies to, finds the entry's cause.
#[test]
fn every_entry_is_reachable() {
    for hint in HINTS {
        let method = hint.methods.map_or(AuthMethod::Password, |m| m[0]);
        match hint.matches {
            Matches::Message(texts) => {
                for text in texts {
                    check(method, "", &format!("FATAL: {text}."), Some(hint.cause));
                }
            }
            Matches::Sqlstate(code) => check(method, code, "", Some(hint.cause)),
        }
    }
}

/// The fixes that name something of the login name the right thing.
#[test]
fn fixes_name_the_login() {
    let usgov = "The access token does not have a valid audience claim. Please acquire a new token for the resource \"https://ossrdbms-aad.database.usgovcloudapi.net\".";
    let elsewhere = "The access token does not have a valid audience claim. Please acquire a new token for the resource \"https://example.net\".";
    let no_env = Env::from_pairs(Vec::<(String, String)>::new());
    let scope_set = Env::from_pairs([("PGAUTH_AZURE_SCOPE", "https://x/.default")]);
    let cases: &[(&Env, AuthMethod, &str, &str, &str)] = &[
        (
            &no_env,
            AuthMethod::Azure,
            "28000",
            usgov,
            "the server is in the usgov cloud: set PGAUTH_AZURE_CLOUD=usgov",
        ),
        (
            &scope_set,
            AuthMethod::Azure,
            "28000",
            usgov,
            "set PGAUTH_AZURE_CLOUD=usgov and unset PGAUTH_AZURE_SCOPE",
        ),
        (
            &no_env,
            AuthMethod::Azure,
            "28000",
            elsewhere,
            "request tokens for https://example.net: check",
        ),
        (
            &no_env,
            AuthMethod::Azure,
            "28000",
            "Service principal oid mismatch for role[app]",
            "(oid 11111111-2222-3333-4444-555555555555); log in as the role mapped to this identity (PGUSER=uami)",
        ),
        (
            &no_env,
            AuthMethod::Azure,
            "28000",
            "Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role[app]",
            "create one: pgauth sql create-role --method azure --name 'uami' --object-id 11111111-2222-3333-4444-555555555555 --type service",
        ),
        (
            &no_env,
            AuthMethod::Azure,
            "28P01",
            "password authentication failed for user \"app\"",
            "an administrator runs: pgauth sql create-role --method azure --name 'app' --object-id",
        ),
        (
            &no_env,
            AuthMethod::Aws,
            "28P01",
            "password authentication failed for user \"app\"",
            "an administrator runs: pgauth sql create-role --method aws --name app",
        ),
        (
            &no_env,
            AuthMethod::Aws,
            "28000",
            "PAM authentication failed for user \"app\"",
            "the role \"app\" exists and is granted rds_iam",
        ),
        (
            &no_env,
            AuthMethod::Dsql,
            "28000",
            "unable to accept connection, access denied",
            "pgauth sql create-role --method dsql --name app --arn",
        ),
        (
            &no_env,
            AuthMethod::Dsql,
            "28000",
            "unable to accept connection, access denied",
            "allows dsql:DbConnect on the cluster",
        ),
        (
            &no_env,
            AuthMethod::Dsql,
            "53400",
            "rate exceeded",
            "100 new connections per second",
        ),
        (
            &no_env,
            AuthMethod::Dsql,
            "53300",
            "too many connections",
            "connection limit",
        ),
        (
            &no_env,
            AuthMethod::Gcp,
            "28000",
            "Cloud SQL IAM service account authentication failed for user \"app\"",
            "roles/cloudsql.instanceUser",
        ),
        (
            &no_env,
            AuthMethod::Gcp,
            "28000",
            "Cloud SQL IAM user authentication failed for user \"app\"",
            "pgauth sql create-role --method gcp --name app",
        ),
        (
            &no_env,
            AuthMethod::Gcp,
            "28000",
            "AlloyDB IAM user authentication failed for user \"app\"",
            "roles/alloydb.databaseUser",
        ),
        (
            &no_env,
            AuthMethod::Gcp,
            "28000",
            "AlloyDB IAM user authentication failed for user \"app\"",
            "(this token's principal logs in as \"uami\")",
        ),
        (
            &no_env,
            AuthMethod::Gcp,
            "28P01",
            "password authentication failed for user \"app\"",
            "\"app\" is not an IAM database user",
        ),
        (
            &no_env,
            AuthMethod::Password,
            "3D000",
            "database \"appdb\" does not exist",
            "the database \"appdb\" does not exist",
        ),
        (
            &no_env,
            AuthMethod::Password,
            "57P03",
            "the database system is starting up",
            "see the server's message above",
        ),
    ];
    for (env, method, sqlstate, message, expected) in cases {
        let (_, fix) = explain(&refusal(env, *method, sqlstate, message));
        assert!(
            fix.contains(expected),
            "{message:?}: {fix:?} lacks {expected:?}"
        );
    }
}
