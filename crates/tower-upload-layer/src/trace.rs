//! Tracing hooks, compiled away without the `tracing` feature.

/// `trace!(level, fields..., "message")`: a `tracing` event with the `tracing` feature,
/// nothing (not even the argument evaluation) without it.
macro_rules! trace {
    ($level:ident, $($arg:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            tracing::$level!($($arg)+);
        }
    };
}

pub(crate) use trace;
