//! `pgauth sql create-role`'s command line: the cloud, the role, how it is mapped, and the
//! privileges to grant.

use cloud_pg_auth::gcp::GcpProduct;

use super::{Topic, UsageError, flag_value, split_flag, usage};

/// The cloud an administrator creates a role for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleMethod {
    /// Azure Database for PostgreSQL (`pgaadauth_create_principal*`).
    Azure,
    /// AWS RDS / Aurora (`GRANT rds_iam`).
    Aws,
    /// Amazon Aurora DSQL (`AWS IAM GRANT role TO 'arn'`).
    Dsql,
    /// Google Cloud SQL or AlloyDB: the IAM user is created with gcloud, then granted.
    Gcp,
}

/// The object type given to `pgaadauth_create_principal_with_oid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalType {
    /// A managed identity or an app registration (service principal).
    Service,
    /// A user.
    User,
    /// An Entra group.
    Group,
}

impl PrincipalType {
    /// The name the Azure function takes.
    #[must_use]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::User => "user",
            Self::Group => "group",
        }
    }
}

/// Privileges granted with the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `SELECT` on the tables of schema `public`.
    Read,
    /// `read` plus `INSERT`, `UPDATE`, `DELETE` and sequence use.
    Write,
    /// `write` plus `CREATE` in schema `public` and every privilege on its objects (the
    /// role that runs migrations).
    Owner,
}

/// `pgauth sql create-role` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateRole {
    /// `--method`.
    pub method: RoleMethod,
    /// `--name`: the role name.
    pub name: String,
    /// `--object-id`: map the role to this Entra object id (Azure only).
    pub object_id: Option<String>,
    /// `--type` (Azure only, with `--object-id`; default `service`).
    pub principal_type: Option<PrincipalType>,
    /// `--arn`: the IAM role or user mapped to the role (Aurora DSQL only).
    pub arn: Option<String>,
    /// `--gcp-product`: Cloud SQL (the default) or AlloyDB (Google only).
    pub gcp_product: Option<GcpProduct>,
    /// `--database`: where the grants apply.
    pub database: Option<String>,
    /// `--grant`.
    pub grant: Option<Grant>,
}

pub(super) fn parse_create_role(args: &[&str]) -> Result<CreateRole, UsageError> {
    let mut method = None;
    let mut name = None;
    let mut object_id = None;
    let mut principal_type = None;
    let mut arn = None;
    let mut gcp_product = None;
    let mut database = None;
    let mut grant = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        // Both `--name X` and `--name=X`.
        let (flag, inline) = split_flag(arg);
        let known = [
            "--method",
            "--name",
            "--object-id",
            "--type",
            "--arn",
            "--gcp-product",
            "--database",
            "--grant",
        ];
        if !known.contains(&flag) {
            return Err(usage(
                Topic::Sql,
                format!(
                    "unexpected argument {arg:?}; create-role takes --method, --name, --object-id, --type, --arn, --gcp-product, --database and --grant"
                ),
            ));
        }
        let value = flag_value(args, &mut i, inline, Topic::Sql, flag)?;
        let slot_taken = |taken: bool| -> Result<(), UsageError> {
            if taken {
                Err(usage(Topic::Sql, format!("{flag} is given twice")))
            } else {
                Ok(())
            }
        };
        match flag {
            "--method" => {
                slot_taken(method.is_some())?;
                method = Some(match value.to_ascii_lowercase().as_str() {
                    "azure" | "entra" => RoleMethod::Azure,
                    "aws" | "iam" => RoleMethod::Aws,
                    "dsql" | "aws-dsql" => RoleMethod::Dsql,
                    "gcp" | "google" => RoleMethod::Gcp,
                    _ => {
                        return Err(usage(
                            Topic::Sql,
                            format!("--method {value:?}: use azure, aws, dsql or gcp"),
                        ));
                    }
                });
            }
            "--name" => {
                slot_taken(name.is_some())?;
                name = Some(value);
            }
            "--object-id" => {
                slot_taken(object_id.is_some())?;
                object_id = Some(value);
            }
            "--type" => {
                slot_taken(principal_type.is_some())?;
                principal_type = Some(match value.to_ascii_lowercase().as_str() {
                    "service" => PrincipalType::Service,
                    "user" => PrincipalType::User,
                    "group" => PrincipalType::Group,
                    _ => {
                        return Err(usage(
                            Topic::Sql,
                            format!("--type {value:?}: use service, user or group"),
                        ));
                    }
                });
            }
            "--arn" => {
                slot_taken(arn.is_some())?;
                arn = Some(value);
            }
            "--gcp-product" => {
                slot_taken(gcp_product.is_some())?;
                gcp_product =
                    Some(GcpProduct::parse(&value).map_err(|e| {
                        usage(Topic::Sql, format!("--gcp-product: {}", e.message()))
                    })?);
            }
            "--database" => {
                slot_taken(database.is_some())?;
                database = Some(value);
            }
            _ => {
                slot_taken(grant.is_some())?;
                grant = Some(match value.to_ascii_lowercase().as_str() {
                    "read" => Grant::Read,
                    "write" => Grant::Write,
                    "owner" => Grant::Owner,
                    _ => {
                        return Err(usage(
                            Topic::Sql,
                            format!("--grant {value:?}: use read, write or owner"),
                        ));
                    }
                });
            }
        }
        i += 1;
    }
    let method =
        method.ok_or_else(|| usage(Topic::Sql, "--method azure|aws|dsql|gcp is required"))?;
    let name = name.ok_or_else(|| usage(Topic::Sql, "--name NAME is required"))?;
    if method == RoleMethod::Aws && (object_id.is_some() || principal_type.is_some()) {
        return Err(usage(
            Topic::Sql,
            "--object-id and --type are for --method azure; an rds iam role is mapped by its name",
        ));
    }
    if method == RoleMethod::Gcp && (object_id.is_some() || principal_type.is_some()) {
        return Err(usage(
            Topic::Sql,
            "--object-id and --type are for --method azure; a google iam user is named by its principal's email",
        ));
    }
    if method != RoleMethod::Gcp && gcp_product.is_some() {
        return Err(usage(
            Topic::Sql,
            "--gcp-product is for --method gcp (cloudsql or alloydb)",
        ));
    }
    if method == RoleMethod::Dsql && (object_id.is_some() || principal_type.is_some()) {
        return Err(usage(
            Topic::Sql,
            "--object-id and --type are for --method azure; an aurora dsql role is mapped to an iam arn with --arn",
        ));
    }
    if method != RoleMethod::Dsql && arn.is_some() {
        return Err(usage(
            Topic::Sql,
            "--arn is for --method dsql (AWS IAM GRANT); rds and azure roles are mapped otherwise",
        ));
    }
    if method == RoleMethod::Dsql && arn.is_none() {
        return Err(usage(
            Topic::Sql,
            "--method dsql needs --arn arn:aws:iam::ACCOUNT:role/NAME, the iam role (or user) that logs in as the role",
        ));
    }
    if method == RoleMethod::Dsql && (grant.is_some() || database.is_some()) {
        return Err(usage(
            Topic::Sql,
            "--grant and --database are not available with --method dsql: aurora dsql runs one ddl statement per transaction and no do blocks; write the GRANT statements yourself (docs/dsql.md)",
        ));
    }
    if principal_type.is_some() && object_id.is_none() {
        return Err(usage(
            Topic::Sql,
            "--type goes with --object-id; without an object id, azure looks the name up and knows its type",
        ));
    }
    if database.is_some() && grant.is_none() {
        return Err(usage(
            Topic::Sql,
            "--database says where --grant applies; add --grant read, write or owner",
        ));
    }
    Ok(CreateRole {
        method,
        name,
        object_id,
        principal_type,
        arn,
        gcp_product,
        database,
        grant,
    })
}
