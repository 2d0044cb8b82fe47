//! The bridge's loop: serves the hub's requests in batches, beats every second, and
//! when Redis goes away refuses what needs it, reconnects with backoff, and tells the
//! hub what to set right once Redis is back.

use super::presence::direct;
use super::{BEAT, Bridge, MAX_BACKOFF, MAX_BATCH, MIN_BACKOFF, NODE_TTL, open, shared};
use crate::base::now_ms;
use crate::store::{Answer, ApiAnswer, Change, Event, Request, StoreError, member_key};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::{Connection, RedisResult};
use std::mem;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Bridge {
    /// Serves requests until the hub is gone, beating every second meanwhile; then
    /// takes the node out of the cluster and stops the subscriber.
    pub(crate) fn run(mut self, requests: Receiver<Request>, events: Sender<Event>) {
        loop {
            let wait = self.next_beat.saturating_duration_since(Instant::now());
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    batch.extend(requests.try_iter().take(MAX_BATCH - 1));
                    self.serve_all(batch, &events);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= self.next_beat {
                self.tick(&events);
            }
        }
        if let Some(con) = self.con.as_mut() {
            let goodbye = self
                .scripts
                .goodbye
                .arg(&self.node)
                .arg(now_ms())
                .invoke::<i64>(con);
            if let Err(e) = goodbye {
                log::warn!(
                    "cluster: could not say goodbye ({e}); the others will time this node out"
                );
            }
        }
        self.stop.store(true, Ordering::Release);
        log::debug!("cluster: node {} left", self.node);
    }

    /// The heartbeat, or a reconnection attempt while Redis is away.
    pub(super) fn tick(&mut self, events: &Sender<Event>) {
        let Some(mut con) = self.con.take() else {
            self.reconnect(events);
            return;
        };
        // Up for the health check only while both connections are.
        let subscribed = self.subscribed.load(Ordering::Acquire);
        self.metrics
            .redis_up
            .store(u64::from(subscribed), Ordering::Relaxed);
        self.next_beat = Instant::now() + BEAT;
        match self.heartbeat(&mut con) {
            Ok(true) => self.con = Some(con),
            Ok(false) => {
                // Redis had forgotten this node: the others took it for dead, or
                // its data is gone (a FLUSHDB, say), which the epoch tells.
                log::warn!("cluster: Redis had forgotten this node; putting its members back");
                match shared(&mut con, "switchboard:epoch", crate::base::new_epoch()) {
                    Ok(epoch) => {
                        self.con = Some(con);
                        self.rejoined(epoch, events);
                    }
                    Err(e) => self.lost(&e),
                }
            }
            Err(e) => self.lost(&e),
        }
    }

    /// Beats; `false` when Redis did not know this node.
    pub(super) fn heartbeat(&self, con: &mut Connection) -> RedisResult<bool> {
        let reap = self.up_since.elapsed() >= NODE_TTL;
        let answer: Vec<String> = self
            .scripts
            .beat
            .arg(&self.node)
            .arg(NODE_TTL.as_millis() as u64)
            .arg(if reap { "1" } else { "0" })
            .invoke(con)?;
        for reaped in answer.get(1..).unwrap_or_default().chunks(2) {
            if let [node, members] = reaped {
                log::warn!(
                    "cluster: node {node} was silent for over {} s: taken for dead, its {members} \
                     members left (node_lost)",
                    NODE_TTL.as_secs()
                );
            }
        }
        Ok(answer.first().is_some_and(|known| known == "1"))
    }

    pub(super) fn lost(&mut self, e: &redis::RedisError) {
        self.con = None;
        self.metrics.redis_up.store(0, Ordering::Relaxed);
        crate::metrics::bump(&self.metrics.redis_errors);
        log::warn!("cluster: lost Redis ({e}); refusing chat messages until it is back");
        self.backoff = MIN_BACKOFF;
        self.next_beat = Instant::now() + self.backoff;
    }

    pub(super) fn reconnect(&mut self, events: &Sender<Event>) {
        let attempt = open(&self.client).and_then(|mut con| {
            let epoch = shared(&mut con, "switchboard:epoch", crate::base::new_epoch())?;
            Ok((con, epoch))
        });
        match attempt {
            Ok((con, epoch)) => {
                log::info!("cluster: Redis is back");
                self.con = Some(con);
                self.up_since = Instant::now();
                self.next_beat = Instant::now();
                let subscribed = self.subscribed.load(Ordering::Acquire);
                self.metrics
                    .redis_up
                    .store(u64::from(subscribed), Ordering::Relaxed);
                self.rejoined(epoch, events);
            }
            Err(e) => {
                log::debug!("cluster: Redis still away ({e})");
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.next_beat = Instant::now() + self.backoff;
            }
        }
    }

    /// Tells the hub what to set right now that Redis answers again: everything, if
    /// `epoch` says Redis lost its data; else what it missed.
    pub(super) fn rejoined(&mut self, epoch: String, events: &Sender<Event>) {
        if epoch == self.epoch {
            // First what was in doubt: its senders have waited for Redis.
            if let Some(mut con) = self.con.take() {
                match self.settle_in_doubt(&mut con, events) {
                    Ok(()) => self.con = Some(con),
                    Err(e) => self.lost(&e),
                }
            }
            let _ = events.send(Event::Reconnected);
            return;
        }
        self.drop_in_doubt(events);
        log::warn!(
            "cluster: Redis lost its data (epoch {} is now {epoch})",
            self.epoch
        );
        self.epoch.clone_from(&epoch);
        self.resync = None;
        let _ = events.send(Event::NewEpoch(epoch));
    }

    /// Carries out a batch in order: each run of appends in one round trip (one script
    /// call for the run, so one reply to wait for), the rest one by one.
    pub(super) fn serve_all(&mut self, batch: Vec<Request>, events: &Sender<Event>) {
        if !self.subscribed.load(Ordering::Acquire) {
            // Redis answers, but the news of a change would not come back: only
            // reads are served until the subscription is up again (the resync after
            // it puts right what was refused meanwhile).
            self.metrics.redis_up.store(0, Ordering::Relaxed);
            for request in batch {
                match request {
                    Request::Page { .. } | Request::Rooms { .. } | Request::Messages { .. } => {
                        self.serve(request, events);
                    }
                    other => self.refuse(other, events),
                }
            }
            return;
        }
        let mut appends = Vec::new();
        for request in batch {
            match request {
                Request::Append(msg) => appends.push(msg),
                other => {
                    if !appends.is_empty() {
                        self.append_all(mem::take(&mut appends), events);
                    }
                    self.serve(other, events);
                }
            }
        }
        if !appends.is_empty() {
            self.append_all(appends, events);
        }
    }

    /// Carries out one request; when Redis is away, says so to whoever waits.
    pub(super) fn serve(&mut self, request: Request, events: &Sender<Event>) {
        if let Request::Append(msg) = request {
            return self.append_all(vec![msg], events);
        }
        let Some(mut con) = self.con.take() else {
            return self.refuse(request, events);
        };
        match self.carry_out(&mut con, &request, events) {
            Ok(()) => self.con = Some(con),
            Err(e) => {
                self.lost(&e);
                self.refuse(request, events);
            }
        }
    }

    /// Tells whoever waits for `request` that it cannot be done now.
    pub(super) fn refuse(&mut self, request: Request, events: &Sender<Event>) {
        let _ = match request {
            Request::Join { member, .. } | Request::Switch { member, .. } => {
                events.send(Event::JoinFailed { member })
            }
            Request::Rename { member, .. } => events.send(Event::Failed {
                member,
                what: "names cannot be changed now, try again",
            }),
            Request::Direct { from, .. } => events.send(Event::Failed {
                member: from,
                what: "the direct message could not be sent, try again",
            }),
            // Gone here at once (nobody else would tell this node); the others hear it
            // from the next resync, which puts back only who is still connected.
            Request::Leave { member, reason } => events.send(Event::Change(Change::Leave {
                m: member_key(&self.node, member),
                reason: reason.to_owned(),
            })),
            // Best effort, like the network it stands for.
            Request::Relay { .. } => Ok(()),
            resync @ Request::Resync { .. } => {
                self.resync = Some(resync);
                Ok(())
            }
            // The node that ended it refuses the cookie all the same until it restarts.
            Request::EndSession { .. } => Ok(()),
            Request::Append(msg) => events.send(Event::Answer(Answer::Committed(vec![(
                msg.author,
                Err(StoreError::Failed),
            )]))),
            Request::Page { member, room, .. } => events.send(Event::Answer(Answer::Page {
                member,
                room,
                messages: Vec::new(),
                more: false,
                failed: true,
            })),
            Request::Rooms { reply, .. } | Request::Messages { reply, .. } => {
                let _ = reply.send(ApiAnswer::Unavailable);
                Ok(())
            }
            Request::Delete(deletion) => events.send(Event::Answer(Answer::Deletion {
                asker: deletion.asker,
                outcome: Err(crate::store::Refusal::Failed),
            })),
            Request::Moderate(moderation) => events.send(Event::Answer(Answer::Moderation {
                asker: moderation.asker,
                outcome: Err(crate::store::Refusal::Failed),
            })),
        };
    }

    /// Carries out `request` (after a resync that waited for Redis, if any).
    pub(super) fn carry_out(
        &mut self,
        con: &mut Connection,
        request: &Request,
        events: &Sender<Event>,
    ) -> RedisResult<()> {
        if let Some(resync) = self.resync.take()
            && let Err(e) = self.resync(con, &resync, events)
        {
            self.resync = Some(resync);
            return Err(e);
        }
        match request {
            Request::Join {
                member,
                seq,
                names,
                room,
                since,
            } => self.join(con, *member, *seq, names, room, since.clone(), events),
            Request::Switch { member, seq, room } => self.switch(con, *member, *seq, room, events),
            Request::Leave { member, reason } => self.leave(con, *member, reason),
            Request::Rename { member, to, key } => self.rename(con, *member, to, key, events),
            Request::Direct { to, json, .. } => direct(con, to, json),
            Request::Relay { member, room, msg } => self.relay(con, *member, room, msg),
            Request::Resync { .. } => self.resync(con, request, events),
            store => self.store(con, store, events),
        }
    }
}
