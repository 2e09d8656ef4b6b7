//! What happens to the credential when an engine ends: dispose, drop, and a runtime that ends
//! under a migration engine.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cloud_pg_auth::{AccessToken, AuthMethod, SourceInfo, StaticPassword, TokenError, TokenSource};

use super::{PATIENCE, emulator, poll_until, text};
use cloud_pg_auth_testkit::Emulator;

use crate::{Adapter, EngineOptions, Method};

/// The Python "event loop is closed" bug class: a migration engine created and used in a
/// throwaway runtime that is then dropped must not break the pooled engine.
pub fn runtime_affinity<A: Adapter>() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emulator = main.block_on(emulator(Duration::from_secs(3600)));
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let role = Method::AzureManagedIdentity.expected_role(&emulator);
    let engine = main
        .block_on(A::pooled(settings.clone(), EngineOptions::default()))
        .unwrap();
    assert_eq!(main.block_on(A::current_user(&engine)).unwrap(), role);

    let migration_settings = main
        .block_on(Method::AzureManagedIdentity.settings_in_new_database(&emulator, "affinity"))
        .unwrap();
    for round in 0..2 {
        let settings = migration_settings.clone();
        std::thread::spawn(move || {
            let throwaway = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            throwaway.block_on(async {
                let migration = A::migration(settings).await.unwrap();
                A::migrate(&migration).await.unwrap();
                // Not disposed: the runtime is dropped under it, as a migration script's
                // `asyncio.run` loop would be.
                std::mem::forget(migration);
            });
            drop(throwaway);
        })
        .join()
        .unwrap_or_else(|_| panic!("migration round {round} panicked"));
    }

    main.block_on(async {
        // The pooled engine's own credential still fetches (new token) and logs in.
        A::auth(&engine).refresh_now().await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                A::current_user_on_new_connection(&engine).await.unwrap(),
                role
            );
        }
        A::dispose(&engine).await;
    });
    main.block_on(emulator.stop()).unwrap();
}

/// A source that records its drop, around a static password.
pub struct DropRecorder {
    inner: StaticPassword,
    dropped: Arc<AtomicBool>,
}

impl DropRecorder {
    /// A recorder for `password`, and its flag.
    #[must_use]
    pub fn new(password: &str) -> (Arc<Self>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        (
            Arc::new(Self {
                inner: StaticPassword::new(password),
                dropped: Arc::clone(&dropped),
            }),
            dropped,
        )
    }
}

impl Drop for DropRecorder {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl fmt::Debug for DropRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropRecorder")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl TokenSource for DropRecorder {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        self.inner.fetch().await
    }

    fn info(&self) -> SourceInfo {
        self.inner.info()
    }
}

/// A password engine whose token source records being dropped, and the number of live tasks
/// before it was built (the emulator's own tasks, started by a first login, included).
async fn engine_with_drop_recorder<A: Adapter>(
    emulator: &Emulator,
) -> (A::Pooled, Arc<AtomicBool>, usize) {
    emulator
        .connect(emulator.password_role(), emulator.password())
        .await
        .unwrap();
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let settings = Method::Password.settings(emulator);
    let (source, dropped) = DropRecorder::new(emulator.password());
    let settings = settings
        .without_password()
        .method(AuthMethod::Auto)
        .for_custom_source();
    let options = EngineOptions {
        token_source: Some(source),
        ..EngineOptions::default()
    };
    (
        A::pooled(settings, options).await.unwrap(),
        dropped,
        baseline,
    )
}

/// `dispose()` closes the pool, stops every task of ours and drops the credential.
pub async fn dispose_leaves_no_task_and_no_credential<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (engine, dropped, baseline) = engine_with_drop_recorder::<A>(&emulator).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..3 {
        A::current_user(&engine).await.unwrap();
        A::current_user_on_new_connection(&engine).await.unwrap();
    }
    assert!(A::auth(&engine).refresher_running());
    A::dispose(&engine).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the credential's last reference is gone"
    );
    assert!(!A::auth(&engine).refresher_running());
    poll_until("our tasks end", PATIENCE, async || {
        metrics.num_alive_tasks() <= baseline
    })
    .await;
    let after = A::current_user(&engine).await.unwrap_err();
    assert!(text(&after).contains("disposed"), "{}", text(&after));
    drop(engine);
    emulator.stop().await.unwrap();
}

/// Dropping an engine without `dispose()` also stops its refresher and drops the credential.
pub async fn drop_without_dispose_stops_the_refresher<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (engine, dropped, baseline) = engine_with_drop_recorder::<A>(&emulator).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    A::current_user(&engine).await.unwrap();
    assert!(A::auth(&engine).refresher_running());
    drop(engine);
    poll_until("the credential is dropped", PATIENCE, async || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    poll_until("our tasks end", PATIENCE, async || {
        metrics.num_alive_tasks() <= baseline
    })
    .await;
    emulator.stop().await.unwrap();
}
