//! What a server's refusal at login means and what to do: a table from the server's
//! message (or SQLSTATE) to a cause and a fix, read first entry first.

use cloud_pg_auth::azure::AzureCloud;
use cloud_pg_auth::{AuthMethod, Env};

use super::credential::same_audience;

/// A refused login and what the fixes may name.
pub(super) struct Refusal<'a> {
    /// The server's SQLSTATE.
    pub sqlstate: &'a str,
    /// The server's message.
    pub message: &'a str,
    /// The method that made the password.
    pub method: AuthMethod,
    /// The role the login was for.
    pub user: &'a str,
    /// The database the login was for.
    pub database: &'a str,
    /// The token's object id (`oid`), for an Entra token.
    pub oid: Option<&'a str>,
    /// The role name derived from the token's identity.
    pub derived: Option<&'a str>,
    /// Read only by a fix that names a variable to unset.
    pub env: &'a Env,
}

/// What an entry recognises a refusal by.
pub(super) enum Matches {
    /// Any of these appears in the server's message.
    Message(&'static [&'static str]),
    /// The server's SQLSTATE.
    Sqlstate(&'static str),
}

/// What to do: fixed text, or text that names the login's role, identity or database.
pub(super) enum Fix {
    Text(&'static str),
    Built(fn(&Refusal<'_>) -> String),
}

/// One known refusal.
pub(super) struct Hint {
    pub matches: Matches,
    /// The methods it applies to; `None` for every method.
    pub methods: Option<&'static [AuthMethod]>,
    /// The `cause` field of the login step's data.
    pub cause: &'static str,
    pub fix: Fix,
}

/// The known refusals. Order matters: the first entry that matches wins.
pub(super) const HINTS: &[Hint] = &[
    Hint {
        matches: Matches::Message(&["does not have a valid audience claim"]),
        methods: None,
        cause: "audience",
        fix: Fix::Built(audience_fix),
    },
    Hint {
        matches: Matches::Message(&["oid mismatch for role"]),
        methods: None,
        cause: "oid_mismatch",
        fix: Fix::Built(|r| {
            format!(
                "the role {:?} is mapped to another identity than this token's (oid {}); log in as the role mapped to this identity{}, or have an administrator drop the role and run {}",
                r.user,
                r.oid.unwrap_or("?"),
                r.derived
                    .filter(|d| *d != r.user)
                    .map(|d| format!(" (PGUSER={d})"))
                    .unwrap_or_default(),
                create_azure_role(r.user, r.oid)
            )
        }),
    },
    Hint {
        matches: Matches::Message(&["cannot generate AAD_AUTH_TOKENTYPE_APP_USER"]),
        methods: None,
        cause: "token_type",
        fix: Fix::Built(|r| {
            format!(
                "the role {:?} belongs to a user, but this token is an application's (managed identity or service principal); set PGUSER to the role of this identity{}, or create one: {}",
                r.user,
                r.derived.map(|d| format!(" ({d})")).unwrap_or_default(),
                create_azure_role(r.derived.unwrap_or("NAME"), r.oid)
            )
        }),
    },
    Hint {
        matches: Matches::Message(&["has expired", "not yet valid"]),
        methods: None,
        cause: "clock",
        fix: Fix::Text(
            "the token's time window and the server's clock disagree; check this machine's clock (timedatectl) and fetch a new token (pgauth doctor always fetches one)",
        ),
    },
    Hint {
        matches: Matches::Message(&["tenant that is not associated"]),
        methods: None,
        cause: "tenant",
        fix: Fix::Text(
            "the identity belongs to another Entra tenant than the server; use an identity of the server's tenant (AZURE_TENANT_ID for workload identity and client secrets)",
        ),
    },
    Hint {
        matches: Matches::Message(&["invalid format", "validating the access token"]),
        methods: None,
        cause: "token_rejected",
        fix: Fix::Text(
            "the server could not validate the token: it must be an Entra access token exactly as issued, from the server's tenant; check PGAUTH_AZURE_CREDENTIAL and that nothing rewrites PGPASSWORD",
        ),
    },
    Hint {
        matches: Matches::Message(&["PAM authentication failed"]),
        methods: None,
        cause: "iam_rejected",
        fix: Fix::Built(|r| {
            let user = r.user;
            format!(
                "RDS refused the IAM token; check in this order: the role {user:?} exists and is granted rds_iam (pgauth sql create-role --method aws --name {user}), IAM authentication is enabled on the instance, the IAM policy allows rds-db:connect on dbuser:<resource id>/{user}, and the token is signed for the endpoint name RDS knows (PGHOST; through a tunnel, the tunnel's address goes in PGHOSTADDR)"
            )
        }),
    },
    // A role the cloud does not know checks the token as an ordinary password; for a
    // password method this text means a wrong password, which needs no hint.
    Hint {
        matches: Matches::Message(&["password authentication failed"]),
        methods: Some(&[AuthMethod::Azure]),
        cause: "unmapped_identity",
        fix: Fix::Built(|r| {
            format!(
                "no role {:?} is mapped to this identity (a role not created by pgaadauth_create_principal checks the token as an ordinary password and fails this way); an administrator runs: {}",
                r.user,
                create_azure_role(r.user, r.oid)
            )
        }),
    },
    Hint {
        matches: Matches::Message(&["password authentication failed"]),
        methods: Some(&[AuthMethod::Aws, AuthMethod::Custom]),
        cause: "unmapped_identity",
        fix: Fix::Built(|r| {
            let user = r.user;
            format!(
                "no role {user:?} uses IAM authentication (IAM applies only to members of rds_iam); an administrator runs: pgauth sql create-role --method aws --name {user}"
            )
        }),
    },
    Hint {
        matches: Matches::Message(&["no pg_hba.conf entry"]),
        methods: None,
        cause: "hba",
        fix: Fix::Text(
            "the server's pg_hba.conf has no entry for this connection; on a managed server check that TLS is used and the firewall allows this client",
        ),
    },
    Hint {
        matches: Matches::Sqlstate("3D000"),
        methods: None,
        cause: "database",
        fix: Fix::Built(|r| {
            format!(
                "the database {:?} does not exist; set PGDATABASE to an existing one",
                r.database
            )
        }),
    },
];

/// The cause and fix for a refusal no entry matches.
const UNKNOWN: (&str, &str) = (
    "server",
    "see the server's message above and docs/troubleshooting.md",
);

/// The first entry that matches `refusal`.
pub(super) fn find(refusal: &Refusal<'_>) -> Option<&'static Hint> {
    HINTS.iter().find(|hint| {
        let said = match hint.matches {
            Matches::Message(texts) => texts.iter().any(|t| refusal.message.contains(t)),
            Matches::Sqlstate(code) => refusal.sqlstate == code,
        };
        said && hint.methods.is_none_or(|m| m.contains(&refusal.method))
    })
}

/// The cause and the fix for `refusal`.
pub(super) fn explain(refusal: &Refusal<'_>) -> (&'static str, String) {
    match find(refusal) {
        Some(hint) => (
            hint.cause,
            match hint.fix {
                Fix::Text(text) => text.to_string(),
                Fix::Built(build) => build(refusal),
            },
        ),
        None => (UNKNOWN.0, UNKNOWN.1.to_string()),
    }
}

/// The `pgauth sql create-role` line that maps `name` to this token's identity.
fn create_azure_role(name: &str, oid: Option<&str>) -> String {
    match oid {
        Some(oid) => format!(
            "pgauth sql create-role --method azure --name '{name}' --object-id {oid} --type service"
        ),
        None => format!("pgauth sql create-role --method azure --name '{name}'"),
    }
}

/// The server quotes the resource it accepts: name its cloud if it is one we know.
fn audience_fix(refusal: &Refusal<'_>) -> String {
    let wanted = refusal
        .message
        .split("for the resource \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("");
    match AzureCloud::ALL
        .into_iter()
        .find(|c| same_audience(wanted, c.audience()))
    {
        Some(cloud) => format!(
            "the server is in the {cloud} cloud: set PGAUTH_AZURE_CLOUD={cloud}{}",
            if refusal.env.is_set("PGAUTH_AZURE_SCOPE") {
                " and unset PGAUTH_AZURE_SCOPE"
            } else {
                ""
            }
        ),
        None => {
            format!("request tokens for {wanted}: check PGAUTH_AZURE_CLOUD and PGAUTH_AZURE_SCOPE")
        }
    }
}

#[cfg(test)]
mod tests {
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
        use AuthMethod::{Aws, Azure, Custom, Password};
        let cases: &[(AuthMethod, &str, &str, Option<&str>)] = &[
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
}
