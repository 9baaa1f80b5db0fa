//! The state handed to every handler: the authorization server of [`crate::oauth`].

/// The name the command line and the tests know [`crate::oauth::Server`] by.
pub use crate::oauth::Server as AppState;
