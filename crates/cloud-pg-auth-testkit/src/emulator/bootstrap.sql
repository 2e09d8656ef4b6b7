-- The emulator's bootstrap, run once as the superuser of the fresh cluster. @name@ markers
-- are filled in by bootstrap.rs with quoted literals or role names (never a cleartext
-- password: the password role gets a SCRAM verifier).
CREATE ROLE rds_iam NOLOGIN;
CREATE ROLE azure_pg_admin NOLOGIN;
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE SCHEMA pgaadauth;
REVOKE ALL ON SCHEMA pgaadauth FROM PUBLIC;
CREATE TABLE pgaadauth.settings (tenant_id text NOT NULL);
INSERT INTO pgaadauth.settings VALUES (@tenant_id@);
CREATE TABLE pgaadauth.directory (
    object_id text PRIMARY KEY,
    display_name text NOT NULL,
    object_type text NOT NULL CHECK (object_type IN ('user', 'group', 'service')),
    upn text
);
CREATE TABLE pgaadauth.principals (
    roleid oid PRIMARY KEY,
    rolname name NOT NULL,
    object_id text NOT NULL,
    object_type text NOT NULL,
    tenant_id text NOT NULL,
    is_admin boolean NOT NULL,
    is_mfa boolean NOT NULL
);
INSERT INTO pgaadauth.directory VALUES @directory@;

CREATE FUNCTION public.pgaadauth_create_principal_with_oid(roleName text, objectId text, objectType text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgaadauth AS $fn$
BEGIN
    IF objectType NOT IN ('user', 'group', 'service') THEN
        RAISE EXCEPTION 'objectType must be user, group or service, not "%"', objectType
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = roleName) THEN
        RAISE EXCEPTION 'role "%" already exists', roleName USING ERRCODE = 'duplicate_object';
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN', roleName);
    IF isAdmin THEN
        EXECUTE format('GRANT azure_pg_admin TO %I', roleName);
        EXECUTE format('ALTER ROLE %I CREATEROLE CREATEDB', roleName);
    END IF;
    INSERT INTO pgaadauth.principals (roleid, rolname, object_id, object_type, tenant_id, is_admin, is_mfa)
    SELECT r.oid, r.rolname, objectId, objectType, (SELECT s.tenant_id FROM pgaadauth.settings s LIMIT 1), isAdmin, isMfa
    FROM pg_catalog.pg_roles r WHERE r.rolname = roleName;
    RETURN format('Created role for "%s"', roleName);
END
$fn$;

CREATE FUNCTION public.pgaadauth_create_principal(roleName text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgaadauth AS $fn$
DECLARE
    found_oid text;
    found_type text;
BEGIN
    SELECT d.object_id, d.object_type INTO found_oid, found_type
    FROM pgaadauth.directory d
    WHERE d.display_name = roleName OR d.upn = roleName
    LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Could not find principal "%" in the tenant.', roleName
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN public.pgaadauth_create_principal_with_oid(roleName, found_oid, found_type, isAdmin, isMfa);
END
$fn$;

CREATE FUNCTION public.pgaadauth_list_principals(isAdmin boolean)
RETURNS TABLE (rolname name, principalType text, objectId text, tenantId text, isMfa integer, isAdmin integer)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pgaadauth AS $fn$
    SELECT r.rolname, p.object_type, p.object_id, p.tenant_id, p.is_mfa::integer, p.is_admin::integer
    FROM pgaadauth.principals p JOIN pg_catalog.pg_roles r ON r.oid = p.roleid
    WHERE NOT $1 OR p.is_admin
    ORDER BY r.rolname
$fn$;

REVOKE ALL ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.pgaadauth_create_principal(text, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal(text, boolean, boolean) TO azure_pg_admin;

SELECT public.pgaadauth_create_principal(@uami@, false, false);
SELECT public.pgaadauth_create_principal(@system@, false, false);
SELECT public.pgaadauth_create_principal(@workload@, false, false);
SELECT public.pgaadauth_create_principal(@user@, true, false);

CREATE ROLE @aws_role@ LOGIN;
GRANT rds_iam TO @aws_role@;
-- Aurora DSQL: roles mapped with AWS IAM GRANT log in with dsql tokens only; `admin` is the
-- cluster's built-in role (DbConnectAdmin). dsql_iam marks them, as rds_iam does for RDS.
CREATE ROLE dsql_iam NOLOGIN;
CREATE ROLE @dsql_admin_role@ LOGIN CREATEROLE CREATEDB;
GRANT dsql_iam TO @dsql_admin_role@;
CREATE ROLE @dsql_role@ LOGIN;
GRANT dsql_iam TO @dsql_role@;
CREATE ROLE @password_role@ LOGIN PASSWORD @password_verifier@;
-- Cloud SQL and AlloyDB: IAM database users (which gcloud creates there) are members of
-- cloudsql_iam / alloydb_iam here; each emulated Google principal is a user of both.
CREATE ROLE cloudsql_iam NOLOGIN;
CREATE ROLE alloydb_iam NOLOGIN;
CREATE ROLE @gcp_vm_role@ LOGIN;
GRANT cloudsql_iam, alloydb_iam TO @gcp_vm_role@;
CREATE ROLE @gcp_key_role@ LOGIN;
GRANT cloudsql_iam, alloydb_iam TO @gcp_key_role@;
CREATE ROLE @gcp_user_role@ LOGIN;
GRANT cloudsql_iam, alloydb_iam TO @gcp_user_role@;
