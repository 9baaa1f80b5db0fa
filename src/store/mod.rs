//! State: where the records of [`crate::model`] (clients, consents, grants, refresh families)
//! are kept. The store's contract ([`traits`]: one small trait per lifecycle, joined in
//! [`Store`]), with its backends: the journaled file store ([`StateStore`], also purely in
//! memory for inline state and tests). It imports nothing above [`crate::model`] but hashing
//! and the clock.
//!
//! Every operation is atomic and fallible, and every change is durable before the call
//! returns, so a handler never answers with something the store could lose. No protocol rule
//! lives here: `oauth/` decides, the store applies.

pub mod codes;
pub mod document;
pub mod file;
pub mod replay;
pub mod state_files;
mod tickets;
pub mod traits;
pub mod unique_keys;

/// The records, defined in [`crate::model`] and re-exported here: the store is where they are
/// kept, and the paths `store::Client`, `store::Grant`, … stay valid.
pub use crate::model::{
    ApplicationType, AuthMethod, Client, CodeGrant, CodeLimitReached, CodeLimits, Consent,
    ConsentEntry, DynamicAdmission, EVICTABLE_AFTER_SECONDS, Grant, RefreshFamily, Registration,
    RevokedAccess, RotationAnswer,
};
pub use document::{Mutation, StateDocument};
pub use file::{StateError, StateStore};
pub use replay::{AssertionReplayCache, MemoryAssertionReplayCache};
/// The store traits, to call their methods on a concrete backend: `use store::prelude::*`.
pub mod prelude {
    pub use super::traits::{
        ClientStore as _, CodeStore as _, ConsentStore as _, DenyList as _, FamilyStore as _,
        StateTransfer as _, TicketStore as _,
    };
}

pub use traits::{
    ClientStore, CodeState, CodeStore, ConsentStore, DenyList, Exchange, FamilyStore, ImportError,
    Rotation, StateTransfer, Store, StoreError, StoreResult, TicketStore,
};
