//! The token lifecycle as a state machine (proptest): generated sequences of authorize,
//! redeem (also with a wrong verifier or by another client), replay, refresh (latest,
//! previous, older or forged token), revoke, clock steps and restarts, run against the real
//! grant code and the journaled store, and checked after every step against a model of the
//! documented rules written independently of the code (README "Security decisions"): codes
//! are single use and lost in a restart, a rotated token is good for 30 s of grace while its
//! successor is unused, reuse revokes the family, every token answered with 200 is the live
//! one on disk. The endpoint-level tests of the same rules are in `token.rs`.
//!
//! `PROPTEST_CASES=N` raises the number of generated runs.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use crate::helpers::ManualClock;
use mcp_authd::app::AppState;
use mcp_authd::config::Config;
use mcp_authd::oauth::params::Params;
use mcp_authd::oauth::token_request::TokenRequest;
use mcp_authd::oauth::{authorize, refresh, token as grants};
use mcp_authd::store::file::read_state;
use mcp_authd::store::{Client, RefreshFamily, StateStore, Store};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::json;

use crate::helpers::{
    CLOCK_START, REDIRECT, VERIFIER, block_on, challenge, client_ids, proptest_cases,
    provisioned_client,
};

const ISSUER: &str = "http://127.0.0.1:8080";
const WRONG_VERIFIER: &str = "wrong-verifier-wrong-verifier-wrong-verifier";
/// Short enough that a case crosses it.
const REFRESH_TTL: u64 = 150;
const CODE_TTL: u64 = 60;
const GRACE: u64 = refresh::GRACE_SECONDS;

/// Every operation of [`Op`], by the name [`Machine::ran`] counts it under.
const OPERATIONS: [&str; 6] = [
    "authorize",
    "redeem",
    "refresh",
    "revoke",
    "advance",
    "restart",
];

/// Every rule outcome the model tells apart, by the name [`Machine::saw`] counts it under.
const RULES: [&str; 13] = [
    "code redeemed",
    "code check failed",
    "code expired",
    "code lost in a restart",
    "code replayed",
    "spent code presented by a stranger",
    "refresh rotated",
    "refresh in grace",
    "refresh reuse revoked",
    "refresh expired",
    "refresh of a revoked family",
    "revoked",
    "restart",
];

/// Which token of a family to present.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Latest,
    Previous,
    Older,
    /// The family id with a made-up secret.
    Forged,
}

#[derive(Debug, Clone)]
enum Op {
    Authorize {
        client: u8,
    },
    /// `code` counts back from the newest code.
    Redeem {
        code: u8,
        wrong_verifier: bool,
        other_client: bool,
    },
    /// `family` indexes the live families when there are any and `live` is set.
    Refresh {
        family: u8,
        live: bool,
        pick: Pick,
    },
    Revoke {
        family: u8,
        pick: Pick,
    },
    Advance {
        seconds: u64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let pick = prop_oneof![
        6 => Just(Pick::Latest),
        3 => Just(Pick::Previous),
        1 => Just(Pick::Older),
        1 => Just(Pick::Forged),
    ];
    prop_oneof![
        6 => any::<u8>().prop_map(|client| Op::Authorize { client }),
        4 => (
            prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(code, wrong_verifier, other_client)| Op::Redeem {
                code,
                wrong_verifier,
                other_client,
            }),
        8 => (any::<u8>(), prop::bool::weighted(0.85), pick.clone())
            .prop_map(|(family, live, pick)| Op::Refresh { family, live, pick }),
        1 => (any::<u8>(), pick).prop_map(|(family, pick)| Op::Revoke { family, pick }),
        3 => prop_oneof![0u64..5, 25u64..35, 50u64..70].prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Restart),
    ]
}

/// A code the model knows of.
#[derive(Debug)]
struct CodeModel {
    code: String,
    client: usize,
    expires_at: u64,
    /// The family its redemption produced.
    redeemed: Option<usize>,
    /// Dropped by a restart (codes live in memory only).
    lost: bool,
}

/// A refresh-token family the model knows of.
#[derive(Debug)]
struct FamilyModel {
    id: String,
    client: usize,
    /// Every token issued with a 200, oldest first.
    tokens: Vec<String>,
    live: bool,
    rotated_at: Option<u64>,
    expires_at: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Rotate,
    Grace,
    Reuse,
    Expired,
}

impl FamilyModel {
    /// The documented rule (README "Security decisions"), written independently of the code.
    fn decide(&self, token: usize, now: u64) -> Decision {
        let latest = self.tokens.len() - 1;
        let expired = now >= self.expires_at;
        if token == latest {
            return if expired {
                Decision::Expired
            } else {
                Decision::Rotate
            };
        }
        let in_grace = self.rotated_at.is_some_and(|at| now <= at + GRACE);
        if token + 1 == latest && in_grace && !expired {
            Decision::Grace
        } else {
            Decision::Reuse
        }
    }

    /// The token `pick` names, as an index into `tokens` (`None`: a forged one).
    fn pick(&self, pick: Pick) -> Option<usize> {
        let latest = self.tokens.len() - 1;
        match pick {
            Pick::Latest => Some(latest),
            Pick::Previous => Some(latest.saturating_sub(1)),
            Pick::Older => Some(latest.saturating_sub(2)),
            Pick::Forged => None,
        }
    }
}

struct Machine {
    dir: tempfile::TempDir,
    app: Option<AppState>,
    /// The same store as `app.store`, typed, for its in-memory document.
    store: Option<Arc<StateStore>>,
    clock: Arc<ManualClock>,
    clients: Vec<Client>,
    codes: Vec<CodeModel>,
    families: Vec<FamilyModel>,
    successes: u64,
    /// How often each rule was exercised, by name.
    seen: BTreeMap<&'static str, u64>,
    /// How often each operation reached the grant code or the store (not skipped for want
    /// of a code or a family), by name.
    ran: BTreeMap<&'static str, u64>,
}

fn test_config() -> Config {
    let doc = json!({"serverAuth": {"oauthAs": {
        "issuerUrl": ISSUER,
        "jwtSecret": "state-machine-secret-state-machine-0123",
        "trustedSourceCidrs": ["127.0.0.1/32"],
        "redirectUriAllowlist": ["http://127.0.0.1:*"],
        "consent": "never",
        "refreshTokenTtlSeconds": REFRESH_TTL,
        "authorizationCodeTtlSeconds": CODE_TTL
    }}});
    Config::parse(&doc.to_string(), |_| None).expect("the test config is valid")
}

fn form(pairs: &[(&str, &str)]) -> Params {
    let encoded = serde_urlencoded::to_string(pairs).unwrap();
    Params::parse(encoded.as_bytes()).unwrap()
}

impl Machine {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(CLOCK_START));
        let mut machine = Self {
            dir,
            app: None,
            store: None,
            clock,
            clients: Vec::new(),
            codes: Vec::new(),
            families: Vec::new(),
            successes: 0,
            seen: BTreeMap::new(),
            ran: BTreeMap::new(),
        };
        machine.start();
        for i in 0..2 {
            let client = provisioned_client(&format!("Client {i}"), vec![REDIRECT.to_string()]);
            machine
                .app()
                .store
                .put_client(client.clone())
                .await
                .unwrap();
            machine.clients.push(client);
        }
        machine
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("auth_server.json")
    }

    fn start(&mut self) {
        let store = Arc::new(StateStore::open(&self.path()).unwrap());
        let shared: Arc<dyn Store> = store.clone();
        self.app = Some(AppState::with_clock(
            test_config(),
            shared,
            self.clock.clone(),
        ));
        self.store = Some(store);
    }

    fn app(&self) -> &AppState {
        self.app.as_ref().unwrap()
    }

    fn now(&self) -> u64 {
        self.app().now()
    }

    /// The state on disk must hold `token` as the live token of `family`.
    fn assert_persisted(&self, family: &str, token: &str) {
        let (doc, _) = read_state(&self.path()).unwrap();
        let stored = doc
            .refresh_tokens
            .get(&refresh::family_key(family))
            .unwrap_or_else(|| panic!("family {family} answered 200 but is not on disk"));
        assert_eq!(
            stored.current_hash,
            refresh::hash(token),
            "a refresh token returned with 200 is not the live one on disk"
        );
    }

    fn saw(&mut self, what: &'static str) {
        *self.seen.entry(what).or_default() += 1;
    }

    fn ran(&mut self, op: &'static str) {
        *self.ran.entry(op).or_default() += 1;
    }

    async fn step(&mut self, op: &Op) {
        match *op {
            Op::Authorize { client } => {
                let client = usize::from(client) % self.clients.len();
                let params = form(&[
                    ("response_type", "code"),
                    ("client_id", &self.clients[client].client_id),
                    ("redirect_uri", REDIRECT),
                    ("code_challenge", &challenge(VERIFIER)),
                    ("code_challenge_method", "S256"),
                    ("state", "s"),
                ]);
                let (_, pending) =
                    authorize::validate(self.app(), self.app().config.primary_issuer(), &params)
                        .await
                        .unwrap_or_else(|e| panic!("authorize: {e:?}"));
                let url = authorize::issue_code(self.app(), &pending, "alice", vec![]).await;
                let code = crate::helpers::query_of(&url)["code"].clone();
                self.codes.push(CodeModel {
                    code,
                    client,
                    expires_at: self.now() + CODE_TTL,
                    redeemed: None,
                    lost: false,
                });
                self.ran("authorize");
            }
            Op::Redeem {
                code,
                wrong_verifier,
                other_client,
            } => {
                if self.codes.is_empty() {
                    return;
                }
                self.ran("redeem");
                let index = self.codes.len() - 1 - usize::from(code) % self.codes.len();
                let c = &self.codes[index];
                let client = if other_client {
                    (c.client + 1) % self.clients.len()
                } else {
                    c.client
                };
                let verifier = if wrong_verifier {
                    WRONG_VERIFIER
                } else {
                    VERIFIER
                };
                let request = TokenRequest::AuthorizationCode {
                    code: c.code.clone(),
                    redirect_uri: REDIRECT.to_string(),
                    code_verifier: verifier.to_string(),
                    resource: None,
                };
                let result = grants::exchange(
                    self.app(),
                    self.app().config.primary_issuer(),
                    &self.clients[client],
                    request,
                )
                .await;
                let now = self.now();
                let c = &self.codes[index];
                let code_client = c.client;
                if c.lost || (c.redeemed.is_none() && now >= c.expires_at) {
                    assert_invalid_grant(result, "a lost or expired code");
                    self.saw(if c.lost {
                        "code lost in a restart"
                    } else {
                        "code expired"
                    });
                } else if let Some(family) = c.redeemed {
                    // A replay: refused; what the first redemption issued is revoked only when
                    // the code's own client replays it with its verifier (SPEC §17).
                    assert_invalid_grant(result, "a replayed code");
                    if wrong_verifier || other_client {
                        self.saw("spent code presented by a stranger");
                    } else {
                        self.families[family].live = false;
                        self.saw("code replayed");
                    }
                } else if wrong_verifier || other_client {
                    // Refused without consuming the code.
                    assert_invalid_grant(result, "a wrong verifier or client");
                    self.saw("code check failed");
                } else {
                    self.saw("code redeemed");
                    let response = result.unwrap_or_else(|e| panic!("redeem: {e:?}"));
                    let token = response.refresh_token;
                    let id = refresh::family_of(&token)
                        .expect("a well-formed token")
                        .to_string();
                    assert!(self.families.iter().all(|f| f.id != id), "family id reused");
                    self.assert_persisted(&id, &token);
                    self.successes += 1;
                    self.codes[index].redeemed = Some(self.families.len());
                    self.families.push(FamilyModel {
                        id,
                        client: code_client,
                        tokens: vec![token],
                        live: true,
                        rotated_at: None,
                        expires_at: now + REFRESH_TTL,
                    });
                }
            }
            Op::Refresh { family, live, pick } => {
                let live_ones: Vec<usize> = (0..self.families.len())
                    .filter(|i| self.families[*i].live)
                    .collect();
                let index = if live && !live_ones.is_empty() {
                    live_ones[usize::from(family) % live_ones.len()]
                } else if self.families.is_empty() {
                    return;
                } else {
                    usize::from(family) % self.families.len()
                };
                self.ran("refresh");
                let f = &self.families[index];
                let presented = match f.pick(pick) {
                    Some(i) => f.tokens[i].clone(),
                    None => format!("{}.{}", f.id, "A".repeat(43)),
                };
                let request = TokenRequest::RefreshToken {
                    refresh_token: presented.clone(),
                    scope: None,
                    resource: None,
                };
                let result = grants::exchange(
                    self.app(),
                    self.app().config.primary_issuer(),
                    &self.clients[f.client],
                    request,
                )
                .await;
                let now = self.now();
                let f = &mut self.families[index];
                let decision = match f.pick(pick) {
                    Some(i) => f.decide(i, now),
                    None => Decision::Reuse,
                };
                if !f.live {
                    assert_invalid_grant(result, "a token of a revoked family");
                    self.saw("refresh of a revoked family");
                    return;
                }
                self.saw(match decision {
                    Decision::Rotate => "refresh rotated",
                    Decision::Grace => "refresh in grace",
                    Decision::Reuse => "refresh reuse revoked",
                    Decision::Expired => "refresh expired",
                });
                let f = &mut self.families[index];
                match decision {
                    Decision::Rotate => {
                        let token = result
                            .unwrap_or_else(|e| panic!("rotate: {e:?}"))
                            .refresh_token;
                        assert!(!f.tokens.contains(&token), "a successor repeated a token");
                        assert_eq!(refresh::family_of(&token), Some(f.id.as_str()));
                        f.tokens.push(token.clone());
                        f.rotated_at = Some(now);
                        f.expires_at = now + REFRESH_TTL;
                        let id = f.id.clone();
                        self.assert_persisted(&id, &token);
                        self.successes += 1;
                    }
                    Decision::Grace => {
                        let token = result
                            .unwrap_or_else(|e| panic!("grace: {e:?}"))
                            .refresh_token;
                        assert_eq!(&token, f.tokens.last().unwrap(), "grace gave another token");
                        let id = f.id.clone();
                        self.assert_persisted(&id, &token);
                        self.successes += 1;
                    }
                    Decision::Reuse => {
                        assert_invalid_grant(result, "reuse");
                        f.live = false;
                    }
                    Decision::Expired => assert_invalid_grant(result, "an expired token"),
                }
            }
            Op::Revoke { family, pick } => {
                if self.families.is_empty() {
                    return;
                }
                self.ran("revoke");
                let index = usize::from(family) % self.families.len();
                let f = &self.families[index];
                let presented = match f.pick(pick) {
                    Some(i) => f.tokens[i].clone(),
                    None => format!("{}.{}", f.id, "A".repeat(43)),
                };
                let request = form(&[("token", &presented)]);
                grants::revoke(self.app(), &self.clients[f.client], &request)
                    .await
                    .unwrap_or_else(|e| panic!("revoke: {e:?}"));
                let now = self.now();
                let f = &mut self.families[index];
                let decision = match f.pick(pick) {
                    Some(i) => f.decide(i, now),
                    None => Decision::Reuse,
                };
                // Revocation by a token that is (or was just) valid ends the family; an old
                // or forged token changes nothing (README: revocation reveals nothing).
                if decision != Decision::Reuse && f.live {
                    f.live = false;
                    self.saw("revoked");
                }
            }
            Op::Advance { seconds } => {
                self.clock.advance(seconds);
                self.ran("advance");
            }
            Op::Restart => {
                self.restart();
                self.saw("restart");
                self.ran("restart");
            }
        }
    }

    fn restart(&mut self) {
        let (on_disk, _) = read_state(&self.path()).unwrap();
        let in_memory = self.store.as_ref().unwrap().snapshot();
        assert_eq!(
            on_disk, in_memory,
            "the disk lags what the store acknowledged"
        );
        // Dropping both handles drops the store: the writer finishes, the lock is released.
        self.app = None;
        self.store = None;
        self.start();
        let (reopened, _) = read_state(&self.path()).unwrap();
        assert_eq!(reopened, in_memory, "a restart changed the state");
        for code in &mut self.codes {
            code.lost = true;
        }
    }

    /// Where the newest family stands among the live ones (for `Op::Refresh { live: true }`).
    fn newest_live(&self) -> u8 {
        let newest = self.families.len() - 1;
        assert!(self.families[newest].live, "the newest family is live");
        let live = self.families[..newest].iter().filter(|f| f.live).count();
        u8::try_from(live).unwrap()
    }

    /// The newest family's index (for `Op::Revoke` and `Op::Refresh { live: false }`).
    fn newest(&self) -> u8 {
        u8::try_from(self.families.len() - 1).unwrap()
    }

    /// Runs `op` and checks the invariants, as for a generated step.
    async fn step_and_check(&mut self, op: Op) {
        self.step(&op).await;
        self.check().await;
    }

    /// After the generated steps, a fixed sequence that reaches every rule of [`RULES`] (and
    /// every operation) once more, whatever was generated, so that each case exercises the
    /// whole model however short it is: a code lost in a restart; a wrong verifier, then the
    /// redemption, a stranger's replay; rotation, a grace retry, reuse of an older token and a
    /// refresh of the family that revoked; the code's own replay; a revocation; a family past
    /// its lifetime; a code past its lifetime.
    async fn visit_every_rule(&mut self) {
        let (redeem, wrong, stranger) = (
            Op::Redeem {
                code: 0,
                wrong_verifier: false,
                other_client: false,
            },
            Op::Redeem {
                code: 0,
                wrong_verifier: true,
                other_client: false,
            },
            Op::Redeem {
                code: 0,
                wrong_verifier: false,
                other_client: true,
            },
        );
        let authorize = Op::Authorize { client: 0 };
        self.step_and_check(authorize.clone()).await;
        self.step_and_check(Op::Restart).await;
        self.step_and_check(redeem.clone()).await;

        self.step_and_check(authorize.clone()).await;
        self.step_and_check(wrong).await;
        self.step_and_check(redeem.clone()).await;
        self.step_and_check(stranger).await;
        let refresh = |machine: &Self, pick| Op::Refresh {
            family: machine.newest_live(),
            live: true,
            pick,
        };
        self.step_and_check(refresh(self, Pick::Latest)).await;
        self.step_and_check(refresh(self, Pick::Previous)).await;
        self.step_and_check(refresh(self, Pick::Latest)).await;
        self.step_and_check(refresh(self, Pick::Older)).await;
        let revoked = Op::Refresh {
            family: self.newest(),
            live: false,
            pick: Pick::Latest,
        };
        self.step_and_check(revoked).await;

        self.step_and_check(authorize.clone()).await;
        self.step_and_check(redeem.clone()).await;
        self.step_and_check(redeem.clone()).await;

        self.step_and_check(authorize.clone()).await;
        self.step_and_check(redeem.clone()).await;
        let revoke = Op::Revoke {
            family: self.newest(),
            pick: Pick::Latest,
        };
        self.step_and_check(revoke).await;

        self.step_and_check(authorize.clone()).await;
        self.step_and_check(redeem.clone()).await;
        self.step_and_check(Op::Advance {
            seconds: REFRESH_TTL,
        })
        .await;
        self.step_and_check(refresh(self, Pick::Latest)).await;

        self.step_and_check(authorize).await;
        self.step_and_check(Op::Advance { seconds: CODE_TTL }).await;
        self.step_and_check(redeem).await;
    }

    /// The model's state is the server's: the store (and the file on disk) holds exactly the
    /// families the model holds live, each for its own client and user, with the latest token
    /// issued as its live one and the one before as its predecessor; and exactly the clients
    /// the model registered. Unlike [`Machine::check`], which looks up the families the model
    /// knows, this also catches a family the server kept that the model revoked or never
    /// issued.
    async fn assert_model_is_server(&self) {
        let expected: BTreeMap<String, &FamilyModel> = self
            .families
            .iter()
            .filter(|f| f.live)
            .map(|f| (refresh::family_key(&f.id), f))
            .collect();
        let stored: BTreeMap<String, RefreshFamily> = self
            .app()
            .store
            .families()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            stored.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "the server's families are not the model's live ones"
        );
        for (key, family) in &stored {
            let model = expected[key];
            assert_eq!(family.grant.client_id, self.clients[model.client].client_id);
            assert_eq!(family.grant.sub, "alice");
            assert_eq!(
                family.current_hash,
                refresh::hash(model.tokens.last().unwrap())
            );
            let previous = model.tokens.len().checked_sub(2).map(|i| &model.tokens[i]);
            assert_eq!(family.previous_hash, previous.map(|t| refresh::hash(t)));
        }
        let (on_disk, _) = read_state(&self.path()).unwrap();
        assert_eq!(
            on_disk.refresh_tokens.keys().collect::<BTreeSet<_>>(),
            expected.keys().collect::<BTreeSet<_>>(),
            "the families on disk are not the model's live ones"
        );
        let registered: BTreeSet<String> =
            self.clients.iter().map(|c| c.client_id.clone()).collect();
        assert_eq!(
            client_ids(self.app().store.as_ref()).await,
            registered,
            "the server's clients are not the model's"
        );
    }

    /// The invariants that hold between any two steps.
    async fn check(&self) {
        for f in &self.families {
            let stored = self
                .app()
                .store
                .family(&refresh::family_key(&f.id))
                .await
                .unwrap();
            if !f.live {
                // Revoked families yield nothing.
                assert!(
                    stored.is_none(),
                    "family {} is revoked but still stored",
                    f.id
                );
                continue;
            }
            let Some(stored) = stored else {
                panic!("live family {} is missing", f.id);
            };
            // At most one live refresh token per family: the latest one issued.
            let live: Vec<&String> = f
                .tokens
                .iter()
                .filter(|t| refresh::hash(t) == stored.current_hash)
                .collect();
            assert_eq!(live, vec![f.tokens.last().unwrap()], "family {}", f.id);
            let unique: HashSet<&String> = f.tokens.iter().collect();
            assert_eq!(unique.len(), f.tokens.len());
            if f.tokens.len() >= 2 {
                let previous = &f.tokens[f.tokens.len() - 2];
                assert_eq!(stored.previous_hash, Some(refresh::hash(previous)));
            }
        }
        // A code yields tokens at most once.
        let mut seen = HashSet::new();
        for c in &self.codes {
            if let Some(family) = c.redeemed {
                assert!(seen.insert(family), "two codes produced one family");
            }
        }
    }
}

fn assert_invalid_grant<T: std::fmt::Debug>(
    result: Result<T, mcp_authd::oauth::OAuthError>,
    what: &str,
) {
    match result {
        Err(e) => assert_eq!(e.code.as_str(), "invalid_grant", "{what}: {e:?}"),
        Ok(v) => panic!("{what} was accepted: {v:?}"),
    }
}

#[test]
fn the_token_lifecycle_keeps_its_invariants_across_restarts() {
    let mut runner = TestRunner::new(proptest_cases(48));
    let steps = std::cell::Cell::new(0u64);
    let successes = std::cell::Cell::new(0u64);
    let seen = std::cell::RefCell::new(BTreeMap::<&'static str, u64>::new());
    let ran = std::cell::RefCell::new(BTreeMap::<&'static str, u64>::new());
    runner
        .run(&prop::collection::vec(op(), 1..50), |ops| {
            let (n, ok) = block_on(async {
                let mut machine = Machine::new().await;
                for op in &ops {
                    machine.step(op).await;
                    machine.check().await;
                }
                machine.visit_every_rule().await;
                // Whatever happened, a final restart changes nothing that was acknowledged.
                machine.restart();
                machine.check().await;
                machine.assert_model_is_server().await;
                for (what, n) in &machine.seen {
                    *seen.borrow_mut().entry(what).or_default() += n;
                }
                for (op, n) in &machine.ran {
                    *ran.borrow_mut().entry(op).or_default() += n;
                }
                (ops.len() as u64, machine.successes)
            });
            steps.set(steps.get() + n);
            successes.set(successes.get() + ok);
            Ok(())
        })
        .unwrap();
    println!(
        "state machine: {} steps, {} tokens issued and checked on disk; operations {:?}; rules {:?}",
        steps.get(),
        successes.get(),
        ran.borrow(),
        seen.borrow()
    );
    // The run exercised what it claims to: every operation and every rule, at least once per
    // case (the fixed sequence after the generated steps guarantees it).
    let cases = u64::from(runner.config().cases);
    for op in OPERATIONS {
        let n = ran.borrow().get(op).copied().unwrap_or(0);
        assert!(n >= cases, "{op} ran {n} times in {cases} cases");
    }
    for rule in RULES {
        let n = seen.borrow().get(rule).copied().unwrap_or(0);
        assert!(
            n >= cases,
            "{rule} was exercised {n} times in {cases} cases"
        );
    }
    assert_eq!(
        seen.borrow().keys().copied().collect::<BTreeSet<_>>(),
        RULES.into_iter().collect::<BTreeSet<_>>(),
        "a rule outcome the model does not list"
    );
    assert!(steps.get() >= cases && successes.get() >= cases);
}
