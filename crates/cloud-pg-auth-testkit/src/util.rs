//! Small helpers: time, random identifiers, constant-time comparison, and the one bounded
//! polling helper every test in the workspace waits with.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often [`poll_until`] checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The limit tests pass to [`poll_until`]: long enough for a loaded CI machine, short enough
/// that a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until `cond` holds, checking it every few milliseconds: the way tests wait on a
/// counter or an event instead of sleeping. `limit` is a guard against a hang, not a
/// measurement; it is counted in real time, so a paused tokio clock cannot run it out.
///
/// ```no_run
/// # async fn f(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
/// use std::sync::atomic::Ordering;
/// use std::time::Duration;
/// cloud_pg_auth_testkit::poll_until("the flag is set", Duration::from_secs(10), async || {
///     flag.load(Ordering::SeqCst)
/// })
/// .await;
/// # }
/// ```
///
/// # Panics
/// With `what` when `cond` still does not hold after `limit`.
pub async fn poll_until(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Seconds since the Unix epoch (negative times clamp to 0).
pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    }
}

pub(crate) fn now_unix() -> i64 {
    unix(SystemTime::now())
}

/// A random version-4 UUID in its usual textual form.
pub(crate) fn uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random string of ASCII letters and digits.
pub(crate) fn random_alnum(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect()
}

/// Constant-time equality of two byte strings (length is not hidden).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A civil date to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` for logs and error bodies.
pub(crate) fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Quote a value for a POSIX shell with single quotes.
pub(crate) fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 19_961, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_961), (2024, 8, 26));
        assert_eq!(rfc3339(1_724_709_600), "2024-08-26T22:00:00Z");
    }

    #[test]
    fn uuid_shape() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
