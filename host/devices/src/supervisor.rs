//! Supervising plugins: polling, restarts with backoff, and hot swap with rollback.
//!
//! Each plugin runs in one task that owns its instance, so polls never overlap and a swap
//! happens between two polls. The devices' counters and sequence numbers live in the task's
//! [`Meter`]s, not in the plugin, so across a restart or a swap no reading is lost or signed
//! twice.

use crate::manifest::PluginManifest;
use crate::meter::{ChainClock, Meter};
use crate::runtime::{PluginCode, PluginError, PluginRuntime, RunningPlugin, Sample};
use gridledger_types::{Address, Hash32, SignedReading};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Polls a new version must pass after a swap; a failure among them rolls it back.
pub const PROBATION_POLLS: u32 = 3;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Swap records kept in the status.
const SWAP_HISTORY: usize = 32;

/// The time source readings are stamped with (wall clock; tests may drive their own).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock, ms since the Unix epoch.
pub fn wall_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// What operators see about a plugin.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PluginStatus {
    pub id: String,
    /// `running`, or `restarting` while backing off after a failure.
    pub state: String,
    pub model: String,
    pub version: String,
    pub code_hash: String,
    pub devices: Vec<String>,
    pub polls: u64,
    pub failures: u64,
    pub restarts: u64,
    /// Readings signed and handed on.
    pub readings: u64,
    /// Samples refused as nonsense.
    pub dropped_samples: u64,
    pub last_error: Option<String>,
    pub swaps: Vec<SwapRecord>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SwapRecord {
    pub at_ms: u64,
    pub from: String,
    pub to: String,
    pub version: String,
    /// `swapped`, `refused: …` or `rolled back: …`.
    pub outcome: String,
    /// From the command to the new version's first reading (or to the refusal).
    pub ms: u64,
}

/// The result of a swap that took.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    pub plugin: String,
    pub from: String,
    pub to: String,
    pub version: String,
    /// From the command to the first reading from the new version.
    pub swap_ms: u64,
    pub readings_in_first_poll: usize,
}

/// A version staged for a later switch: started and health-checked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageReport {
    pub plugin: String,
    pub staged: String,
    pub version: String,
    /// Starting and health-checking it (the old version served meanwhile).
    pub stage_ms: u64,
}

enum Command {
    Swap {
        code: PluginCode,
        reply: oneshot::Sender<Result<SwapReport, String>>,
    },
    /// Start and health-check `code`, keep it ready; the running version goes on.
    Stage {
        code: PluginCode,
        reply: oneshot::Sender<Result<StageReport, String>>,
    },
    /// Put the staged version in place now; the first reading answers.
    Switch {
        reply: oneshot::Sender<Result<SwapReport, String>>,
    },
    /// Move these devices' sequence numbers up to the chain's (see [`PluginHandle::resync`]).
    Resync {
        next_seq: HashMap<Address, u64>,
        reply: oneshot::Sender<()>,
    },
}

/// A running plugin's door: its status and its swap command.
#[derive(Clone)]
pub struct PluginHandle {
    pub id: String,
    pub devices: Vec<String>,
    /// The devices' addresses (their keys), in the order of `devices`.
    pub addresses: Vec<Address>,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<PluginStatus>,
}

impl PluginHandle {
    pub fn status(&self) -> PluginStatus {
        self.status.borrow().clone()
    }

    /// Waits until the status satisfies `done` (or the plugin's task ends).
    pub async fn wait_for(&self, done: impl FnMut(&PluginStatus) -> bool) -> PluginStatus {
        let mut rx = self.status.clone();
        match rx.wait_for(done).await {
            Ok(s) => s.clone(),
            Err(_) => self.status(),
        }
    }

    /// Swaps in `code` between two polls, after a health check; waits for the new version's
    /// first reading. On failure the old version keeps (or goes back to) running.
    pub async fn swap(&self, code: PluginCode) -> Result<SwapReport, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Swap { code, reply })
            .await
            .map_err(|_| "the plugin has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the plugin stopped during the swap".to_string())?
    }

    /// Starts and health-checks `code` beside the running version, for a later [`switch`].
    ///
    /// [`switch`]: PluginHandle::switch
    pub async fn stage(&self, code: PluginCode) -> Result<StageReport, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Stage { code, reply })
            .await
            .map_err(|_| "the plugin has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the plugin stopped while staging".to_string())?
    }

    /// Puts the staged version in place between two polls and polls at once; answers with
    /// its first reading (rolled back, like a swap, if its first polls fail).
    pub async fn switch(&self) -> Result<SwapReport, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Switch { reply })
            .await
            .map_err(|_| "the plugin has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the plugin stopped during the switch".to_string())?
    }

    /// Moves the next sequence number of the devices named in `next_seq` up to the number
    /// given, between two polls; a device already past it keeps its own. For a relay that
    /// learns the chain holds a later reading of a device than its plugin numbered (the same
    /// device relayed from elsewhere, or batches of a previous run landing after a restart).
    /// Numbers never go back: the chain takes any number after its last one, so a number the
    /// chain refused costs only that reading. Counters are kept.
    pub async fn resync(&self, next_seq: HashMap<Address, u64>) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Resync { next_seq, reply })
            .await
            .map_err(|_| "the plugin has stopped".to_string())?;
        done.await
            .map_err(|_| "the plugin stopped during the resync".to_string())
    }
}

/// Everything a plugin task needs.
pub struct PluginTask {
    pub runtime: Arc<PluginRuntime>,
    pub manifest: PluginManifest,
    pub code: PluginCode,
    pub meters: Vec<Meter>,
    pub clock: ChainClock,
    pub now: Clock,
    /// Signed readings go here, one batch per poll.
    pub out: mpsc::Sender<Vec<SignedReading>>,
}

impl PluginTask {
    /// Starts the task; it runs until `stop` turns true or the reading channel closes.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> PluginHandle {
        let (commands, rx) = mpsc::channel(4);
        let devices: Vec<String> = self.meters.iter().map(|m| m.name.clone()).collect();
        let addresses: Vec<Address> = self.meters.iter().map(|m| m.device()).collect();
        let (status, status_rx) = watch::channel(PluginStatus {
            id: self.manifest.id.clone(),
            state: "restarting".into(),
            code_hash: self.code.hash.to_hex(),
            devices: devices.clone(),
            ..Default::default()
        });
        let handle = PluginHandle {
            id: self.manifest.id.clone(),
            devices,
            addresses,
            commands,
            status: status_rx,
        };
        let sup = Supervisor {
            poll_every: Duration::from_millis(self.manifest.poll_ms.max(1)),
            task: self,
            status,
            instance: None,
            previous: None,
            probation: 0,
            pending: None,
            staged: None,
            backoff: BACKOFF_FIRST,
            next_start: Instant::now(),
            last_poll_ms: 0,
        };
        tokio::spawn(sup.run(rx, stop));
        handle
    }
}

/// How long after a period's start its first poll comes: long enough that the reading lies
/// in the new period on a block clock a little behind this one.
const AFTER_PERIOD_START: Duration = Duration::from_millis(250);

/// Time from `now_ms` to the next poll: `poll_every`, or sooner if a market period starts
/// before then, to poll just after it. The reading that closes a period's energy is then
/// taken at once rather than up to `poll_every` later, and reaches the chain well before
/// the period is settled (on the devnet, one 5 s period later), however the polls fall.
pub fn until_next_poll(clock: &ChainClock, poll_every: Duration, now_ms: u64) -> Duration {
    let next_start = match clock.period_of(now_ms) {
        Some(p) => clock
            .market_start_ms
            .saturating_add((p + 1).saturating_mul(clock.period_ms)),
        None => clock.market_start_ms,
    };
    let aligned = Duration::from_millis(next_start - now_ms) + AFTER_PERIOD_START;
    poll_every.min(aligned)
}

/// A swap waiting for the new version's first reading.
struct PendingSwap {
    reply: oneshot::Sender<Result<SwapReport, String>>,
    started: Instant,
    from: Hash32,
}

struct Supervisor {
    task: PluginTask,
    poll_every: Duration,
    status: watch::Sender<PluginStatus>,
    instance: Option<RunningPlugin>,
    /// The version before a swap, kept for rollback while the new one is on probation.
    previous: Option<PluginCode>,
    probation: u32,
    pending: Option<PendingSwap>,
    /// A version started and health-checked, waiting for `switch`.
    staged: Option<(PluginCode, RunningPlugin)>,
    backoff: Duration,
    next_start: Instant,
    last_poll_ms: u64,
}

impl Supervisor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut stop: watch::Receiver<bool>) {
        let mut next_poll = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() { break; }
                }
                Some(command) = commands.recv() => match command {
                    Command::Swap { code, reply } => self.swap(code, reply).await,
                    Command::Stage { code, reply } => {
                        let started = Instant::now();
                        let report = match self.health_check(&code).await {
                            Ok(fresh) => {
                                let r = StageReport {
                                    plugin: self.task.manifest.id.clone(),
                                    staged: code.hash.to_hex(),
                                    version: fresh.info.version.clone(),
                                    stage_ms: started.elapsed().as_millis() as u64,
                                };
                                self.staged = Some((code, fresh));
                                Ok(r)
                            }
                            Err(why) => Err(format!("refused: {why}")),
                        };
                        let _ = reply.send(report);
                    }
                    Command::Switch { reply } => match self.staged.take() {
                        Some((code, fresh)) => self.put_in_place(code, fresh, Instant::now(), reply).await,
                        None => {
                            let _ = reply.send(Err("nothing is staged: stage a version first".into()));
                        }
                    },
                    Command::Resync { next_seq, reply } => {
                        for m in &mut self.task.meters {
                            if let Some(&n) = next_seq.get(&m.device()) {
                                m.position.next_seq = m.position.next_seq.max(n);
                            }
                        }
                        let _ = reply.send(());
                    }
                },
                _ = tokio::time::sleep_until(next_poll) => {
                    if !self.tick().await { break; }
                    let wait = until_next_poll(&self.task.clock, self.poll_every, (self.task.now)());
                    next_poll = tokio::time::Instant::now() + wait;
                }
            }
        }
        tracing::info!(plugin = %self.task.manifest.id, "plugin stopped");
    }

    /// One poll (starting the plugin first if it is down). `false`: nobody takes readings.
    async fn tick(&mut self) -> bool {
        if self.instance.is_none() {
            if Instant::now() < self.next_start {
                return true;
            }
            let code = self.task.code.clone();
            match self.task.runtime.start(&code, &self.task.manifest).await {
                Ok(i) => {
                    self.note_running(&i);
                    self.instance = Some(i);
                }
                Err(e) => {
                    self.failed(e);
                    return true;
                }
            }
        }
        let now_ms = self.now_ms();
        let Some(instance) = self.instance.as_mut() else {
            return true;
        };
        let code_hash = instance.code_hash;
        match instance.poll(now_ms).await {
            Ok(samples) => {
                let (readings, nonsense) = self.take(&samples, now_ms, code_hash);
                let count = readings.len();
                self.status.send_modify(|s| {
                    s.polls += 1;
                    s.readings += count as u64;
                });
                if !readings.is_empty() && self.task.out.send(readings).await.is_err() {
                    return false;
                }
                if let Some(p) = self.pending.take() {
                    let report = SwapReport {
                        plugin: self.task.manifest.id.clone(),
                        from: p.from.to_hex(),
                        to: code_hash.to_hex(),
                        version: self.status.borrow().version.clone(),
                        swap_ms: p.started.elapsed().as_millis() as u64,
                        readings_in_first_poll: count,
                    };
                    self.record_swap(&report.from, &report.to, "swapped".into(), report.swap_ms);
                    tracing::info!(plugin = %report.plugin, to = %report.to, ms = report.swap_ms, "plugin swapped");
                    let _ = p.reply.send(Ok(report));
                }
                match nonsense {
                    Some(why) => self.failed(PluginError::Reported(why)),
                    None => {
                        self.backoff = BACKOFF_FIRST;
                        self.probation = self.probation.saturating_sub(1);
                        if self.probation == 0 {
                            self.previous = None;
                        }
                    }
                }
            }
            Err(e) => self.failed(e),
        }
        true
    }

    /// A fresh timestamp, strictly after the previous poll's.
    fn now_ms(&mut self) -> u64 {
        let t = (self.task.now)().max(self.last_poll_ms + 1);
        self.last_poll_ms = t;
        t
    }

    /// Signs the sensible samples; names the first nonsense one, if any.
    fn take(
        &mut self,
        samples: &[Sample],
        now_ms: u64,
        plugin: Hash32,
    ) -> (Vec<SignedReading>, Option<String>) {
        let mut out = Vec::with_capacity(samples.len());
        let mut seen = std::collections::HashSet::new();
        let mut first_bad = None;
        let id = self.task.manifest.id.clone();
        for s in samples {
            let result = match self.task.meters.iter_mut().find(|m| m.name == s.device) {
                None => Err(format!(
                    "reported for {:?}, which it was not granted",
                    s.device
                )),
                Some(_) if !seen.insert(s.device.clone()) => {
                    Err(format!("reported {:?} twice in one poll", s.device))
                }
                Some(m) => m.read(&self.task.clock, s, now_ms, plugin),
            };
            match result {
                Ok(r) => out.push(r),
                Err(why) => {
                    tracing::warn!(plugin = %id, device = %s.device, %why, "sample dropped");
                    self.status.send_modify(|s| s.dropped_samples += 1);
                    first_bad.get_or_insert(why);
                }
            }
        }
        (out, first_bad)
    }

    fn note_running(&self, i: &RunningPlugin) {
        self.status.send_modify(|s| {
            s.state = "running".into();
            s.model = i.info.model.clone();
            s.version = i.info.version.clone();
            s.code_hash = i.code_hash.to_hex();
        });
    }

    /// A failed start or poll: drop the instance; roll back a swap on probation, or restart
    /// after a growing backoff.
    fn failed(&mut self, e: PluginError) {
        let id = self.task.manifest.id.clone();
        tracing::warn!(plugin = %id, error = %e, "plugin failed; its instance is dropped");
        self.instance = None;
        self.status.send_modify(|s| {
            s.failures += 1;
            s.last_error = Some(e.to_string());
            s.state = "restarting".into();
        });
        if self.probation > 0
            && let Some(old) = self.previous.take()
        {
            let bad = std::mem::replace(&mut self.task.code, old);
            self.probation = 0;
            let why = format!("rolled back: {e}");
            tracing::warn!(plugin = %id, from = %bad.hash, to = %self.task.code.hash, "new plugin version failed on probation; rolled back");
            let ms = self
                .pending
                .as_ref()
                .map_or(0, |p| p.started.elapsed().as_millis() as u64);
            self.record_swap(
                &bad.hash.to_hex(),
                &self.task.code.hash.to_hex(),
                why.clone(),
                ms,
            );
            if let Some(p) = self.pending.take() {
                let _ = p.reply.send(Err(why));
            }
            self.next_start = Instant::now();
            return;
        }
        self.status.send_modify(|s| s.restarts += 1);
        self.next_start = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Health-checks `code` (start, `init`, one poll whose samples must all make sense), then
    /// puts it in place and polls at once; the first reading answers the command.
    async fn swap(&mut self, code: PluginCode, reply: oneshot::Sender<Result<SwapReport, String>>) {
        let started = Instant::now();
        let from = self.task.code.hash;
        let id = self.task.manifest.id.clone();
        let checked = self.health_check(&code).await;
        let fresh = match checked {
            Ok(f) => f,
            Err(why) => {
                let why = format!("refused: {why}");
                tracing::warn!(plugin = %id, to = %code.hash, %why, "plugin swap refused; the running version stays");
                self.record_swap(
                    &from.to_hex(),
                    &code.hash.to_hex(),
                    why.clone(),
                    started.elapsed().as_millis() as u64,
                );
                let _ = reply.send(Err(why));
                return;
            }
        };
        self.put_in_place(code, fresh, started, reply).await;
    }

    /// Makes a health-checked instance the running one and polls at once: the first reading
    /// answers `reply`; the old version is kept for rollback while the new one is on probation.
    async fn put_in_place(
        &mut self,
        code: PluginCode,
        fresh: RunningPlugin,
        started: Instant,
        reply: oneshot::Sender<Result<SwapReport, String>>,
    ) {
        let from = self.task.code.hash;
        self.note_running(&fresh);
        self.previous = Some(std::mem::replace(&mut self.task.code, code));
        self.instance = Some(fresh);
        self.probation = PROBATION_POLLS;
        self.pending = Some(PendingSwap {
            reply,
            started,
            from,
        });
        self.tick().await;
    }

    async fn health_check(&mut self, code: &PluginCode) -> Result<RunningPlugin, String> {
        let mut fresh = self
            .task
            .runtime
            .start(code, &self.task.manifest)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.now_ms();
        let samples = fresh.poll(now).await.map_err(|e| e.to_string())?;
        if samples.is_empty() {
            return Err("its health-check poll returned no samples".into());
        }
        for s in &samples {
            let m = self
                .task
                .meters
                .iter()
                .find(|m| m.name == s.device)
                .ok_or_else(|| format!("reported for {:?}, which it was not granted", s.device))?;
            m.check(&self.task.clock, s, now)
                .map_err(|e| format!("{}: {e}", s.device))?;
        }
        Ok(fresh)
    }

    fn record_swap(&self, from: &str, to: &str, outcome: String, ms: u64) {
        let at_ms = (self.task.now)();
        self.status.send_modify(|s| {
            let version = s.version.clone();
            s.swaps.push(SwapRecord {
                at_ms,
                from: from.to_string(),
                to: to.to_string(),
                version,
                outcome,
                ms,
            });
            if s.swaps.len() > SWAP_HISTORY {
                s.swaps.remove(0);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> ChainClock {
        ChainClock {
            chain_id: "test".into(),
            market_start_ms: 10_000,
            period_ms: 5_000,
            field_period_ms: 5_000,
        }
    }

    /// Polls every 3 s would take a period's closing reading up to 3 s after it ends; the
    /// poll after a period's start comes 250 ms into it instead.
    #[test]
    fn a_poll_comes_just_after_each_period_starts() {
        let every = Duration::from_secs(3);
        let ms = |d: Duration| d.as_millis() as u64;
        // 1 s into period 0: the next period starts in 4 s, the regular poll comes first.
        assert_eq!(ms(until_next_poll(&clock(), every, 11_000)), 3_000);
        // 3 s in: period 1 starts in 2 s, so 2.25 s.
        assert_eq!(ms(until_next_poll(&clock(), every, 13_000)), 2_250);
        // Polled 250 ms into period 1: the regular interval again.
        assert_eq!(ms(until_next_poll(&clock(), every, 15_250)), 3_000);
        // Before the market starts: just after its start.
        assert_eq!(ms(until_next_poll(&clock(), every, 9_000)), 1_250);
        // Faster polls than periods are left alone.
        let fast = Duration::from_millis(500);
        assert_eq!(ms(until_next_poll(&clock(), fast, 14_900)), 350);
        assert_eq!(ms(until_next_poll(&clock(), fast, 12_000)), 500);
    }
}
