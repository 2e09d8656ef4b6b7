//! Argument parsing: good and bad command lines.

use super::*;

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// Parses `line` (split on spaces) and compares with `expected`: a command and the
/// quiet flag, or a fragment of the usage error and the help page it points at.
fn check(line: &str, expected: Result<(Command, bool), (&str, Topic)>) {
    match (parse(&argv(line)), expected) {
        (Ok(got), Ok((command, quiet))) => {
            assert_eq!(got, Invocation { command, quiet }, "{line:?}");
        }
        (Err(got), Err((fragment, topic))) => {
            assert!(got.message.contains(fragment), "{line:?}: {got}");
            assert_eq!(got.topic, topic, "{line:?}");
        }
        (got, _) => panic!("{line:?}: unexpected {got:?}"),
    }
}

fn role(method: RoleMethod, name: &str) -> CreateRole {
    CreateRole {
        method,
        name: name.to_string(),
        object_id: None,
        principal_type: None,
        arn: None,
        gcp_product: None,
        database: None,
        grant: None,
    }
}

#[test]
fn command_lines() {
    check("", Ok((Command::Help(Topic::Main), false)));
    check("--help", Ok((Command::Help(Topic::Main), false)));
    check("help doctor", Ok((Command::Help(Topic::Doctor), false)));
    check("doctor --help", Ok((Command::Help(Topic::Doctor), false)));
    check("sql --help", Ok((Command::Help(Topic::Sql), false)));
    check("sql create-role -h", Ok((Command::Help(Topic::Sql), false)));
    check("-V", Ok((Command::Version, false)));
    check("token", Ok((Command::Token { json: false }, false)));
    check("-q token --json", Ok((Command::Token { json: true }, true)));
    check("token --quiet", Ok((Command::Token { json: false }, true)));
    check("env", Ok((Command::Env, false)));
    check("doctor --json", Ok((Command::Doctor { json: true }, false)));
    check("psql", Ok((Command::Psql { args: vec![] }, false)));
    check(
        "psql -- -c select -q --help",
        Ok((
            Command::Psql {
                args: argv("-c select -q --help"),
            },
            false,
        )),
    );
    check(
        "sql create-role --method azure --name my-app",
        Ok((
            Command::CreateRole(role(RoleMethod::Azure, "my-app")),
            false,
        )),
    );
    check(
        "sql create-role --method=AWS --name=app_user --database app --grant write",
        Ok((
            Command::CreateRole(CreateRole {
                database: Some("app".into()),
                grant: Some(Grant::Write),
                ..role(RoleMethod::Aws, "app_user")
            }),
            false,
        )),
    );
    check(
        "sql create-role --method azure --name g --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f --type group --grant owner",
        Ok((
            Command::CreateRole(CreateRole {
                object_id: Some("6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f".into()),
                principal_type: Some(PrincipalType::Group),
                grant: Some(Grant::Owner),
                ..role(RoleMethod::Azure, "g")
            }),
            false,
        )),
    );
}

#[test]
fn dsql_create_role_command_lines() {
    check(
        "sql create-role --method aws-dsql --name app --arn arn:aws:iam::123456789012:role/app",
        Ok((
            Command::CreateRole(CreateRole {
                arn: Some("arn:aws:iam::123456789012:role/app".into()),
                ..role(RoleMethod::Dsql, "app")
            }),
            false,
        )),
    );
    for (line, fragment) in [
        ("sql create-role --method dsql --name app", "needs --arn"),
        (
            "sql create-role --method aws --name app --arn arn:aws:iam::123456789012:role/app",
            "--arn is for --method dsql",
        ),
        (
            "sql create-role --method dsql --name app --arn a --arn b",
            "given twice",
        ),
        (
            "sql create-role --method dsql --name app --arn arn:aws:iam::123456789012:role/app --grant read",
            "one ddl statement per transaction",
        ),
        (
            "sql create-role --method dsql --name app --arn arn:aws:iam::123456789012:role/app --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f",
            "--method azure",
        ),
        (
            "sql create-role --method aurora --name app",
            "use azure, aws, dsql or gcp",
        ),
    ] {
        check(line, Err((fragment, Topic::Sql)));
    }
}

#[test]
fn bad_command_lines_say_what_to_write() {
    check("frobnicate", Err(("unknown command", Topic::Main)));
    check("help nothing", Err(("no help page", Topic::Main)));
    check(
        "token --yaml",
        Err(("unexpected argument \"--yaml\"", Topic::Token)),
    );
    check("env --json", Err(("takes no options", Topic::Env)));
    check("doctor -- x", Err(("after '--'", Topic::Doctor)));
    check("-- x", Err(("without a command", Topic::Main)));
    check(
        "psql -c select",
        Err(("pgauth psql -- -c select", Topic::Psql)),
    );
    check("sql", Err(("create-role", Topic::Sql)));
    check("sql drop-role", Err(("unknown sql subcommand", Topic::Sql)));
    check("sql create-role --name x", Err(("--method", Topic::Sql)));
    check(
        "sql create-role --method azure",
        Err(("--name", Topic::Sql)),
    );
    check(
        "sql create-role --method oracle --name x",
        Err(("use azure, aws, dsql or gcp", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name",
        Err(("needs a value", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name a --name b",
        Err(("given twice", Topic::Sql)),
    );
    check(
        "sql create-role --method aws --name a --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f",
        Err(("for --method azure", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name a --type user",
        Err(("goes with --object-id", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name a --database app",
        Err(("add --grant", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name a --grant admin",
        Err(("read, write or owner", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name a --type robot --object-id x",
        Err(("service, user or group", Topic::Sql)),
    );
    check(
        "sql create-role --method azure --name a --superuser",
        Err(("unexpected argument", Topic::Sql)),
    );
}

#[test]
fn proxy_command_lines() {
    check("proxy", Ok((Command::Proxy(ProxyArgs::default()), false)));
    check("proxy --help", Ok((Command::Help(Topic::Proxy), false)));
    check("help proxy", Ok((Command::Help(Topic::Proxy), false)));
    check(
        "proxy --listen 6000 --database a --database=b --max-connections 5 --print-env",
        Ok((
            Command::Proxy(ProxyArgs {
                listen: Some("127.0.0.1:6000".parse().unwrap()),
                databases: vec!["a".into(), "b".into()],
                max_connections: Some(5),
                print_env: true,
                ..ProxyArgs::default()
            }),
            false,
        )),
    );
    check(
        "-q proxy --listen=0.0.0.0:5431 --allow-remote --tls-cert c.pem --tls-key k.pem --connect-timeout 3 --shutdown-timeout 0",
        Ok((
            Command::Proxy(ProxyArgs {
                listen: Some("0.0.0.0:5431".parse().unwrap()),
                allow_remote: true,
                tls_cert: Some("c.pem".into()),
                tls_key: Some("k.pem".into()),
                connect_timeout: Some(3),
                shutdown_timeout: Some(0),
                ..ProxyArgs::default()
            }),
            true,
        )),
    );
    check(
        "proxy --socket /run/pgauth",
        Ok((
            Command::Proxy(ProxyArgs {
                socket: Some("/run/pgauth".into()),
                ..ProxyArgs::default()
            }),
            false,
        )),
    );
}

#[test]
fn bad_proxy_command_lines_say_what_to_write() {
    check("proxy --listen", Err(("needs a value", Topic::Proxy)));
    check(
        "proxy --listen localhost:5431",
        Err(("give IP:PORT", Topic::Proxy)),
    );
    check(
        "proxy --listen 1 --listen 2",
        Err(("given twice", Topic::Proxy)),
    );
    check(
        "proxy --max-connections 0",
        Err(("at least 1", Topic::Proxy)),
    );
    check(
        "proxy --max-connections many",
        Err(("whole number", Topic::Proxy)),
    );
    check(
        "proxy --connect-timeout 0",
        Err(("at least 1 second", Topic::Proxy)),
    );
    check("proxy --port 5", Err(("unexpected argument", Topic::Proxy)));
    check(
        "proxy --print-env=yes",
        Err(("unexpected argument", Topic::Proxy)),
    );
    check(
        "proxy --socket /tmp --allow-remote",
        Err(("local already", Topic::Proxy)),
    );
    check("proxy -- x", Err(("after '--'", Topic::Proxy)));
}

#[test]
fn every_help_page_has_examples() {
    for topic in [
        Topic::Main,
        Topic::Token,
        Topic::Psql,
        Topic::Env,
        Topic::Doctor,
        Topic::Sql,
        Topic::Proxy,
    ] {
        assert!(help(topic).contains("examples:"), "{topic:?}");
        assert!(help(topic).contains("usage: pgauth"), "{topic:?}");
    }
}

#[test]
fn gcp_create_role_command_lines() {
    check(
        "sql create-role --method gcp --name app@p.iam --gcp-product alloydb --grant read",
        Ok((
            Command::CreateRole(CreateRole {
                gcp_product: Some(cloud_pg_auth::gcp::GcpProduct::AlloyDb),
                grant: Some(Grant::Read),
                ..role(RoleMethod::Gcp, "app@p.iam")
            }),
            false,
        )),
    );
    for (line, expected) in [
        (
            "sql create-role --method gcp --name a@p.iam --gcp-product spanner",
            "use cloudsql or alloydb",
        ),
        (
            "sql create-role --method aws --name app --gcp-product cloudsql",
            "--gcp-product is for --method gcp",
        ),
        (
            "sql create-role --method gcp --name a@p.iam --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f",
            "named by its principal's email",
        ),
        (
            "sql create-role --method gcp --name a@p.iam --gcp-product cloudsql --gcp-product alloydb",
            "given twice",
        ),
    ] {
        check(line, Err((expected, Topic::Sql)));
    }
}
