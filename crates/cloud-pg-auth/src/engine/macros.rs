//! Builder methods with the same names, documentation and checks in every adapter (as
//! deadpool's `managed_reexports!` keeps its sibling crates' names the same).

/// The builder methods every pooled engine's builder has, over a [`PoolConfig`] field:
/// `max_size`, `max_lifetime`, `connection_timeout`, `dispose_timeout`, `auth_options`,
/// `token_source`. Expand it inside the builder's `impl` block, naming the field.
///
/// [`PoolConfig`]: crate::engine::PoolConfig
#[macro_export]
macro_rules! pool_builder_methods {
    ($config:ident) => {
        /// The most connections the pool opens (10 by default; 0 is refused at build).
        pub fn max_size(mut self, max_size: usize) -> Self {
            self.$config.set_max_size(max_size);
            self
        }

        /// Connections older than this are closed and replaced (55 minutes by default;
        /// `None` keeps them; zero is refused at build). Hygiene only: the server checks a
        /// token at login, so open sessions outlive it.
        pub fn max_lifetime(
            mut self,
            max_lifetime: impl Into<Option<::std::time::Duration>>,
        ) -> Self {
            self.$config.set_max_lifetime(max_lifetime.into());
            self
        }

        /// How long a checkout may take: waiting for a free slot, and opening or checking a
        /// connection (30 seconds by default; zero is refused at build).
        pub fn connection_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.$config.set_connection_timeout(timeout);
            self
        }

        /// How long `dispose()` waits for checked-out connections to come back before it
        /// returns anyway (10 seconds by default); they close when returned.
        pub fn dispose_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.$config.set_dispose_timeout(timeout);
            self
        }

        /// The credential's options (background refresh, clock). The refresh policy and the
        /// fallback password come from the settings.
        pub fn auth_options(mut self, options: $crate::AuthOptions) -> Self {
            self.$config.credential_mut().set_auth_options(options);
            self
        }

        /// Takes tokens from `source` instead of the source the settings name (then
        /// `PGAUTH_METHOD` may stay unset and no password is wanted).
        pub fn token_source(mut self, source: ::std::sync::Arc<dyn $crate::TokenSource>) -> Self {
            self.$config.credential_mut().set_token_source(source);
            self
        }
    };
}

/// The builder methods every migration engine's builder has, over a
/// [`CredentialConfig`] field: `auth_options` and `token_source`.
///
/// [`CredentialConfig`]: crate::engine::CredentialConfig
#[macro_export]
macro_rules! credential_builder_methods {
    ($config:ident) => {
        /// The credential's options (clock). Background refresh stays off whatever they say:
        /// a migration engine is short-lived and may run on a runtime that ends soon. The
        /// refresh policy and the fallback password come from the settings.
        pub fn auth_options(mut self, options: $crate::AuthOptions) -> Self {
            self.$config.set_auth_options(options);
            self
        }

        /// Takes tokens from `source` instead of the source the settings name.
        pub fn token_source(mut self, source: ::std::sync::Arc<dyn $crate::TokenSource>) -> Self {
            self.$config.set_token_source(source);
            self
        }
    };
}

/// The conversions every adapter's error has from the core's errors, for an enum with the
/// variants `Auth(cloud_pg_auth::Error)` and `Disposed`: a disposed credential becomes the
/// adapter's `Disposed`, anything else `Auth` with its causes kept.
#[macro_export]
macro_rules! adapter_error_conversions {
    ($error:ty) => {
        impl ::std::convert::From<$crate::Error> for $error {
            fn from(error: $crate::Error) -> Self {
                match error {
                    $crate::Error::Disposed => Self::Disposed,
                    other => Self::Auth(other),
                }
            }
        }

        impl ::std::convert::From<$crate::ConfigError> for $error {
            fn from(error: $crate::ConfigError) -> Self {
                Self::Auth(error.into())
            }
        }
    };
}

/// The constructors every engine has, by the same names and meanings: `from_env`,
/// `from_settings` and `from_url`, each the engine's `builder(settings).build()` with the
/// defaults. Expand it inside the engine's `impl` block, naming the error type.
#[macro_export]
macro_rules! engine_constructors {
    ($error:ty) => {
        /// An engine from the process environment (`PGHOST`, `PGUSER`, `PGAUTH_METHOD`, ...;
        /// see [`Settings::from_env`]($crate::Settings::from_env)), with the defaults.
        pub async fn from_env() -> ::std::result::Result<Self, $error> {
            Self::from_settings($crate::Settings::from_env()?).await
        }

        /// An engine for `settings`, with the defaults.
        pub async fn from_settings(
            settings: $crate::Settings,
        ) -> ::std::result::Result<Self, $error> {
            Self::builder(settings).build().await
        }

        /// An engine for a `postgres://` URL (see
        /// [`Settings::from_url`]($crate::Settings::from_url); never put a token in it).
        pub async fn from_url(url: &str) -> ::std::result::Result<Self, $error> {
            Self::from_settings($crate::Settings::from_url(url)?).await
        }
    };
}
