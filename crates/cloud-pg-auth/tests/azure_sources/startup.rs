//! Start-up errors: a bad CA file, and `Debug` output that hides secrets.

use cloud_pg_auth::Error;
use cloud_pg_auth::azure::AzureSource;

use crate::support::{CLIENT_SECRET, scratch_dir, secret_options};

#[test]
fn ca_file_problems_are_config_errors() {
    let dir = scratch_dir("ca");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (path, fragment) in [
        (dir.join("absent.pem"), "cannot read"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let options = secret_options("public").ca_file(path.clone());
        match AzureSource::new(&options) {
            Err(Error::Config(e)) => {
                assert_eq!(e.setting(), "PGAUTH_AZURE_CA_FILE");
                assert!(e.message().contains(fragment), "{e}");
            }
            other => panic!("{path:?}: unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_output_hides_secrets() {
    let source = AzureSource::new(&secret_options("public")).unwrap();
    let options = secret_options("public");
    let printed = format!("{source:?} {source:#?} {options:?} {options:#?}");
    assert!(!printed.contains(CLIENT_SECRET), "{printed}");
}
