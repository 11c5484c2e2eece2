//! The island's network as the market sees it: the point of common coupling (the PCC, the bus
//! where feeders meet), the feeders with their transformers' import and export capacity, and
//! the feeder each participant is connected to. A participant's meter is where its
//! participant is. A participant no feeder lists is connected at the PCC.
//!
//! The topology is set at instantiation (genesis `[grid]`) and changed only by the grid
//! company (`set_grid`), from a period whose gate has not closed: a period clears with the
//! topology in force for it, and a cleared period never sees a later one. Every version is
//! kept (`grid` query with a period).

use crate::Config;
use crate::auction::FeederLimit;
use gridledger_sdk::Order as Iter;
use gridledger_sdk::prelude::*;

/// Most feeders a topology has (the clearing's graph has two nodes per feeder).
pub const MAX_FEEDERS: usize = 32;
/// Most participants a topology connects.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Largest transformer, kW.
pub const MAX_KW: u64 = 10_000_000;
/// Most topology versions kept.
const MAX_VERSIONS: usize = 1_000;
const MAX_NAME_BYTES: usize = 64;

/// A topology as sent: the feeders with the accounts connected to each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridSpec {
    /// The name of the point of common coupling.
    pub pcc: String,
    pub feeders: Vec<FeederSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeederSpec {
    pub name: String,
    /// What the transformer carries into the feeder, kW.
    pub import_kw: u64,
    /// What it carries out of the feeder, kW.
    pub export_kw: u64,
    #[serde(default)]
    pub accounts: Vec<Address>,
}

/// A stored version (its connections are kept apart, one entry each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The first period it applies to.
    pub from_period: u64,
    pub pcc: String,
    pub feeders: Vec<Feeder>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feeder {
    pub name: String,
    pub import_kw: u64,
    pub export_kw: u64,
}

/// The `grid` query's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridAnswer {
    pub from_period: u64,
    pub pcc: String,
    pub feeders: Vec<FeederAnswer>,
    /// The first period of the next version, if one is announced.
    pub next_from_period: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeederAnswer {
    pub name: String,
    pub import_kw: u64,
    pub export_kw: u64,
    /// The limits over one period, Wh.
    pub import_wh: u64,
    pub export_wh: u64,
    /// How many accounts are connected to it, and the first of them.
    pub connected: u64,
    pub accounts: Vec<Address>,
}

/// The first periods of every version, ascending.
const VERSIONS: Item<Vec<u64>> = Item::new("grid_versions");
const TOPOLOGY: Map<u64, Topology> = Map::new("grid");
/// (version, account) → feeder index.
const CONNECTED: Map<(u64, Address), u32> = Map::new("grid_at");

/// Stores `spec` as the topology from `from_period` on. A version announced for the same
/// period is replaced; one for a later period is refused (versions only go forward).
pub fn set(spec: &GridSpec, from_period: u64) -> Result<()> {
    check(spec)?;
    let mut versions = VERSIONS.may_load()?.unwrap_or_default();
    match versions.last() {
        Some(last) if *last > from_period => fail!(
            "a topology from period {last} is already announced; a change must start at or after it"
        ),
        Some(last) if *last == from_period => {
            let old: Vec<Address> = CONNECTED
                .prefixed(&from_period, Iter::Ascending)
                .map(|r| r.map(|((_, a), _)| a))
                .collect::<Result<_>>()?;
            for a in old {
                CONNECTED.remove(&(from_period, a));
            }
        }
        _ => {
            ensure!(
                versions.len() < MAX_VERSIONS,
                "the topology history is full ({MAX_VERSIONS} versions)"
            );
            versions.push(from_period);
        }
    }
    VERSIONS.save(&versions)?;
    TOPOLOGY.save(
        &from_period,
        &Topology {
            from_period,
            pcc: spec.pcc.clone(),
            feeders: spec
                .feeders
                .iter()
                .map(|f| Feeder {
                    name: f.name.clone(),
                    import_kw: f.import_kw,
                    export_kw: f.export_kw,
                })
                .collect(),
        },
    )?;
    for (i, f) in spec.feeders.iter().enumerate() {
        for a in &f.accounts {
            CONNECTED.save(&(from_period, *a), &(i as u32))?;
        }
    }
    Ok(())
}

fn check(spec: &GridSpec) -> Result<()> {
    let name_ok = |n: &str| !n.is_empty() && n.len() <= MAX_NAME_BYTES;
    ensure!(
        name_ok(&spec.pcc),
        "the PCC's name has 1 to {MAX_NAME_BYTES} bytes"
    );
    ensure!(
        spec.feeders.len() <= MAX_FEEDERS,
        "a topology has at most {MAX_FEEDERS} feeders, not {}",
        spec.feeders.len()
    );
    let mut names = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut connections = 0usize;
    for f in &spec.feeders {
        ensure!(
            name_ok(&f.name),
            "a feeder's name has 1 to {MAX_NAME_BYTES} bytes"
        );
        ensure!(
            f.name != spec.pcc && names.insert(f.name.as_str()),
            "feeder name {:?} is used twice",
            f.name
        );
        ensure!(
            f.import_kw <= MAX_KW && f.export_kw <= MAX_KW,
            "feeder {}: a transformer carries at most {MAX_KW} kW",
            f.name
        );
        connections += f.accounts.len();
        ensure!(
            connections <= MAX_CONNECTIONS,
            "a topology connects at most {MAX_CONNECTIONS} accounts"
        );
        for a in &f.accounts {
            ensure!(
                seen.insert(*a),
                "{a} is connected twice: an account has one connection point"
            );
        }
    }
    Ok(())
}

/// The topology a period clears with, if the market has one.
pub fn at(period: u64) -> Result<Option<Topology>> {
    let versions = VERSIONS.may_load()?.unwrap_or_default();
    let i = versions.partition_point(|v| *v <= period);
    match i.checked_sub(1).map(|i| versions[i]) {
        Some(v) => TOPOLOGY.may_load(&v),
        None => Ok(None),
    }
}

/// The feeder `account` is connected to under `t` (`None`: the PCC).
pub fn feeder_of(t: &Topology, account: &Address) -> Result<Option<usize>> {
    Ok(CONNECTED
        .may_load(&(t.from_period, *account))?
        .map(|i| i as usize)
        .filter(|i| *i < t.feeders.len()))
}

/// Wh `kw` carries over one period (the field period a period stands for).
pub fn period_wh(c: &Config, kw: u64) -> u64 {
    // kW · 1000 W/kW · ms / 3,600,000 ms/h
    (kw as u128 * c.energy_period_ms as u128 / 3_600) as u64
}

/// The transformer limits of `t` over one period.
pub fn limits(c: &Config, t: &Topology) -> Vec<FeederLimit> {
    t.feeders
        .iter()
        .map(|f| FeederLimit {
            import_wh: period_wh(c, f.import_kw),
            export_wh: period_wh(c, f.export_kw),
        })
        .collect()
}

/// The `grid` query: the topology for `period`, with up to `limit` accounts per feeder.
pub fn answer(c: &Config, period: u64, limit: usize) -> Result<Option<GridAnswer>> {
    let Some(t) = at(period)? else {
        return Ok(None);
    };
    let mut accounts: Vec<Vec<Address>> = vec![Vec::new(); t.feeders.len()];
    let mut connected = vec![0u64; t.feeders.len()];
    for r in CONNECTED.prefixed(&t.from_period, Iter::Ascending) {
        let ((_, a), i) = r?;
        if let Some(n) = connected.get_mut(i as usize) {
            *n += 1;
        }
        if let Some(list) = accounts.get_mut(i as usize)
            && list.len() < limit
        {
            list.push(a);
        }
    }
    let versions = VERSIONS.may_load()?.unwrap_or_default();
    let next_from_period = versions.iter().copied().find(|v| *v > t.from_period);
    let limits = limits(c, &t);
    Ok(Some(GridAnswer {
        from_period: t.from_period,
        pcc: t.pcc,
        feeders: t
            .feeders
            .into_iter()
            .zip(limits)
            .zip(accounts.into_iter().zip(connected))
            .map(|((f, l), (accounts, connected))| FeederAnswer {
                name: f.name,
                import_kw: f.import_kw,
                export_kw: f.export_kw,
                import_wh: l.import_wh,
                export_wh: l.export_wh,
                connected,
                accounts,
            })
            .collect(),
        next_from_period,
    }))
}
