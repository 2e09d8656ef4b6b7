//! Where a token may go: `hostaddr` keeps `verify-full` on a name while dialling an address,
//! `verify-ca` for a token only against a named root file, a root file replaces the public
//! roots, Unix sockets log in without TLS. Against the emulator's token-checking front.

use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::{Env, Error, Settings};
use cloud_pg_auth_testkit::tls::TestCa;
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

/// A name the emulator's certificate holds (and RDS tokens may be signed for), reached at
/// 127.0.0.1 through `hostaddr`.
const RDS_NAME: &str = "mydb.cabc123.us-east-1.rds.amazonaws.com";
/// A name the certificate does not hold.
const OTHER_NAME: &str = "other.cabc123.us-east-1.rds.amazonaws.com";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions {
        extra_server_names: vec![RDS_NAME.into()],
        extra_aws_signing_hosts: vec![RDS_NAME.into(), OTHER_NAME.into()],
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The AWS settings of the emulator with `host` dialled at 127.0.0.1, plus `extra`.
fn aws_settings(emulator: &Emulator, host: &str, extra: &[(&str, &str)]) -> Settings {
    let mut pairs: Vec<(String, String)> = emulator
        .env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("AWS_") || k == "PGPORT" || k == "PGDATABASE")
        .collect();
    pairs.extend(
        [
            ("PGAUTH_METHOD", "aws"),
            ("PGHOST", host),
            ("PGHOSTADDR", "127.0.0.1"),
            ("PGUSER", emulator.aws_role()),
            ("PGSSLROOTCERT", emulator.ca_path().to_str().unwrap()),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::from_env_vars(&Env::from_pairs(pairs)).unwrap()
}

async fn current_user(settings: &Settings) -> Result<String, Error> {
    let connector = {
        let mut config = CredentialConfig::new(settings.clone());
        config.disable_background_refresh();
        config
    }
    .build_connector()
    .await?;
    let (client, _io) = connector.connect().await?;
    let row = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    Ok(row.get(0))
}

#[tokio::test]
async fn hostaddr_dials_the_address_and_verifies_and_signs_the_name() {
    let emulator = emulator().await;
    let settings = aws_settings(&emulator, RDS_NAME, &[]);
    assert_eq!(
        current_user(&settings).await.unwrap(),
        emulator.aws_role(),
        "verify-full against {RDS_NAME} while dialling 127.0.0.1"
    );

    // A name the certificate does not hold is refused, and the hint points at hostaddr,
    // never at a mode that would skip the name check.
    let error = current_user(&aws_settings(&emulator, OTHER_NAME, &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("does not name this host"), "{error}");
    assert!(error.contains("PGHOSTADDR"), "{error}");
    assert!(!error.contains("verify-ca"), "{error}");
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn verify_ca_with_a_named_root_file_checks_the_chain() {
    let emulator = emulator().await;
    // The chain is the emulator's, the name is not in its certificate: verify-ca passes
    // because the roots are a file the user named.
    let settings = aws_settings(&emulator, OTHER_NAME, &[("PGSSLMODE", "verify-ca")]);
    assert_eq!(current_user(&settings).await.unwrap(), emulator.aws_role());
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn a_root_file_replaces_the_default_roots() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let unrelated = dir.path().join("unrelated-ca.pem");
    std::fs::write(&unrelated, TestCa::generate().cert_pem()).unwrap();
    let settings = aws_settings(
        &emulator,
        RDS_NAME,
        &[("PGSSLROOTCERT", unrelated.to_str().unwrap())],
    );
    let error = current_user(&settings).await.unwrap_err().to_string();
    assert!(error.contains("not trusted"), "{error}");
    assert!(error.contains("PGSSLROOTCERT"), "{error}");
    emulator.stop().await.unwrap();
}

#[tokio::test]
async fn password_logins_over_a_unix_socket_need_no_tls() {
    let emulator = emulator().await;
    let server = emulator.postgres();
    let settings = Settings::default()
        .host(server.socket_dir().to_str().unwrap())
        .port(server.port())
        .user(server.superuser())
        .dbname("postgres")
        // The socket's pg_hba line is `trust`; the password is never asked for.
        .password("unused");
    assert_eq!(current_user(&settings).await.unwrap(), server.superuser());
    emulator.stop().await.unwrap();
}
