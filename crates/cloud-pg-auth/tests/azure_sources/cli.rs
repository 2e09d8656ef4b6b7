//! The Azure CLI, through a fake `az` on the source's search path (the process PATH is never
//! touched). All CLI cases run in this one test, so no other test forks while a script is
//! being written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cloud_pg_auth::azure::{AzureCredentialKind, AzureOptions, AzureSource};
use cloud_pg_auth::{Env, Error, TokenErrorKind, TokenSource};

use crate::support::{Want, check_result, fails, jwt, now_secs, scratch_dir};

fn fake_az(script_body: &str) -> PathBuf {
    let dir = scratch_dir("cli");
    let az = dir.join("az");
    std::fs::write(
        &az,
        format!("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n{script_body}\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn cli_options(dir: &Path, credential: &str) -> AzureOptions {
    let path = std::env::join_paths([dir, Path::new("/usr/bin"), Path::new("/bin")]).unwrap();
    AzureOptions::from_env(&Env::from_pairs([
        ("PGAUTH_AZURE_CREDENTIAL", credential.to_string()),
        ("PATH", path.to_string_lossy().into_owned()),
    ]))
    .unwrap()
}

#[tokio::test]
async fn azure_cli() {
    use TokenErrorKind::*;
    let now = now_secs();
    let user_token = jwt(serde_json::json!({
        "aud": "https://ossrdbms-aad.database.windows.net",
        "oid": "ffffffff-0000-1111-2222-333333333333",
        "upn": "ada@contoso.com",
        "idtyp": "user",
        "exp": now + 3000,
    }));
    let output = |expires_on: Option<u64>| {
        let mut v = serde_json::json!({
            "accessToken": user_token,
            "expiresOn": "2030-01-01 00:00:00.000000",
            "subscription": "s",
            "tenant": "t",
            "tokenType": "Bearer",
        });
        if let Some(e) = expires_on {
            v["expires_on"] = e.into();
        }
        format!("cat <<'EOF'\n{v}\nEOF")
    };
    let cases: Vec<(&str, String, &str, Option<Duration>, Want)> = vec![
        (
            "logged in (explicit)",
            output(Some(now + 3599)),
            "cli",
            None,
            Want::Token {
                expires: now + 3000,
                user: Some("ada@contoso.com"),
            },
        ),
        (
            "logged in (auto)",
            output(Some(now + 1000)),
            "auto",
            None,
            Want::Token {
                expires: now + 1000,
                user: Some("ada@contoso.com"),
            },
        ),
        (
            "not logged in",
            "echo \"ERROR: Please run 'az login' to setup account.\" >&2; exit 1".into(),
            "cli",
            None,
            fails(Rejected, "the azure cli has no valid login; run az login"),
        ),
        (
            "malformed output",
            "echo 'this is not json'".into(),
            "cli",
            None,
            fails(Transient, "the azure cli could not give a token"),
        ),
        (
            "an old cli without expires_on",
            output(None),
            "cli",
            None,
            fails(Transient, "expires_on field not found"),
        ),
        (
            "an az whose output passes the 1 MiB limit is stopped there",
            "head -c 3000000 /dev/zero | tr '\\0' x".into(),
            "cli",
            None,
            fails(
                Transient,
                "the azure cli's output is larger than 1 MiB, the most this client reads",
            ),
        ),
        (
            "an az whose error output passes the 1 MiB limit is stopped there",
            "head -c 3000000 /dev/zero | tr '\\0' x >&2; exit 1".into(),
            "cli",
            None,
            fails(
                Transient,
                "the azure cli's error output is larger than 1 MiB",
            ),
        ),
        (
            "a hanging cli",
            "exec sleep 30".into(),
            "cli",
            Some(Duration::from_millis(500)),
            fails(Transient, "no token within 500ms"),
        ),
    ];
    for (label, script, credential, timeout, want) in cases {
        let dir = fake_az(&script);
        let mut options = cli_options(&dir, credential);
        if let Some(t) = timeout {
            options = options.timeout(t);
        }
        let source = AzureSource::new(&options).unwrap();
        assert_eq!(
            source.credential_kind(),
            Some(AzureCredentialKind::Cli),
            "{label}"
        );
        assert_eq!(
            source.info().get_endpoint(),
            Some(dir.join("az").display().to_string().as_str())
        );
        check_result(label, source.fetch().await, &want);
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        assert!(
            args.contains("account get-access-token -o json --scope https://ossrdbms-aad.database.windows.net/.default"),
            "{label}: {args}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // `cli` without `az` on the search path fails at start-up; so does `auto` with nothing.
    let empty = scratch_dir("no-az");
    for credential in ["cli", "auto"] {
        let options = cli_options(&empty, credential).cli_search_path(empty.clone());
        match AzureSource::new(&options) {
            Err(Error::Config(e)) => {
                assert_eq!(e.setting(), "PGAUTH_AZURE_CREDENTIAL");
                assert!(e.message().contains("az"), "{e}");
            }
            other => panic!("{credential}: unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&empty);
}
