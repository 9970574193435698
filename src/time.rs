//! Time as the sans-IO parts of standby see it: an instant is a count of microseconds since an
//! origin chosen by whoever drives them. The core never reads a clock; the services pass the
//! current `Time` in, read from a [`Clock`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// An instant, in microseconds since the driver's origin.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// An instant `ms` milliseconds after the origin.
    pub fn from_millis(ms: u64) -> Time {
        Time(ms * 1000)
    }

    /// Microseconds since the origin.
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the origin, rounded down.
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(d.as_micros() as u64))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1_000_000, (self.0 / 1000) % 1000)
    }
}

/// A process's clock: the runtime's monotonic clock, optionally running fast or slow by a
/// fixed rate (`drift_ppm` parts per million), to model a node whose oscillator drifts.
/// Under madsim the runtime clock is simulated, so drift is deterministic too.
#[derive(Clone, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
    drift_ppm: i64,
}

impl Clock {
    /// A clock whose origin is now, running at `1 + drift_ppm / 1e6` times real speed.
    pub fn new(drift_ppm: i64) -> Clock {
        Clock::with_origin(tokio::time::Instant::now(), drift_ppm)
    }

    /// A clock with an explicit origin (shared by every node of a simulated world).
    pub fn with_origin(origin: tokio::time::Instant, drift_ppm: i64) -> Clock {
        Clock { origin, drift_ppm }
    }

    /// The current local time.
    pub fn now(&self) -> Time {
        let real = self.origin.elapsed().as_micros() as i128;
        let local = real + real * self.drift_ppm as i128 / 1_000_000;
        Time(local.max(0) as u64)
    }
}
