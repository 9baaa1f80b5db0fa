//! The vocabulary every other layer speaks: the records the server keeps (clients, consents,
//! grants, codes, refresh-token families) and the value grammars shared by configuration,
//! storage and protocol (scope sets, redirect URIs).
//!
//! The bottom of the house: it imports nothing of the crate but hashing ([`crate::secrets`]),
//! so configuration validation, the store backends and the protocol rules can all use it
//! without importing each other. Serde shapes here are the state file format (SPEC §9):
//! a change to one is a change to the files on disk.

mod client;
mod consent;
mod grant;
pub mod redirect;
pub mod scope;

pub use client::{
    ApplicationType, AuthMethod, Client, DynamicAdmission, EVICTABLE_AFTER_SECONDS, Registration,
};
pub use consent::{Consent, ConsentEntry, RevokedAccess};
pub use grant::{
    CodeGrant, CodeLimitReached, CodeLimits, Grant, RefreshFamily, RotationAnswer, family_key,
};
pub use redirect::RedirectPattern;
pub use scope::Scope;
