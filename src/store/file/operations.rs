//! The store traits for [`StateStore`]: each operation decides under the document lock,
//! journals its mutations and waits until they are durable.

use super::*;

#[async_trait]
impl ClientStore for StateStore {
    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        self.read(|s| s.doc.clients.get(client_id).cloned()).await
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        self.read(|s| s.doc.clients.values().cloned().collect())
            .await
    }

    async fn put_client(&self, client: Client) -> StoreResult<()> {
        self.mutate(&[Mutation::PutClient { client }]).await
    }

    async fn put_dynamic_client(
        &self,
        client: Client,
        max_dynamic: usize,
    ) -> StoreResult<DynamicAdmission> {
        self.mutate_if(|shared| {
            let mut evicted = None;
            if shared.doc.dynamic_clients_reach(max_dynamic) {
                let older_than = client
                    .client_id_issued_at
                    .saturating_sub(EVICTABLE_AFTER_SECONDS);
                match shared.doc.oldest_unused_dynamic_client(older_than) {
                    Some(victim) => evicted = Some(victim),
                    None => return (DynamicAdmission::Full, Vec::new()),
                }
            }
            // The eviction is journaled as a collection, whose replay re-checks the client is
            // unused: on the same state it removes the same client.
            let mut mutations = Vec::with_capacity(2);
            if let Some(victim) = &evicted {
                mutations.push(Mutation::CollectUnusedClients {
                    client_ids: vec![victim.clone()],
                });
            }
            mutations.push(Mutation::PutClient { client });
            (DynamicAdmission::Added { evicted }, mutations)
        })
        .await
    }

    async fn remove_unused_dynamic_clients(&self, older_than: u64) -> StoreResult<usize> {
        self.mutate_if(|shared| {
            let client_ids = shared.doc.unused_dynamic_clients(older_than);
            if client_ids.is_empty() {
                return (0, Vec::new());
            }
            (
                client_ids.len(),
                vec![Mutation::CollectUnusedClients { client_ids }],
            )
        })
        .await
    }

    async fn remove_client(&self, client_id: &str) -> StoreResult<bool> {
        self.mutate_if(|shared| {
            if !shared.doc.clients.contains_key(client_id) {
                return (false, Vec::new());
            }
            (
                true,
                vec![Mutation::RemoveClient {
                    client_id: client_id.to_string(),
                }],
            )
        })
        .await
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> StoreResult<bool> {
        self.mutate_if(|shared| {
            // Read and replaced under one lock: a client removed meanwhile is not brought back.
            let Some(mut client) = shared
                .doc
                .clients
                .get(client_id)
                .filter(|c| c.secret_hash.is_some())
                .cloned()
            else {
                return (false, Vec::new());
            };
            client.secret_hash = Some(secret_hash.to_string());
            (true, vec![Mutation::PutClient { client }])
        })
        .await
    }
}

#[async_trait]
impl ConsentStore for StateStore {
    async fn consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<Consent>> {
        self.read(|s| {
            s.doc
                .consents
                .get(client_id)
                .and_then(|users| users.get(sub))
                .cloned()
        })
        .await
    }

    async fn record_consent(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        at: u64,
    ) -> StoreResult<()> {
        self.mutate(&[Mutation::GrantConsent {
            client_id: client_id.to_string(),
            sub: sub.to_string(),
            at,
            scope: scope.to_string(),
        }])
        .await
    }

    async fn consents(&self) -> StoreResult<Vec<ConsentEntry>> {
        self.read(|shared| {
            let mut entries: Vec<ConsentEntry> = shared
                .doc
                .consents
                .iter()
                .flat_map(|(client_id, users)| {
                    users.iter().map(|(sub, consent)| ConsentEntry {
                        client_id: client_id.clone(),
                        sub: sub.clone(),
                        consent: consent.clone(),
                    })
                })
                .collect();
            entries.sort_by(|a, b| (&a.sub, &a.client_id).cmp(&(&b.sub, &b.client_id)));
            entries
        })
        .await
    }

    async fn revoke_consents(
        &self,
        sub: &str,
        client_id: Option<&str>,
    ) -> StoreResult<RevokedAccess> {
        self.mutate_if(|shared| {
            let is_named = |id: &str| client_id.is_none_or(|c| c == id);
            let revoked = RevokedAccess {
                consents: shared
                    .doc
                    .consents
                    .iter()
                    .filter(|(id, users)| is_named(id) && users.contains_key(sub))
                    .count(),
                families: shared
                    .doc
                    .refresh_tokens
                    .values()
                    .filter(|f| f.grant.sub == sub && is_named(&f.grant.client_id))
                    .count(),
            };
            if revoked == RevokedAccess::default() {
                return (revoked, Vec::new());
            }
            (
                revoked,
                vec![Mutation::RevokeConsents {
                    sub: sub.to_string(),
                    client_id: client_id.map(str::to_string),
                }],
            )
        })
        .await
    }
}

#[async_trait]
impl CodeStore for StateStore {
    async fn insert_code(
        &self,
        code_hash: &str,
        code: CodeGrant,
        limits: CodeLimits,
        now: u64,
    ) -> StoreResult<Result<(), CodeLimitReached>> {
        // In memory only: a failed writer does not stop authorizations (their redemption is
        // refused, as it would create a family).
        Ok(self.lock().codes.insert(code_hash, code, limits, now))
    }

    async fn code(&self, code_hash: &str, now: u64) -> StoreResult<Option<CodeState>> {
        self.read(|s| s.codes.get(code_hash, now)).await
    }

    async fn exchange_code(
        &self,
        code_hash: &str,
        now: u64,
        family_key: &str,
        family: RefreshFamily,
    ) -> StoreResult<Exchange> {
        self.mutate_if(|shared| {
            // Judged before the code is spent, so a failed write cannot burn it.
            match shared.codes.get(code_hash, now) {
                Some(CodeState::Live(_)) => {}
                Some(CodeState::Spent {
                    family_key: first, ..
                }) => {
                    let revoke = Mutation::RevokeFamily {
                        family_id: first.clone(),
                    };
                    return (Ok(Exchange::Replayed { family_key: first }), vec![revoke]);
                }
                None => return (Ok(Exchange::Invalid), Vec::new()),
            }
            if self.durable.borrow().has_failed {
                return (Err(StoreError::failed_writer()), Vec::new());
            }
            shared.codes.consume(code_hash, now, family_key);
            (
                Ok(Exchange::Exchanged),
                vec![Mutation::PutFamily {
                    family_id: family_key.to_string(),
                    family,
                }],
            )
        })
        .await?
    }

    async fn replay_code(&self, code_hash: &str, now: u64) -> StoreResult<Option<String>> {
        self.mutate_if(|shared| match shared.codes.get(code_hash, now) {
            Some(CodeState::Spent { family_key, .. }) => {
                let revoke = Mutation::RevokeFamily {
                    family_id: family_key.clone(),
                };
                (Some(family_key), vec![revoke])
            }
            _ => (None, Vec::new()),
        })
        .await
    }
}

#[async_trait]
impl FamilyStore for StateStore {
    async fn family(&self, family_key: &str) -> StoreResult<Option<RefreshFamily>> {
        self.read(|s| {
            s.doc
                .refresh_tokens
                .get(family_key)
                .map(|f| RefreshFamily::clone(f))
        })
        .await
    }

    async fn families(&self) -> StoreResult<Vec<(String, RefreshFamily)>> {
        self.read(|shared| {
            let mut families: Vec<(String, RefreshFamily)> = shared
                .doc
                .refresh_tokens
                .iter()
                .map(|(id, f)| (id.clone(), RefreshFamily::clone(f)))
                .collect();
            families.sort_by(|a, b| {
                (&a.1.grant.sub, a.1.created_at).cmp(&(&b.1.grant.sub, b.1.created_at))
            });
            families
        })
        .await
    }

    async fn family_count(&self) -> StoreResult<usize> {
        self.read(|s| s.doc.refresh_tokens.len()).await
    }

    async fn rotate_family(
        &self,
        family_key: &str,
        expected_current: &str,
        rotation: Rotation,
    ) -> StoreResult<bool> {
        self.mutate_if(|shared| {
            let is_current = shared.doc.refresh_tokens.get(family_key).is_some_and(|f| {
                constant_time_eq(f.current_hash.as_bytes(), expected_current.as_bytes())
            });
            if !is_current {
                return (false, Vec::new());
            }
            (
                true,
                vec![Mutation::Rotate {
                    family_id: family_key.to_string(),
                    current_hash: rotation.current_hash,
                    previous_hash: rotation.previous_hash,
                    rotated_at: rotation.rotated_at,
                    expires_at: rotation.expires_at,
                    answer: Some(rotation.answer),
                }],
            )
        })
        .await
    }

    async fn revoke_family(&self, family_key: &str) -> StoreResult<bool> {
        self.mutate_if(|shared| {
            if !shared.doc.refresh_tokens.contains_key(family_key) {
                return (false, Vec::new());
            }
            (
                true,
                vec![Mutation::RevokeFamily {
                    family_id: family_key.to_string(),
                }],
            )
        })
        .await
    }

    async fn revoke_user(&self, sub: &str) -> StoreResult<usize> {
        self.mutate_if(|shared| {
            let count = shared
                .doc
                .refresh_tokens
                .values()
                .filter(|f| f.grant.sub == sub)
                .count();
            if count == 0 {
                return (0, Vec::new());
            }
            (
                count,
                vec![Mutation::RevokeUser {
                    sub: sub.to_string(),
                }],
            )
        })
        .await
    }

    async fn revoke_client_families(&self, client_id: &str) -> StoreResult<usize> {
        self.mutate_if(|shared| {
            let count = shared
                .doc
                .refresh_tokens
                .values()
                .filter(|f| f.grant.client_id == client_id)
                .count();
            if count == 0 {
                return (0, Vec::new());
            }
            (
                count,
                vec![Mutation::RevokeClientFamilies {
                    client_id: client_id.to_string(),
                }],
            )
        })
        .await
    }
}

#[async_trait]
impl DenyList for StateStore {
    async fn deny_access_token(&self, jti: &str, exp: u64) -> StoreResult<()> {
        self.mutate(&[Mutation::DenyAccessToken {
            jti: jti.to_string(),
            exp,
        }])
        .await
    }

    async fn is_access_token_denied(&self, jti: &str) -> StoreResult<bool> {
        self.read(|s| s.doc.revoked_access_tokens.contains_key(jti))
            .await
    }
}

#[async_trait]
impl TicketStore for StateStore {
    async fn use_consent_ticket(&self, nonce: &str, exp: u64, now: u64) -> StoreResult<bool> {
        Ok(self.lock().tickets.use_once(nonce, exp, now))
    }
}

#[async_trait]
impl StateTransfer for StateStore {
    async fn export_state(&self) -> StoreResult<StateDocument> {
        // Changes applied in memory but not yet on disk could still be lost (a failing disk):
        // the export waits until what it holds is durable.
        self.read(|s| s.doc.clone()).await
    }

    async fn import_state(&self, state: StateDocument) -> Result<(), ImportError> {
        let refused = self
            .mutate_if(|shared| {
                let doc = &shared.doc;
                if !doc.is_empty() {
                    let refused = ImportError::NotEmpty {
                        clients: doc.clients.len(),
                        consents: doc.consent_count(),
                        families: doc.refresh_tokens.len(),
                    };
                    return (Some(refused), Vec::new());
                }
                (
                    None,
                    vec![Mutation::ImportState {
                        state: Box::new(state),
                    }],
                )
            })
            .await?;
        refused.map_or(Ok(()), Err)
    }

    async fn prune_expired(&self, now: u64) -> StoreResult<usize> {
        self.mutate_if(|shared| {
            // Codes and tickets live in memory only: dropped without a journal line.
            let in_memory = shared.codes.prune(now) + shared.tickets.prune(now);
            let expired = shared.doc.expired_count(now);
            let mutations = if expired == 0 {
                Vec::new()
            } else {
                vec![Mutation::PruneExpired { now }]
            };
            (in_memory + expired, mutations)
        })
        .await
    }

    async fn health(&self) -> Result<(), String> {
        if self.durable.borrow().has_failed {
            Err("state storage failed: a write could not be made durable, so changes are refused until a restart".into())
        } else {
            Ok(())
        }
    }
}
