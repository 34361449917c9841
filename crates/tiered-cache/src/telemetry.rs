//! What the engine tells about itself: its timed series for Prometheus
//! ([`metrics`]), the spans it emits ([`spans`]), and what "since the last
//! reset" means for every figure it counts ([`since_reset`]).

pub mod metrics;
pub mod since_reset;
pub mod spans;
