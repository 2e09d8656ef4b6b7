//! `pgauth sql create-role`: the SQL for every method, safe with hostile role and database names.

use super::*;

#[tokio::test]
async fn create_role_sql_is_safe_with_hostile_names() {
    let emulator = emulator().await;
    let server = emulator.postgres();
    server
        .execute_admin("CREATE TABLE public.canary (x int)")
        .await
        .unwrap();
    let (admin, connection) = server
        .admin_config()
        .connect(cloud_pg_auth::tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let hostile = [
        "x\"; DROP TABLE public.canary; --",
        "Robert'); DROP TABLE public.canary; --",
        "back\\slash\\'",
        "$pgauth$ dollar $$",
        "ünïcødé 名前",
        "  spaces  ",
        "UPPER lower",
    ];
    for (i, name) in hostile.iter().enumerate() {
        let oid = format!("00000000-0000-4000-8000-{i:012}");
        let ran = pgauth(
            &[
                "sql",
                "create-role",
                "--method",
                "azure",
                "--name",
                name,
                "--object-id",
                &oid,
            ],
            &env(&emulator, &[]),
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{name:?}: {}", ran.err);
        server
            .execute_admin(&ran.out)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}\n{}", ran.out));
        let found: i64 = admin
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, 1, "{name:?}\n{}", ran.out);
    }
    let canary: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'canary'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(canary, 1, "a hostile name ran SQL");
    // Refused outright: names that cannot be a login.
    for (args, fragment) in [
        (
            vec!["--method", "aws", "--name", "x\"; DROP TABLE t; --"],
            "cannot carry",
        ),
        (
            vec!["--method", "azure", "--name", "a\nb"],
            "control character",
        ),
    ] {
        let mut argv = vec!["sql", "create-role"];
        argv.extend(args);
        let ran = pgauth(&argv, &env(&emulator, &[])).await;
        assert_eq!(ran.code(), Some(2));
        assert!(ran.err.contains(fragment), "{}", ran.err);
        assert_eq!(ran.out, "");
    }
}

/// The grants of `pgauth sql create-role` for hostile database names, through real
/// PostgreSQL: the guard refuses to run in another database (and names the target exactly),
/// and connected to the target they grant what they say and nothing else runs.
#[tokio::test]
async fn create_role_grants_are_safe_with_hostile_database_names() {
    let emulator = emulator().await;
    let server = emulator.postgres();
    let admin = server.admin_client().await.unwrap();
    admin
        .batch_execute("CREATE TABLE public.canary (x int)")
        .await
        .unwrap();
    let hostile = [
        "x\"; DROP TABLE public.canary; --",
        "Robert'); DROP TABLE public.canary; --",
        "back\\slash\\'",
        "$pgauth$ dollar $$",
        "a=b host=evil",
        "%s %I percent %",
    ];
    for (i, database) in hostile.iter().enumerate() {
        // PostgreSQL's own quote_ident makes the database, independently of pgauth.
        let create: String = admin
            .query_one("SELECT format('CREATE DATABASE %I', $1::text)", &[database])
            .await
            .unwrap()
            .get(0);
        admin.batch_execute(&create).await.unwrap();
        let role = format!("app {i}");
        let oid = format!("00000000-0000-4000-8000-{i:012}");
        let ran = pgauth(
            &[
                "sql",
                "create-role",
                "--method",
                "azure",
                "--name",
                &role,
                "--object-id",
                &oid,
                "--grant",
                "write",
                "--database",
                database,
            ],
            &env(&emulator, &[]),
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{database:?}: {}", ran.err);
        let at = ran
            .out
            .find("\n-- Privileges")
            .unwrap_or_else(|| panic!("{database:?}: no grants in\n{}", ran.out));
        let (create_role, grants) = ran.out.split_at(at);
        assert!(!grants.contains("\\connect"), "{database:?}\n{grants}");
        admin
            .batch_execute(create_role)
            .await
            .unwrap_or_else(|e| panic!("{database:?}: {e}\n{create_role}"));

        // In the wrong database the guard stops the script, naming the right one.
        let refused = admin.batch_execute(grants).await.unwrap_err();
        let message = refused.as_db_error().map(|e| e.message().to_string());
        assert_eq!(
            message,
            Some(format!(
                "connect to the database {database} before granting"
            )),
            "{grants}"
        );
        admin.batch_execute("ROLLBACK").await.unwrap();

        // In the right database the grants land.
        let (target, connection) = server
            .admin_config()
            .dbname(*database)
            .connect(cloud_pg_auth::tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        target
            .batch_execute("CREATE TABLE public.t (x int)")
            .await
            .unwrap();
        target
            .batch_execute(grants)
            .await
            .unwrap_or_else(|e| panic!("{database:?}: {e}\n{grants}"));
        let granted: bool = target
            .query_one(
                "SELECT has_table_privilege($1::text, 'public.t', 'INSERT')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(granted, "{database:?}\n{grants}");
    }
    let canary: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'canary'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(canary, 1, "a hostile database name ran SQL");
}
