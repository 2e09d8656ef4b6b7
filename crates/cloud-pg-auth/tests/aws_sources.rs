//! The AWS token source: the environment step from the settings snapshot, signing host and
//! port overrides, and aws-config's default chain fetching ECS/EKS container credentials from a
//! local endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/...) or running a
//! profile's `credential_process`.
//!
//! aws-config reads the process environment itself, and this crate forbids `unsafe` (so no
//! `set_var`): the chain cases run in a child process of this test binary, started with a
//! clean environment made for the case. EC2 instance metadata is disabled in every child, so
//! no request can go to 169.254.169.254.
#![cfg(feature = "aws")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloud_pg_auth::aws::{AwsOptions, AwsSource};
use cloud_pg_auth::{Env, Error, TokenSource};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn query(token: &str) -> BTreeMap<String, String> {
    let (_, q) = token.split_once("/?").expect(token);
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The environment step, from the snapshot: no network, no process environment.

fn check_load(
    pairs: &[(&str, &str)],
    host: &str,
    port: u16,
    user: &str,
    expected: Result<(&str, &str), (&str, &str)>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = Env::from_pairs(pairs.iter().copied());
    let got = rt.block_on(async {
        let options = AwsOptions::from_env(&env)?;
        let source = AwsSource::load(&options, &env, host, port, user).await?;
        let token = source.fetch().await?;
        Ok::<_, Error>((source, token))
    });
    match (got, expected) {
        (Ok((source, token)), Ok((prefix, region))) => {
            let text = token.secret().expose();
            assert!(text.starts_with(prefix), "{pairs:?}: {text}");
            let q = query(text);
            assert_eq!(q["Action"], "connect");
            assert_eq!(q["DBUser"], user);
            assert!(q["X-Amz-Credential"].starts_with("AKIDSNAPSHOT/"), "{q:?}");
            assert!(q["X-Amz-Credential"].contains(&format!("/{region}/rds-db/aws4_request")));
            assert_eq!(source.region(), region);
            assert_eq!(source.info().get_credential_kind(), Some("environment"));
            let printed = format!("{source:?} {token:?}");
            assert!(!printed.contains("snapshot-secret"), "{printed}");
        }
        (Err(e), Err((setting, fragment))) => {
            let Error::Config(c) = &e else {
                panic!("{pairs:?}: expected a config error, got {e}")
            };
            assert_eq!(c.setting(), setting, "{pairs:?}: {c}");
            assert!(c.message().contains(fragment), "{pairs:?}: {c}");
        }
        (Ok((_, token)), Err(_)) => panic!("{pairs:?}: expected an error, got {token:?}"),
        (Err(e), Ok(_)) => panic!("{pairs:?}: {e}"),
    }
}

#[test]
fn loading_from_a_settings_snapshot() {
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDSNAPSHOT"),
        ("AWS_SECRET_ACCESS_KEY", "snapshot-secret"),
    ];
    let rds = "db.cxyz.eu-west-1.rds.amazonaws.com";
    check_load(
        &keys,
        rds,
        5432,
        "app",
        Ok((
            &format!("{rds}:5432/?Action=connect&DBUser=app&"),
            "eu-west-1",
        )),
    );
    // Region: AWS_REGION beats the host name.
    let with_region: Vec<_> = keys
        .iter()
        .copied()
        .chain([("AWS_REGION", "us-west-2")])
        .collect();
    check_load(&with_region, rds, 5432, "app", Ok((rds, "us-west-2")));
    // A tunnel: the token names the RDS endpoint (PGHOST, verified by TLS) and the signing
    // port overrides the local port of the tunnel (dialled through PGHOSTADDR).
    let tunnel: Vec<_> = keys
        .iter()
        .copied()
        .chain([("PGAUTH_AWS_SIGNING_PORT", "5432")])
        .collect();
    check_load(
        &tunnel,
        "prod.cabc.ap-south-1.rds.amazonaws.com",
        6432,
        "app",
        Ok((
            "prod.cabc.ap-south-1.rds.amazonaws.com:5432/?",
            "ap-south-1",
        )),
    );
    // Signing for another name than the one TLS verifies is refused.
    let other_name: Vec<_> = keys
        .iter()
        .copied()
        .chain([(
            "PGAUTH_AWS_SIGNING_HOST",
            "prod.cabc.ap-south-1.rds.amazonaws.com",
        )])
        .collect();
    check_load(
        &other_name,
        "127.0.0.1",
        6432,
        "app",
        Err(("PGAUTH_AWS_SIGNING_HOST", "PGHOSTADDR")),
    );
    // A session token is signed in.
    let session: Vec<_> = keys
        .iter()
        .copied()
        .chain([("AWS_SESSION_TOKEN", "sess")])
        .collect();
    check_load(&session, rds, 5432, "app", Ok((rds, "eu-west-1")));
    // Errors come before any credentials are looked for.
    check_load(
        &keys,
        "localhost",
        5432,
        "app",
        Err(("AWS_REGION", "set AWS_REGION")),
    );
    check_load(
        &keys,
        rds,
        5432,
        "app user",
        Err(("PGUSER", "cannot carry")),
    );
    check_load(
        &[("AWS_ACCESS_KEY_ID", "AKIDSNAPSHOT")],
        rds,
        5432,
        "app",
        Err(("AWS_SECRET_ACCESS_KEY", "set both or neither")),
    );
}

// ---------------------------------------------------------------------------------------------
// The default chain, in a child process.

const CHILD: &str = "PGAUTH_TEST_AWS_CHAIN_CHILD";
/// How many fetches the child makes before the one it reports.
const EARLIER_FETCHES: &str = "PGAUTH_TEST_AWS_CHAIN_EARLIER_FETCHES";

/// A one-response-per-request HTTP server on 127.0.0.1 answering by path.
struct Server {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(routes: Vec<(&'static str, u16, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&paths);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let path = first.split(' ').nth(1).unwrap_or_default().to_string();
                seen.lock().unwrap().push(path.clone());
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map_or((404, String::new()), |(_, s, b)| (*s, b.clone()));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { addr, paths }
    }
}

fn rfc3339(secs: u64) -> String {
    cloud_pg_auth::clock::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// In the child: load from the process environment, fetch, print what happened.
fn child_main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = Env::from_process();
    let line = rt.block_on(async {
        let options = AwsOptions::from_env(&env).unwrap();
        let source = AwsSource::load(
            &options,
            &env,
            "db.cxyz.us-west-2.rds.amazonaws.com",
            5432,
            "app",
        )
        .await
        .unwrap();
        assert_eq!(source.info().get_credential_kind(), Some("default-chain"));
        // Earlier fetches of the same source, when the parent asks for them.
        let earlier: usize = std::env::var(EARLIER_FETCHES).map_or(0, |n| n.parse().unwrap());
        for _ in 0..earlier {
            source.fetch().await.unwrap();
        }
        match source.fetch().await {
            Ok(token) => {
                let q = query(token.secret().expose());
                let expires = token
                    .expires_at()
                    .unwrap()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                format!(
                    "OK credential={} security_token={} expires={expires}",
                    q["X-Amz-Credential"],
                    q.get("X-Amz-Security-Token").map_or("-", String::as_str)
                )
            }
            Err(e) => format!(
                "ERR kind={:?} text={}",
                e.kind(),
                e.chain_text().replace('\n', " ")
            ),
        }
    });
    // The one line the parent reads.
    #[allow(clippy::print_stdout)]
    {
        println!("CHILD-RESULT {line}");
    }
}

/// Runs the test `test` of this binary as the child, in a clean environment: no EC2 instance
/// metadata, no profile files, then `vars` (which may name files).
fn run_child(test: &str, vars: &[(&str, String)]) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env_clear()
        .env(CHILD, "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/pgauth-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/pgauth-test/credentials",
        )
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD-RESULT "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "{vars:?}: the child printed no result\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

#[test]
fn the_default_chain_reads_container_credentials() {
    if std::env::var_os(CHILD).is_some() {
        child_main();
        return;
    }
    let now = now_secs();
    let creds = |expiration: u64| {
        serde_json::json!({
            "AccessKeyId": "ASIACONTAINER",
            "SecretAccessKey": "container-secret-do-not-print",
            "Token": "container-session",
            "Expiration": rfc3339(expiration),
        })
        .to_string()
    };
    let server = Server::start(vec![
        ("/creds/long", 200, creds(now + 6 * 3600)),
        ("/creds/short", 200, creds(now + 400)),
        (
            "/creds/fail",
            500,
            r#"{"code":"InternalError"}"#.to_string(),
        ),
        ("/creds/garbage", 200, "{not json".to_string()),
    ]);
    type Check<'a> = &'a dyn Fn(&str);
    let cases: [(&str, Check<'_>); 4] = [
        ("/creds/long", &|line: &str| {
            assert!(line.starts_with("OK credential=ASIACONTAINER/"), "{line}");
            assert!(line.contains("/us-west-2/rds-db/aws4_request"), "{line}");
            assert!(line.contains("security_token=container-session"), "{line}");
            let expires: u64 = line.rsplit('=').next().unwrap().parse().unwrap();
            // Signing time + 900 s: the child signed after `now`, within the test's run.
            assert!((now + 900..now + 900 + 600).contains(&expires), "{line}");
        }),
        ("/creds/short", &|line: &str| {
            // The credentials expire before the 15 minutes are up: their expiry wins.
            assert!(line.ends_with(&format!("expires={}", now + 400)), "{line}");
        }),
        ("/creds/fail", &|line: &str| {
            assert!(line.starts_with("ERR kind=Transient"), "{line}");
            assert!(
                line.contains("the aws credentials provider failed"),
                "{line}"
            );
        }),
        ("/creds/garbage", &|line: &str| {
            assert!(line.starts_with("ERR kind="), "{line}");
            assert!(line.contains("aws credentials"), "{line}");
        }),
    ];
    for (path, check) in cases {
        let line = run_child(
            "the_default_chain_reads_container_credentials",
            &[(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{}{path}", server.addr),
            )],
        );
        assert!(!line.contains("container-secret-do-not-print"), "{line}");
        check(&line);
    }
    let paths = server.paths.lock().unwrap().clone();
    for (path, _) in cases {
        assert!(
            paths.iter().any(|p| p == path),
            "{path} was not asked: {paths:?}"
        );
    }
}

/// The profile docs/aws.md shows for AWS IAM Identity Center (SSO): aws-config is built
/// without its `sso` feature, so an SSO profile is read through `credential_process` and
/// `aws configure export-credentials --format process`. A script stands in for `aws`: it
/// checks its arguments, notes the call and prints what the AWS CLI prints.
#[test]
fn the_default_chain_runs_a_profiles_credential_process() {
    if std::env::var_os(CHILD).is_some() {
        child_main();
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let aws = dir.path().join("aws");
    let calls = dir.path().join("calls");
    let creds = dir.path().join("creds.json");
    std::fs::write(
        &aws,
        format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$*\" >> '{calls}'\n\
             if [ \"$*\" != 'configure export-credentials --profile sso-profile --format process' ]; then\n\
             \techo \"unexpected arguments: $*\" >&2; exit 2\n\
             fi\n\
             cat '{creds}'\n",
            calls = calls.display(),
            creds = creds.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile sso-profile]\n\
             sso_session = my-sso\n\
             sso_account_id = 111122223333\n\
             sso_role_name = DatabaseUser\n\
             \n\
             [sso-session my-sso]\n\
             sso_start_url = https://my-sso-portal.awsapps.com/start\n\
             sso_region = us-east-1\n\
             sso_registration_scopes = sso:account:access\n\
             \n\
             [profile db]\n\
             credential_process = {} configure export-credentials --profile sso-profile --format process\n",
            aws.display()
        ),
    )
    .unwrap();
    let now = now_secs();
    // `aws configure export-credentials --format process` prints this, an offset and all.
    let write_creds = |expiration: u64| {
        let json = serde_json::json!({
            "Version": 1,
            "AccessKeyId": "ASIAPROCESS",
            "SecretAccessKey": "process-secret-do-not-print",
            "SessionToken": "process-session",
            "Expiration": rfc3339(expiration).replace('Z', "+00:00"),
        });
        std::fs::write(&creds, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    };
    let vars = |profile: &str, earlier_fetches: usize| {
        [
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_PROFILE", profile.to_string()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            (EARLIER_FETCHES, earlier_fetches.to_string()),
        ]
    };
    let test = "the_default_chain_runs_a_profiles_credential_process";
    let long_expiry = now + 6 * 3600;
    type Check<'a> = &'a dyn Fn(&str);
    // (profile, the credentials' expiry, fetches before the one checked, check)
    let cases: [(&str, Option<u64>, usize, Check<'_>); 3] = [
        ("db", Some(long_expiry), 1, &|line: &str| {
            assert!(line.starts_with("OK credential=ASIAPROCESS/"), "{line}");
            assert!(line.contains("/us-west-2/rds-db/aws4_request"), "{line}");
            assert!(line.contains("security_token=process-session"), "{line}");
            // 900 s after signing, which was after `now`: not the credentials' expiry.
            let expires: u64 = line.rsplit('=').next().unwrap().parse().unwrap();
            assert!((now + 900..long_expiry).contains(&expires), "{line}");
        }),
        ("db", Some(now + 400), 0, &|line: &str| {
            // The credentials expire before the 15 minutes are up: their Expiration wins.
            assert!(line.ends_with(&format!("expires={}", now + 400)), "{line}");
        }),
        ("sso-profile", None, 0, &|line: &str| {
            // The SSO profile itself needs aws-config's `sso` feature, which is not built
            // (the docs say so and point here).
            assert!(line.starts_with("ERR kind=Config"), "{line}");
            assert!(line.contains("feature(s) enabled: sso"), "{line}");
            assert!(
                line.contains("credential_process"),
                "the error says what works: {line}"
            );
        }),
    ];
    for (profile, expiration, earlier_fetches, check) in &cases {
        if let Some(expiration) = expiration {
            write_creds(*expiration);
        }
        let line = run_child(test, &vars(profile, *earlier_fetches));
        assert!(!line.contains("process-secret-do-not-print"), "{line}");
        check(&line);
    }
    // The process ran for every fetch through the `db` profile (3: aws-config keeps no
    // credentials from it, so a renewed SSO session counts at the next fetch), with the
    // documented arguments.
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        calls,
        "configure export-credentials --profile sso-profile --format process\n".repeat(3)
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: a token from this source logs in to the testkit emulator's PostgreSQL front,
// which checks the SigV4 signature, the signed host:port, the region and the user.

#[tokio::test]
async fn tokens_log_in_through_the_emulator() {
    use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let env = Env::from_pairs([
        (
            "AWS_ACCESS_KEY_ID",
            emulator.aws_access_key_id().to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            emulator.aws_secret_access_key().to_string(),
        ),
        ("AWS_REGION", emulator.aws_region().to_string()),
    ]);
    let options = AwsOptions::from_env(&env).unwrap();
    let role = emulator.aws_role();
    let source = AwsSource::load(&options, &env, emulator.pg_host(), emulator.pg_port(), role)
        .await
        .unwrap();
    let token = source.fetch().await.unwrap();
    let client = emulator
        .connect(role, token.secret().expose())
        .await
        .unwrap_or_else(|e| panic!("login as {role} failed: {e}"));
    let row = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), role);

    // A token for another user does not open this role.
    let other = AwsSource::load(
        &options,
        &env,
        emulator.pg_host(),
        emulator.pg_port(),
        "someone",
    )
    .await
    .unwrap()
    .fetch()
    .await
    .unwrap();
    assert!(
        emulator
            .connect(role, other.secret().expose())
            .await
            .is_err()
    );
    emulator.stop().await.unwrap();
}
