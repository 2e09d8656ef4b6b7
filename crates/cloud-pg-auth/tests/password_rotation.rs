//! Against a real PostgreSQL server (TLS with a test CA, cleartext `password` auth over
//! `hostssl`): a callback source whose password is rotated with `ALTER ROLE ... PASSWORD`.
//! Each new connection uses the new password; open connections keep working.

use std::sync::{Arc, Mutex};

use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::{
    AccessToken, Auth, AuthMethod, AuthOptions, CallbackSource, Error, PgConnector, RootCerts,
    Settings, SslMode,
};
use cloud_pg_auth_testkit::postgres::{PostgresServer, ServerOptions, TcpTls};
use cloud_pg_auth_testkit::tls::TestCa;

struct Server {
    server: PostgresServer,
    _dir: tempfile::TempDir,
    ca_path: std::path::PathBuf,
}

async fn start() -> Server {
    start_with_names(&["localhost", "127.0.0.1"]).await
}

async fn start_with_names(names: &[&str]) -> Server {
    let ca = TestCa::generate();
    let (cert_pem, key_pem) = ca.issue(names);
    let server = PostgresServer::start(ServerOptions {
        tcp: Some(TcpTls { cert_pem, key_pem }),
        ..ServerOptions::default()
    })
    .await
    .expect("start PostgreSQL");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    server
        .execute_admin("CREATE ROLE app LOGIN PASSWORD 'pw-1'")
        .await
        .unwrap();
    Server {
        server,
        _dir: dir,
        ca_path,
    }
}

fn settings(server: &Server, ca_path: &std::path::Path) -> Settings {
    Settings::default()
        .host("127.0.0.1")
        .port(server.server.port())
        .user("app")
        .dbname("postgres")
        .method(AuthMethod::Custom)
        .ssl_mode(SslMode::VerifyFull)
        .root_certs(RootCerts::File(ca_path.to_path_buf()))
}

async fn current_user(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn rotated_password_reaches_new_connections_and_old_ones_keep_working() {
    let server = start().await;
    let password = Arc::new(Mutex::new(String::from("pw-1")));
    let fetches = Arc::new(Mutex::new(0_u32));
    let source = CallbackSource::sync("rotating", {
        let password = Arc::clone(&password);
        let fetches = Arc::clone(&fetches);
        move || {
            *fetches.lock().unwrap() += 1;
            Ok::<_, std::io::Error>(AccessToken::new(password.lock().unwrap().clone()))
        }
    });
    let auth = Auth::new(
        Arc::new(source),
        AuthOptions::default().background_refresh(false),
    );
    let connector = PgConnector::new(&settings(&server, &server.ca_path), auth.clone()).unwrap();

    let (first, _task) = connector.connect().await.unwrap();
    assert_eq!(current_user(&first).await, "app");

    // Rotate: the server and the callback move to pw-2.
    server
        .server
        .execute_admin("ALTER ROLE app PASSWORD 'pw-2'")
        .await
        .unwrap();
    *password.lock().unwrap() = "pw-2".into();

    // The cached pw-1 is refused once; the connector drops it, fetches pw-2 and retries.
    let (second, _task) = connector.connect().await.unwrap();
    assert_eq!(current_user(&second).await, "app");
    assert_eq!(connector.stats().auth_retries, 1);
    assert_eq!(*fetches.lock().unwrap(), 2);

    // A refresh ahead of time avoids the refused attempt altogether.
    server
        .server
        .execute_admin("ALTER ROLE app PASSWORD 'pw-3'")
        .await
        .unwrap();
    *password.lock().unwrap() = "pw-3".into();
    auth.refresh_now().await.unwrap();
    let (third, _task) = connector.connect().await.unwrap();
    assert_eq!(current_user(&third).await, "app");
    assert_eq!(connector.stats().auth_retries, 1);
    assert_eq!(connector.stats().connections_opened, 3);

    // Sessions opened with pw-1 and pw-2 outlive their passwords.
    assert_eq!(current_user(&first).await, "app");
    assert_eq!(current_user(&second).await, "app");

    // A password the server no longer accepts fails after one retry, with a clear message.
    *password.lock().unwrap() = "wrong".into();
    auth.refresh_now().await.unwrap();
    let error = connector.connect().await.unwrap_err();
    assert!(error.is_auth_failure(), "{error}");
    assert_eq!(error.sqlstate(), Some("28P01"));
    let text = cloud_pg_auth::engine::chain_text(&error);
    assert!(text.contains("refused the credentials twice"), "{text}");
    assert!(
        !text.contains("wrong"),
        "the password must not appear: {text}"
    );

    connector.dispose().await;
    assert!(matches!(connector.connect().await, Err(Error::Disposed)));
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_a_hint() {
    let server = start().await;
    let other_ca = TestCa::generate();
    let dir = tempfile::tempdir().unwrap();
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, other_ca.cert_pem()).unwrap();
    let settings = settings(&server, &wrong_ca)
        .password("pw-1")
        .method(AuthMethod::Password);
    let mut credential = CredentialConfig::new(settings.clone());
    credential.disable_background_refresh();
    let auth = credential.build_auth().await.unwrap();
    let connector = PgConnector::new(&settings, auth).unwrap();
    let text = cloud_pg_auth::engine::chain_text(&connector.connect().await.unwrap_err());
    assert!(text.contains("certificate is not trusted"), "{text}");
    assert!(text.contains("PGSSLROOTCERT"), "{text}");
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    // The certificate names only db.example, so dialling 127.0.0.1 passes the chain check
    // but not the name check.
    let server = start_with_names(&["db.example"]).await;
    let base = settings(&server, &server.ca_path)
        .password("pw-1")
        .method(AuthMethod::Password);
    let check = |mode: SslMode, expected: Option<&'static str>| {
        let settings = base.clone().ssl_mode(mode);
        async move {
            let connector = {
                let mut config = CredentialConfig::new(settings);
                config.disable_background_refresh();
                config
            }
            .build_connector()
            .await
            .unwrap();
            match (connector.connect().await, expected) {
                (Ok(_), None) => {}
                (Err(e), Some(hint)) => {
                    let text = cloud_pg_auth::engine::chain_text(&e);
                    assert!(text.contains(hint), "{mode:?}: {text}");
                }
                (result, _) => panic!("{mode:?}: unexpected {:?}", result.err()),
            }
        }
    };
    check(SslMode::VerifyFull, Some("does not name this host")).await;
    check(SslMode::VerifyCa, None).await;
    // A root file with `require` means verify-ca, as in libpq.
    check(SslMode::Require, None).await;
}
