//! Migrations as data: [`Migration`], the ordered [`Migrations`] list, file names that give
//! versions and names, and the [`migrations!`](crate::migrations) macro that embeds files.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use super::MigrateError;

/// One migration: a version, a name and the SQL to run.
#[derive(Clone, PartialEq, Eq)]
pub struct Migration {
    /// Applied in ascending order; unique.
    pub version: i64,
    /// A short description, recorded next to the version.
    pub name: Cow<'static, str>,
    /// One or more SQL statements, run in one transaction.
    pub sql: Cow<'static, str>,
}

impl Migration {
    /// A migration from static parts (`include_str!` contents).
    #[must_use]
    pub const fn new(version: i64, name: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            name: Cow::Borrowed(name),
            sql: Cow::Borrowed(sql),
        }
    }

    /// A migration whose version and name come from a file name such as
    /// `V1__create_notes.sql` or `1_create_notes.sql` (a path is allowed: only its last
    /// part counts).
    pub fn from_file(path: &str, sql: impl Into<Cow<'static, str>>) -> Result<Self, MigrateError> {
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let (version, name) = parse_file_name(file).map_err(|message| MigrateError::FileName {
            file: file.to_string(),
            message,
        })?;
        Ok(Self {
            version,
            name: Cow::Owned(name),
            sql: sql.into(),
        })
    }

    /// The checksum recorded for this migration: FNV-1a (64 bit, hex) of the SQL with line
    /// endings normalised, so a checkout with CRLF line endings does not count as a change.
    #[must_use]
    pub fn checksum(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.sql.replace("\r\n", "\n").bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SQL can be long; the checksum identifies it.
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("name", &self.name)
            .field("checksum", &self.checksum())
            .finish()
    }
}

/// An ordered list of migrations with unique versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrations {
    pub(super) list: Vec<Migration>,
}

impl Migrations {
    /// Sorts `migrations` by version; fails on a repeated version.
    pub fn new(migrations: impl IntoIterator<Item = Migration>) -> Result<Self, MigrateError> {
        let mut list: Vec<Migration> = migrations.into_iter().collect();
        list.sort_by_key(|m| m.version);
        for pair in list.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::DuplicateVersion {
                    version: pair[0].version,
                    first: pair[0].name.to_string(),
                    second: pair[1].name.to_string(),
                });
            }
        }
        if let Some(m) = list.iter().find(|m| m.version < 0) {
            return Err(MigrateError::FileName {
                file: m.name.to_string(),
                message: format!("version {} is negative; use 0 or more", m.version),
            });
        }
        Ok(Self { list })
    }

    /// Embedded files: `(path, contents)` pairs, versions and names taken from the file
    /// names. [`migrations!`](crate::migrations) builds the pairs with `include_str!`.
    pub fn from_files(
        files: impl IntoIterator<Item = (&'static str, &'static str)>,
    ) -> Result<Self, MigrateError> {
        let list = files
            .into_iter()
            .map(|(path, sql)| Migration::from_file(path, sql))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(list)
    }

    /// Reads every `*.sql` file in `dir` (not its subdirectories). Other files are ignored;
    /// a `.sql` file whose name has no version is an error, so a typo is not skipped silently.
    /// Reads with blocking I/O: call it at start-up.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, MigrateError> {
        let dir = dir.as_ref();
        let read_error = |source| MigrateError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut list = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !file.ends_with(".sql") || file.starts_with('.') || !path.is_file() {
                continue;
            }
            let sql = std::fs::read_to_string(&path).map_err(|source| MigrateError::Read {
                path: path.clone(),
                source,
            })?;
            list.push(Migration::from_file(file, sql)?);
        }
        Self::new(list)
    }

    /// The migrations in version order.
    #[must_use]
    pub fn as_slice(&self) -> &[Migration] {
        &self.list
    }

    /// How many migrations there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// `V1__name.sql` (Flyway) or `1_name.sql` / `1_name.up.sql` (sqlx) → `(1, "name")`.
pub(super) fn parse_file_name(file: &str) -> Result<(i64, String), String> {
    const FORMS: &str = "name migration files V<version>__<name>.sql or <version>_<name>.sql";
    let stem = file
        .strip_suffix(".sql")
        .ok_or_else(|| format!("not a .sql file; {FORMS}"))?;
    if stem.ends_with(".down") {
        return Err(
            "down migrations are not supported; remove the file or fold it into a new migration"
                .into(),
        );
    }
    let stem = stem.strip_suffix(".up").unwrap_or(stem);
    let (digits, name) = if let Some(rest) = stem.strip_prefix(['V', 'v'])
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        rest.split_once("__")
            .ok_or_else(|| format!("has no \"__\" between version and name; {FORMS}"))?
    } else {
        stem.split_once('_')
            .ok_or_else(|| format!("has no \"_\" between version and name; {FORMS}"))?
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("does not start with a version number; {FORMS}"));
    }
    let version = digits.parse::<i64>().map_err(|_| {
        format!("version {digits} is too large; versions are 64-bit signed integers")
    })?;
    if name.is_empty() {
        return Err(format!("has no name after the version; {FORMS}"));
    }
    Ok((version, name.to_string()))
}

/// Embeds migration files, taking each version and name from the file name
/// (`V1__create_notes.sql` or `1_create_notes.sql`). Paths are relative to the file that
/// uses the macro, as with `include_str!`. Evaluates to
/// `Result<Migrations, MigrateError>`.
///
/// ```text
/// let migrations = cloud_pg_auth::migrations!["../migrations/V1__create_notes.sql"]?;
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
macro_rules! migrations {
    ($($path:literal),* $(,)?) => {
        $crate::migrate::Migrations::from_files([$(($path, include_str!($path))),*])
    };
}
