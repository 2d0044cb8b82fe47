//! The one budget every secret is guessed against, and the sessions that were ended.
//!
//! Every door that checks the password, the admin password or the API token
//! (`POST /login`, `Authorization: Bearer` on any endpoint, `/info`, the API) hands
//! the guess to the doors' thread, which spends from the client's budget and compares
//! **in one step** ([`SignIn::Judge`]): it handles one request at a time, so forty
//! guesses sent at once get at most the five tries the budget holds, and the rest are
//! `Locked`, whatever they carry — while a right secret costs nothing, so that a
//! script posting with the right token in parallel is never slowed by its own
//! successes. A door that takes either of several secrets (the password or the admin
//! password) has one guess compared with all of them at once, for one try, and is
//! told which it was. A door that must read a body first asks [`SignIn::May`] before
//! reading it, so a locked-out client costs no more than its request head.
//!
//! A session ended by `POST /logout` is remembered until its cookie would have
//! expired anyway, so the same cookie is refused from then on, on every node (the
//! backend keeps the list and, on a cluster, tells the other nodes).

use crate::base::{ClientKey, RateLimit, SessionId};
use crossbeam_channel::Sender;
use std::collections::HashMap;

/// Wrong guesses a client may make in a row, and then one every this many seconds:
/// enough for typing mistakes, far too few to guess a password.
pub(crate) const BURST: u32 = 5;
pub(crate) const EVERY_SECS: f64 = 12.0;

/// Budgets kept at most: past this, those that filled up again are forgotten first.
const MAX_CLIENTS: usize = 4096;

/// Sessions one client may end at once, and then one every this many seconds: every
/// ended session is remembered until it would have expired, so this bounds that list.
pub(crate) const END_BURST: u32 = 20;
pub(crate) const END_EVERY_SECS: f64 = 3.0;

/// Which secret a guess is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secret {
    /// The password (`--password-file`).
    Password,
    /// The admin password (`--admin-password-file`).
    AdminPassword,
    /// The API token (`--api-token-file`).
    ApiToken,
}

/// What became of a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The right secret, this one of those the door takes: nothing was spent.
    Right(Secret),
    /// A wrong one (or no such secret is set): one try spent.
    Wrong,
    /// The client's budget is spent: nothing was compared.
    Locked,
}

/// What a connection thread asks of the sign-in budget or the session list.
#[derive(Debug)]
pub(crate) enum SignIn {
    /// Whether `client` has a try left, taking none (before reading a body).
    May {
        client: ClientKey,
        reply: Sender<bool>,
    },
    /// Spend a try of `client`'s and compare `offered` with each secret of `accepts`
    /// (those set), in one step: one guess is one try, however many it is compared
    /// with.
    Judge {
        client: ClientKey,
        accepts: &'static [Secret],
        /// The guess; its `Debug` shows nothing of it.
        offered: crate::config::Secret,
        reply: Sender<Verdict>,
    },
    /// Whether session `id` was ended.
    Ended { id: SessionId, reply: Sender<bool> },
    /// End session `id`, whose cookie is good until `expires` (Unix seconds), for
    /// `client`: `true` once it is ended, `false` when the client ends sessions too
    /// fast (every ended session is kept until it expires, so their number is
    /// bounded per client).
    End {
        id: SessionId,
        expires: u64,
        client: ClientKey,
        reply: Sender<bool>,
    },
}

/// The secrets the doors compare guesses with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets {
    pub password: Option<crate::config::Secret>,
    pub admin_password: Option<crate::config::Secret>,
    pub api_token: Option<crate::config::Secret>,
}

/// The budgets and the ended sessions. Only the doors' thread touches it.
#[derive(Debug, Default)]
pub(crate) struct SignIns {
    secrets: Secrets,
    budgets: HashMap<ClientKey, RateLimit>,
    ended: HashMap<SessionId, u64>,
    /// How many sessions each client may still end.
    end_budgets: HashMap<ClientKey, RateLimit>,
}

impl SignIns {
    /// Compares with `secrets`, and starts with the sessions the backend remembers
    /// as ended.
    pub(crate) fn new(secrets: Secrets, ended: impl IntoIterator<Item = (SessionId, u64)>) -> Self {
        Self {
            secrets,
            budgets: HashMap::new(),
            ended: ended.into_iter().collect(),
            end_budgets: HashMap::new(),
        }
    }

    /// Handles one request; a session it ended is returned, since that is also the
    /// backend's business (it persists the ending and tells the other nodes).
    pub(crate) fn handle(&mut self, request: SignIn) -> Option<(SessionId, u64)> {
        match request {
            SignIn::May { client, reply } => {
                let _ = reply.send(self.budget(client).has_one());
            }
            SignIn::Judge {
                client,
                accepts,
                offered,
                reply,
            } => {
                let _ = reply.send(self.judge(client, accepts, &offered));
            }
            SignIn::Ended { id, reply } => {
                let _ = reply.send(self.ended.contains_key(&id));
            }
            SignIn::End {
                id,
                expires,
                client,
                reply,
            } => {
                if self.ended.contains_key(&id) {
                    let _ = reply.send(true);
                    return None;
                }
                if self.end_budgets.len() >= MAX_CLIENTS && !self.end_budgets.contains_key(&client)
                {
                    self.end_budgets.retain(|_, budget| !budget.is_full());
                }
                let allowed = self
                    .end_budgets
                    .entry(client)
                    .or_insert_with(|| RateLimit::every(END_EVERY_SECS, END_BURST))
                    .allow();
                let _ = reply.send(allowed);
                if allowed {
                    self.end(id, expires);
                    return Some((id, expires));
                }
            }
        }
        None
    }

    /// Remembers that session `id` was ended (here, or on another node).
    pub(crate) fn end(&mut self, id: SessionId, expires: u64) {
        let now = crate::base::unix_now();
        if self.ended.len() >= MAX_CLIENTS {
            self.ended.retain(|_, until| *until > now);
        }
        if expires > now {
            self.ended.insert(id, expires);
        }
    }

    fn judge(
        &mut self,
        client: ClientKey,
        accepts: &[Secret],
        offered: &crate::config::Secret,
    ) -> Verdict {
        if !self.budget(client).has_one() {
            return Verdict::Locked;
        }
        // Compared with every one, not up to the first that matches, so that the time
        // taken says nothing about which it was.
        let mut right = None;
        for &secret in accepts {
            let ours = match secret {
                Secret::Password => self.secrets.password.as_ref(),
                Secret::AdminPassword => self.secrets.admin_password.as_ref(),
                Secret::ApiToken => self.secrets.api_token.as_ref(),
            };
            if ours.is_some_and(|ours| offered.feed_matches(ours)) && right.is_none() {
                right = Some(secret);
            }
        }
        match right {
            Some(secret) => Verdict::Right(secret),
            None => {
                self.budget(client).allow();
                Verdict::Wrong
            }
        }
    }

    fn budget(&mut self, client: ClientKey) -> &mut RateLimit {
        if self.budgets.len() >= MAX_CLIENTS && !self.budgets.contains_key(&client) {
            self.budgets.retain(|_, budget| !budget.is_full());
        }
        self.budgets
            .entry(client)
            .or_insert_with(|| RateLimit::every(EVERY_SECS, BURST))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORDS: &[Secret] = &[Secret::Password, Secret::AdminPassword];

    fn guess(signins: &mut SignIns, client: ClientKey, offered: &str) -> Verdict {
        let (reply, answer) = crossbeam_channel::bounded(1);
        signins.handle(SignIn::Judge {
            client,
            accepts: PASSWORDS,
            offered: crate::config::Secret::new(offered),
            reply,
        });
        answer.try_recv().unwrap_or(Verdict::Locked)
    }

    #[test]
    fn five_wrong_tries_then_nothing_and_a_right_one_costs_nothing() {
        let secrets = Secrets {
            password: Some(crate::config::Secret::new("pw")),
            admin_password: Some(crate::config::Secret::new("admin")),
            api_token: None,
        };
        let mut signins = SignIns::new(secrets, []);
        let alice = ClientKey::of("192.0.2.1".parse().unwrap());
        let bob = ClientKey::of("192.0.2.2".parse().unwrap());
        for _ in 0..10 {
            let right = Verdict::Right(Secret::Password);
            assert_eq!(guess(&mut signins, alice, "pw"), right);
            let admin = Verdict::Right(Secret::AdminPassword);
            assert_eq!(guess(&mut signins, alice, "admin"), admin);
        }
        let verdicts: Vec<Verdict> = (0..40).map(|_| guess(&mut signins, alice, "no")).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Wrong).count(), 5);
        assert_eq!(
            guess(&mut signins, alice, "pw"),
            Verdict::Locked,
            "even the right one"
        );
        assert_eq!(
            guess(&mut signins, bob, "pw"),
            Verdict::Right(Secret::Password),
            "another client"
        );
        let (reply, token) = crossbeam_channel::bounded(1);
        signins.handle(SignIn::Judge {
            client: bob,
            accepts: &[Secret::ApiToken],
            offered: crate::config::Secret::new("pw"),
            reply,
        });
        assert_eq!(token.try_recv(), Ok(Verdict::Wrong), "no token set: wrong");
    }

    #[test]
    fn a_guess_is_right_only_for_a_secret_its_door_takes() {
        let secrets = Secrets {
            password: Some(crate::config::Secret::new("pw")),
            admin_password: Some(crate::config::Secret::new("admin")),
            api_token: Some(crate::config::Secret::new("token")),
        };
        let mut signins = SignIns::new(secrets, []);
        let alice = ClientKey::of("192.0.2.1".parse().unwrap());
        let mut judge = |accepts: &'static [Secret], offered: &str| {
            let (reply, answer) = crossbeam_channel::bounded(1);
            signins.handle(SignIn::Judge {
                client: alice,
                accepts,
                offered: crate::config::Secret::new(offered),
                reply,
            });
            answer.try_recv().unwrap_or(Verdict::Locked)
        };
        let token = &[Secret::ApiToken];
        assert_eq!(judge(token, "admin"), Verdict::Wrong);
        assert_eq!(judge(token, "token"), Verdict::Right(Secret::ApiToken));
        assert_eq!(judge(PASSWORDS, "token"), Verdict::Wrong);
        let moderator = &[Secret::ApiToken, Secret::AdminPassword];
        let admin = Verdict::Right(Secret::AdminPassword);
        assert_eq!(judge(moderator, "admin"), admin);
    }

    #[test]
    fn an_ended_session_is_remembered_until_it_expires() {
        let mut signins = SignIns::default();
        let now = crate::base::unix_now();
        signins.end([1; 16], now + 60);
        signins.end([2; 16], now - 1);
        let ended = |signins: &mut SignIns, id| {
            let (reply, answer) = crossbeam_channel::bounded(1);
            signins.handle(SignIn::Ended { id, reply });
            answer.try_recv().unwrap_or(false)
        };
        assert!(ended(&mut signins, [1; 16]));
        assert!(!ended(&mut signins, [2; 16]), "expired anyway: not kept");
        assert!(!ended(&mut signins, [3; 16]));
    }
}
