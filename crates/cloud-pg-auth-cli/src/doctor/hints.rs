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
    // Aurora DSQL answers every refused token with this one text.
    Hint {
        matches: Matches::Message(&["unable to accept connection, access denied"]),
        methods: None,
        cause: "dsql_access_denied",
        fix: Fix::Built(|r| {
            let user = r.user;
            let action = cloud_pg_auth::aws::dsql::action_for(user);
            format!(
                "Aurora DSQL refused the token; check in this order: the role {user:?} exists and is mapped to this IAM identity (as admin: pgauth sql create-role --method dsql --name {user} --arn <iam role arn>; SELECT * FROM sys.iam_pg_role_mappings lists the mappings), the IAM policy allows dsql:{action} on the cluster, the token is signed for the cluster endpoint in PGHOST and its region (AWS_REGION), and it has not expired (PGAUTH_DSQL_TOKEN_EXPIRES, clock skew)"
            )
        }),
    },
    Hint {
        matches: Matches::Sqlstate("53400"),
        methods: Some(&[AuthMethod::Dsql]),
        cause: "dsql_rate",
        fix: Fix::Text(
            "Aurora DSQL accepts about 100 new connections per second per cluster (bursts up to 1,000): open fewer at once (a smaller max_size, connections kept and reused: max_lifetime 55 minutes), and retry with backoff",
        ),
    },
    Hint {
        matches: Matches::Sqlstate("53300"),
        methods: Some(&[AuthMethod::Dsql]),
        cause: "dsql_connections",
        fix: Fix::Text(
            "the Aurora DSQL cluster has reached its connection limit (10,000 by default): lower max_size across the application's instances, close idle connections, or ask AWS for a higher quota",
        ),
    },
    // Cloud SQL and AlloyDB answer every refused IAM token with one text per product and
    // kind of user; the reason is only in the server's log.
    Hint {
        matches: Matches::Message(&[
            "IAM service account authentication failed",
            "IAM user authentication failed",
        ]),
        methods: None,
        cause: "gcp_iam_rejected",
        fix: Fix::Built(super::gcp::iam_rejected_fix),
    },
    Hint {
        matches: Matches::Message(&["password authentication failed"]),
        methods: Some(&[AuthMethod::Gcp]),
        cause: "gcp_not_iam_user",
        fix: Fix::Built(super::gcp::not_iam_user_fix),
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
mod tests;
