//! The PostgreSQL front at the protocol level: TLS negotiation, refusals, splicing,
//! cancel requests and passwords.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth_testkit::{Emulator, MintOptions, poll_until};
use common::{emulator, login, run_psql};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

fn packet(code: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    if !params.is_empty() {
        body.push(0);
    }
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Reads one backend message: (type, payload).
async fn message<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let t = s.read_u8().await.ok()?;
    let len = s.read_u32().await.ok()? as usize;
    let mut payload = vec![0; len - 4];
    s.read_exact(&mut payload).await.ok()?;
    Some((t, payload))
}

/// Fields of an ErrorResponse payload: (SQLSTATE, message).
fn error_fields(payload: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut msg = String::new();
    for field in payload.split(|b| *b == 0) {
        if let Some((&t, v)) = field.split_first() {
            match t {
                b'C' => code = String::from_utf8_lossy(v).into(),
                b'M' => msg = String::from_utf8_lossy(v).into(),
                _ => {}
            }
        }
    }
    (code, msg)
}

async fn tls(em: &Emulator, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = cloud_pg_auth_testkit::tls::client_config(em.ca_pem()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// SSLRequest, 'S', TLS handshake.
async fn tls_session(em: &Emulator) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(("127.0.0.1", em.pg_port()))
        .await
        .unwrap();
    tcp.write_all(&packet(SSL_REQUEST, &[])).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    tls(em, tcp).await
}

/// Sends a startup packet with `code`, answers the cleartext request with `password`, and
/// reads up to ReadyForQuery (Ok: message types seen) or an error (Err: fields).
async fn startup<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    code: u32,
    params: &[(&str, &str)],
    password: &str,
) -> Result<Vec<u8>, (String, String)> {
    startup_messages(s, code, params, password)
        .await
        .map(|m| m.into_iter().map(|(t, _)| t).collect())
}

/// Like [`startup`], returning the messages with their payloads.
async fn startup_messages<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    code: u32,
    params: &[(&str, &str)],
    password: &str,
) -> Result<Vec<(u8, Vec<u8>)>, (String, String)> {
    s.write_all(&packet(code, params)).await.unwrap();
    let (t, payload) = message(s).await.expect("an answer");
    if t == b'E' {
        return Err(error_fields(&payload));
    }
    assert_eq!(
        (t, payload.as_slice()),
        (b'R', &[0, 0, 0, 3][..]),
        "cleartext password request"
    );
    let mut p = vec![b'p'];
    p.extend_from_slice(&((password.len() + 5) as u32).to_be_bytes());
    p.extend_from_slice(password.as_bytes());
    p.push(0);
    s.write_all(&p).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let (t, payload) = message(s).await.expect("a message");
        if t == b'E' {
            return Err(error_fields(&payload));
        }
        seen.push((t, payload));
        if t == b'Z' {
            return Ok(seen);
        }
    }
}

/// Waits until the server runs the `SELECT pg_sleep(30)` a test sent, so a cancel has
/// something to cancel.
async fn sleep_is_running(admin: &tokio_postgres::Client) {
    poll_until("the pg_sleep query runs", Duration::from_secs(30), async || {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n > 0
    })
    .await;
}

#[tokio::test]
async fn plaintext_and_protocol_violations_are_refused() {
    let em = emulator().await;
    let token = em.mint_entra_token(MintOptions::default());

    // One family: raw bytes sent first, expected ErrorResponse (code, message).
    async fn check(em: &Emulator, case: &str, bytes: Vec<u8>, expected: (&str, &str)) {
        let mut tcp = TcpStream::connect(("127.0.0.1", em.pg_port()))
            .await
            .unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let (t, payload) = message(&mut tcp).await.expect(case);
        assert_eq!(t, b'E', "{case}");
        assert_eq!(
            error_fields(&payload),
            (expected.0.to_string(), expected.1.to_string()),
            "{case}"
        );
        // The server closes the connection afterwards.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "{case}: bytes after the error");
    }
    let mut ssl_then_junk = packet(SSL_REQUEST, &[]);
    ssl_then_junk.extend_from_slice(&packet(196_608, &[("user", "u")]));
    let mut gss_then_junk = packet(GSSENC_REQUEST, &[]);
    gss_then_junk.extend_from_slice(b"junk");
    let cases: Vec<(&str, Vec<u8>, (&str, &str))> = vec![
        (
            "no TLS",
            packet(196_608, &[("user", "u"), ("database", "d")]),
            (
                "28000",
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no encryption",
            ),
        ),
        (
            "no TLS, database defaults to the user",
            packet(196_608, &[("user", em.azure_role())]),
            (
                "28000",
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"pgauth-uami\", database \"pgauth-uami\", no encryption",
            ),
        ),
        (
            "no TLS, protocol 3.2",
            packet(196_610, &[("user", "u"), ("database", "d")]),
            (
                "28000",
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no encryption",
            ),
        ),
        (
            "bytes buffered after SSLRequest",
            ssl_then_junk,
            ("08P01", "received unencrypted data after SSL request"),
        ),
        (
            "bytes buffered after GSSENCRequest",
            gss_then_junk,
            (
                "08P01",
                "received unencrypted data after GSSAPI encryption request",
            ),
        ),
        (
            "protocol 2",
            packet(131_072, &[("user", "u")]),
            (
                "0A000",
                "unsupported frontend protocol 2.0: server supports 3.0 to 3.2",
            ),
        ),
        (
            "a huge startup packet",
            {
                let mut b = 20_000u32.to_be_bytes().to_vec();
                b.extend_from_slice(&196_608u32.to_be_bytes());
                b
            },
            ("08P01", "invalid length of startup packet"),
        ),
        (
            "no user",
            packet(196_608, &[("database", "d")]),
            (
                "28000",
                "no PostgreSQL user name specified in startup packet",
            ),
        ),
    ];
    for (case, bytes, expected) in cases {
        check(&em, case, bytes, expected).await;
    }
    // The valid token is useless without TLS, also through psql.
    let (ok, _, err) = run_psql(
        &em,
        &[
            ("PGSSLMODE", "disable"),
            ("PGUSER", em.azure_role()),
            ("PGPASSWORD", &token),
        ],
        "SELECT 1",
    )
    .await;
    assert!(!ok);
    assert!(err.contains("no pg_hba.conf entry for host \"127.0.0.1\", user \"pgauth-uami\", database \"postgres\", no encryption"), "{err}");
    let stats = em.stats();
    assert_eq!(stats.logins_rejected.get("no_tls"), Some(&4));
    assert_eq!(stats.logins_rejected.get("protocol"), Some(&5));
}

#[tokio::test]
async fn tls_logins_are_spliced_onto_the_real_server() {
    let em = emulator().await;
    let token = em.mint_entra_token(MintOptions::default());

    // GSSENCRequest is declined, then SSLRequest accepted, on the same connection.
    let mut tcp = TcpStream::connect(("127.0.0.1", em.pg_port()))
        .await
        .unwrap();
    tcp.write_all(&packet(GSSENC_REQUEST, &[])).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'N');
    tcp.write_all(&packet(SSL_REQUEST, &[])).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let mut s = tls(&em, tcp).await;
    let seen = startup(
        &mut s,
        196_608,
        &[
            ("user", em.azure_role()),
            ("database", "postgres"),
            ("application_name", "front-test"),
        ],
        &token,
    )
    .await
    .unwrap();
    assert_eq!(seen.first(), Some(&b'R'), "AuthenticationOk relayed");
    assert!(seen.contains(&b'S') && seen.contains(&b'K'), "{seen:?}");

    // Protocol 3.2 startup: the upstream's negotiation is relayed, then ReadyForQuery.
    let mut s = tls_session(&em).await;
    let seen = startup(
        &mut s,
        196_610,
        &[("user", em.password_role()), ("database", "postgres")],
        em.password(),
    )
    .await
    .unwrap();
    assert_eq!(seen.last(), Some(&b'Z'));

    // The client's other startup parameters reach the server.
    let mut config = em.pg_config(em.azure_role(), &token);
    config
        .application_name("spliced-app")
        .options("-c statement_timeout=12345");
    let (client, conn) = config.connect(em.tls_connector()).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('application_name'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), em.azure_role());
    assert_eq!(row.get::<_, String>(1), "spliced-app");
    assert_eq!(row.get::<_, String>(2), "12345ms");

    // Queries and transactions work through the splice.
    client
        .batch_execute(
            "CREATE TABLE spliced (n int); INSERT INTO spliced SELECT generate_series(1, 1000);",
        )
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT sum(n) FROM spliced", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500_500);

    // A cancel request reaches the real backend.
    let cancel = client.cancel_token();
    let tls = em.tls_connector();
    let sleeper = tokio::spawn(async move { client.query("SELECT pg_sleep(30)", &[]).await });
    let admin = em.postgres().admin_client().await.unwrap();
    sleep_is_running(&admin).await;
    cancel.cancel_query(tls).await.unwrap();
    let err = sleeper.await.unwrap().unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014", "{err}");
    assert_eq!(em.stats().cancel_requests, 1);

    // Plain password role: backward-compatible path, and rotation with ALTER ROLE.
    assert_eq!(
        login(&em, em.password_role(), em.password()).await.unwrap(),
        em.password_role()
    );
    let wrong = (
        "28P01".to_string(),
        format!(
            "password authentication failed for user \"{}\"",
            em.password_role()
        ),
    );
    assert_eq!(
        login(&em, em.password_role(), "wrong").await.unwrap_err(),
        wrong
    );
    assert_eq!(login(&em, em.password_role(), "").await.unwrap_err(), wrong);
    em.postgres()
        .execute_admin(&format!(
            "ALTER ROLE {} PASSWORD 'rotated'",
            em.password_role()
        ))
        .await
        .unwrap();
    assert_eq!(
        login(&em, em.password_role(), em.password())
            .await
            .unwrap_err(),
        wrong
    );
    assert_eq!(
        login(&em, em.password_role(), "rotated").await.unwrap(),
        em.password_role()
    );

    // Upstream refusals are relayed as the server sends them.
    let mut config = em.pg_config(em.azure_role(), &token);
    config.dbname("no_such_db");
    let Err(err) = config.connect(em.tls_connector()).await else {
        panic!("connected to a database that does not exist");
    };
    assert_eq!(err.as_db_error().unwrap().code().code(), "3D000");

    let stats = em.stats();
    assert_eq!(stats.logins_accepted_by_method.get("entra"), Some(&2));
    assert_eq!(stats.logins_rejected.get("upstream"), Some(&1));
}

#[tokio::test]
async fn sessions_survive_a_front_reconnect_after_postgres_restarts() {
    let em = emulator().await;
    let token = em.mint_entra_token(MintOptions::default());
    let client = em.connect(em.azure_role(), &token).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let pid_before = em.postgres().pid();
    em.restart_postgres().await.unwrap();
    assert_ne!(em.postgres().pid(), pid_before);
    // The old session was terminated by the restart...
    assert!(client.simple_query("SELECT 1").await.is_err());
    // ...and new logins work (the emulator's own admin connection reconnects too).
    assert_eq!(
        login(&em, em.azure_role(), &token).await.unwrap(),
        em.azure_role()
    );
}

#[tokio::test]
async fn direct_tls_and_plaintext_cancel_requests() {
    let em = emulator().await;
    let tcp = TcpStream::connect(("127.0.0.1", em.pg_port()))
        .await
        .unwrap();
    let mut config = (*cloud_pg_auth_testkit::tls::client_config(em.ca_pem()).unwrap()).clone();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let messages = startup_messages(
        &mut s,
        196_608,
        &[("user", em.password_role()), ("database", "postgres")],
        em.password(),
    )
    .await
    .unwrap();
    assert_eq!(messages.last().map(|m| m.0), Some(b'Z'));
    let key = messages
        .iter()
        .find(|(t, _)| *t == b'K')
        .map(|(_, p)| p.clone())
        .expect("BackendKeyData relayed");

    // A long query on the spliced session...
    let sql = b"SELECT pg_sleep(30)\0";
    let mut q = vec![b'Q'];
    q.extend_from_slice(&((sql.len() + 4) as u32).to_be_bytes());
    q.extend_from_slice(sql);
    s.write_all(&q).await.unwrap();
    let admin = em.postgres().admin_client().await.unwrap();
    sleep_is_running(&admin).await;
    // ...cancelled by a plaintext CancelRequest carrying the upstream's pid and key.
    let mut cancel = 16u32.to_be_bytes().to_vec();
    cancel.extend_from_slice(&80_877_102u32.to_be_bytes());
    cancel.extend_from_slice(&key);
    let mut tcp = TcpStream::connect(("127.0.0.1", em.pg_port()))
        .await
        .unwrap();
    tcp.write_all(&cancel).await.unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "no answer to a cancel request");
    let (t, payload) = loop {
        let (t, payload) = message(&mut s).await.unwrap();
        if t != b'T' {
            break (t, payload);
        }
    };
    assert_eq!(t, b'E');
    assert_eq!(
        error_fields(&payload),
        (
            "57014".to_string(),
            "canceling statement due to user request".to_string()
        )
    );
    assert_eq!(em.stats().cancel_requests, 1);
}
