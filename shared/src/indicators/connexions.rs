//! See [`crate::indicators`].
