//! The example contract, and the template for new ones: a counter with an owner, per-caller
//! tallies, events, a call to another contract, a migration, and ticks from the chain's clock
//! (genesis `[[schedule]]` with `call = "tick"`).

use gridledger_sdk::prelude::*;

#[derive(Serialize, Deserialize)]
pub struct InstantiateMsg {
    pub start: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecuteMsg {
    /// Adds `by` to the count and to the caller's tally.
    Increment { by: u64 },
    /// Sets the count to zero. Owner only.
    Reset {},
    /// Increments another counter contract, as this one.
    Forward { to: Address, by: u64 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryMsg {
    Count {},
    /// Tallies per caller, highest address first when `descending`.
    Tallies {
        descending: bool,
        limit: u32,
    },
    Owner {},
    /// How many clock ticks came, and the last one's number.
    Ticks {},
}

/// What the chain itself sends (never a transaction).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SudoMsg {
    /// Tick `period` of this contract's schedule.
    Tick { period: u64 },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct TicksAnswer {
    pub count: u64,
    pub last: Option<u64>,
}

#[derive(Serialize, Deserialize, Default)]
pub struct MigrateMsg {
    /// Start over from this count.
    pub set_count: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct CountAnswer {
    pub count: u64,
    pub version: u32,
}

pub const COUNT: Item<u64> = Item::new("count");
pub const OWNER: Item<Address> = Item::new("owner");
pub const TALLIES: Map<Address, u64> = Map::new("tally");
pub const TICKS: Item<TicksAnswer> = Item::new("ticks");

pub struct Counter;

impl Contract for Counter {
    const NAME: &'static str = "counter";
    const VERSION: u32 = 1;
    type InstantiateMsg = InstantiateMsg;
    type ExecuteMsg = ExecuteMsg;
    type QueryMsg = QueryMsg;
    type MigrateMsg = MigrateMsg;
    type SudoMsg = SudoMsg;

    fn instantiate(ctx: &mut Ctx, msg: InstantiateMsg) -> Result<Response> {
        COUNT.save(&msg.start)?;
        OWNER.save(&ctx.caller()?)?;
        Ok(Response::new())
    }

    fn execute(ctx: &mut Ctx, msg: ExecuteMsg) -> Result<Response> {
        match msg {
            ExecuteMsg::Increment { by } => {
                let caller = ctx.caller()?;
                let count = COUNT.update(|c| {
                    c.unwrap_or(0)
                        .checked_add(by)
                        .ok_or_else(|| Error::new("count overflows"))
                })?;
                TALLIES.update(&caller, |t| Ok(t.unwrap_or(0).saturating_add(by)))?;
                ctx.emit(Event::new("increment").attr("by", by).attr("count", count));
                Response::json(&count)
            }
            ExecuteMsg::Reset {} => {
                ensure!(ctx.caller()? == OWNER.load()?, "only the owner may reset");
                COUNT.save(&0)?;
                ctx.emit(Event::new("reset"));
                Ok(Response::new())
            }
            ExecuteMsg::Forward { to, by } => {
                let data = ctx.call_contract(&to, &ExecuteMsg::Increment { by }, 0)?;
                Ok(Response { data })
            }
        }
    }

    fn sudo(ctx: &mut Ctx, msg: SudoMsg) -> Result<Response> {
        match msg {
            SudoMsg::Tick { period } => {
                let mut t = TICKS.may_load()?.unwrap_or(TicksAnswer {
                    count: 0,
                    last: None,
                });
                t.count += 1;
                t.last = Some(period);
                TICKS.save(&t)?;
                ctx.emit(Event::new("tick").attr("period", period));
                Ok(Response::new())
            }
        }
    }

    fn query(_ctx: &Ctx, msg: QueryMsg) -> Result<Response> {
        match msg {
            QueryMsg::Count {} => Response::json(&CountAnswer {
                count: COUNT.load()?,
                version: Self::VERSION,
            }),
            QueryMsg::Tallies { descending, limit } => {
                let order = if descending {
                    Order::Descending
                } else {
                    Order::Ascending
                };
                let tallies = TALLIES
                    .iter(order)
                    .take(limit as usize)
                    .collect::<Result<Vec<_>>>()?;
                Response::json(&tallies)
            }
            QueryMsg::Owner {} => Response::json(&OWNER.load()?),
            QueryMsg::Ticks {} => Response::json(&TICKS.may_load()?.unwrap_or(TicksAnswer {
                count: 0,
                last: None,
            })),
        }
    }

    fn migrate(ctx: &mut Ctx, msg: MigrateMsg) -> Result<Response> {
        if let Some(n) = msg.set_count {
            COUNT.save(&n)?;
        }
        ctx.emit(Event::new("migrated").attr("version", Self::VERSION));
        Ok(Response::new())
    }
}

export_contract!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_sdk::testing::MockChain;

    #[test]
    fn counts_tallies_and_emits() {
        let mut chain = MockChain::new();
        let (alice, bob) = (MockChain::addr("alice"), MockChain::addr("bob"));
        let c = chain
            .instantiate::<Counter>(alice, &InstantiateMsg { start: 5 }, 0)
            .unwrap();
        chain
            .execute(c, alice, &ExecuteMsg::Increment { by: 2 }, 0)
            .unwrap();
        assert_eq!(
            chain.events()[0].1,
            Event::new("increment").attr("by", 2).attr("count", 7)
        );
        chain
            .execute(c, bob, &ExecuteMsg::Increment { by: 3 }, 0)
            .unwrap();
        chain
            .execute(c, alice, &ExecuteMsg::Increment { by: 1 }, 0)
            .unwrap();
        let answer: CountAnswer = chain.query(c, &QueryMsg::Count {}).unwrap();
        assert_eq!(answer.count, 11);
        let asc: Vec<(Address, u64)> = chain
            .query(
                c,
                &QueryMsg::Tallies {
                    descending: false,
                    limit: 10,
                },
            )
            .unwrap();
        let mut expected = vec![(alice, 3), (bob, 3)];
        expected.sort();
        assert_eq!(asc, expected);
        let desc: Vec<(Address, u64)> = chain
            .query(
                c,
                &QueryMsg::Tallies {
                    descending: true,
                    limit: 1,
                },
            )
            .unwrap();
        assert_eq!(desc, vec![expected[1]]);
    }

    #[test]
    fn only_owner_resets_and_failure_changes_nothing() {
        let mut chain = MockChain::new();
        let (alice, bob) = (MockChain::addr("alice"), MockChain::addr("bob"));
        let c = chain
            .instantiate::<Counter>(alice, &InstantiateMsg { start: 5 }, 0)
            .unwrap();
        let before = chain.storage(c);
        let err = chain.execute(c, bob, &ExecuteMsg::Reset {}, 0).unwrap_err();
        assert!(err.contains("only the owner"), "{err}");
        assert_eq!(chain.storage(c), before);
        let err = chain.execute_raw(c, alice, b"{not json").unwrap_err();
        assert!(err.contains("invalid message"), "{err}");
        let err = chain
            .execute(c, alice, &ExecuteMsg::Increment { by: u64::MAX }, 0)
            .unwrap_err();
        assert!(err.contains("overflows"));
        assert_eq!(chain.storage(c), before);
    }

    #[test]
    fn forward_calls_another_contract_and_rolls_back_together() {
        let mut chain = MockChain::new();
        let alice = MockChain::addr("alice");
        let a = chain
            .instantiate::<Counter>(alice, &InstantiateMsg { start: 0 }, 0)
            .unwrap();
        let b = chain
            .instantiate::<Counter>(
                alice,
                &InstantiateMsg {
                    start: u64::MAX - 1,
                },
                0,
            )
            .unwrap();
        chain
            .execute(a, alice, &ExecuteMsg::Forward { to: b, by: 1 }, 0)
            .unwrap();
        // b's tally is for a, the calling contract, not alice.
        let t: Vec<(Address, u64)> = chain
            .query(
                b,
                &QueryMsg::Tallies {
                    descending: false,
                    limit: 5,
                },
            )
            .unwrap();
        assert_eq!(t, vec![(a, 1)]);
        let before = chain.storage(b);
        assert!(
            chain
                .execute(a, alice, &ExecuteMsg::Forward { to: b, by: 5 }, 0)
                .is_err()
        );
        assert_eq!(chain.storage(b), before);
    }
}
