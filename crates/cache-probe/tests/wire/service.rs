//! Placeholder module, filled below.
