//! Pricing: the first stage of each delivery period (paper §2.2, eq. 2).
//!
//! Owners of registered devices forecast their renewable output or their load for a coming
//! period; the market collects those forecasts (it knows each sender's meter, its kind and
//! its rating) and asks this contract for the period's figures from the totals, once, when
//! the period clears: what settlement then uses. For totals `P_r` (renewable supply) and
//! `P_L` (load) of a period `t`:
//!
//! - the subsidy factor `μ = clamp(1 + slope · (P_L − P_r) / max(P_L, P_r), μ_min, μ_max)`:
//!   above 1 when forecast renewable output `P_r` is below load `P_L` (encourage producing),
//!   below 1 when above it, exactly 1 when they balance or nothing was forecast;
//! - the reference price `F(t, j) = clamp(reference · μ, F_min, F_max)`, in micro-tokens per kWh;
//! - a unit's subsidy `R_i = μ · F · P_r_i · T_Δ` for `E_i = P_r_i · T_Δ` Wh delivered
//!   ([`subsidy`], rounded down to whole micro-tokens).
//!
//! Parameters (band, reference, μ curve, penalty rates, grid tariff, market mechanism) change
//! only through the contract's admin — the regulators' governance.
//!
//! **Network fees** ([`FeeSchedule`]) are the regulator's too: a wheeling charge per kWh by the
//! highest level a trade crosses (inside one feeder, or across the island), and a transaction
//! fee per kWh split between buyer and seller by the regulator's share, with waivers for
//! ranges of periods. A schedule takes effect at a height (`set_fees`'s `from_height`, by
//! default the height it is sent at: in a governance proposal, the height the proposal
//! announced) and never earlier: a height already passed is refused, and the schedules in
//! force before stay in the history (`fee_history`). The market reads the rates of a period
//! when it clears the period and keeps them, so a later change never touches a cleared period.

use gridledger_sdk::prelude::*;

/// Which price trades pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Uniform price: every trade of a period at the clearing price.
    PayAsClear,
    /// Each trade at its bid's price.
    PayAsBid,
}

/// The regulator's parameters. Prices are micro-tokens per kWh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub f_min: u64,
    pub f_max: u64,
    pub reference_price: u64,
    pub mu_min: Fixed,
    pub mu_max: Fixed,
    /// Steepness of μ in the supply/demand imbalance.
    pub mu_slope: Fixed,
    /// Charged per kWh a seller fails to deliver.
    pub shortfall_penalty: u64,
    /// Charged per kWh a buyer draws beyond what it bought.
    pub overdraw_penalty: u64,
    /// What the grid company charges per kWh of residual imbalance.
    pub grid_tariff: u64,
    pub mechanism: Mechanism,
}

/// Highest price or rate a parameter may have, micro-tokens per kWh (1,000 tokens per kWh):
/// an order's 10⁹ Wh at it is 10¹⁵ micro-tokens, far inside `u64`.
pub const MAX_PRICE: u64 = 1_000_000_000;

impl Params {
    pub fn check(&self) -> Result<()> {
        ensure!(
            [
                self.f_max,
                self.shortfall_penalty,
                self.overdraw_penalty,
                self.grid_tariff
            ]
            .iter()
            .all(|p| *p <= MAX_PRICE),
            "prices, penalties and the tariff are at most {MAX_PRICE} per kWh"
        );
        ensure!(
            self.f_min > 0 && self.f_min <= self.f_max,
            "band must satisfy 0 < f_min <= f_max"
        );
        ensure!(
            self.reference_price >= self.f_min && self.reference_price <= self.f_max,
            "reference price must lie in the band"
        );
        ensure!(
            !self.mu_min.is_negative() && self.mu_min <= Fixed::ONE && self.mu_max >= Fixed::ONE,
            "need 0 <= mu_min <= 1 <= mu_max"
        );
        ensure!(
            !self.mu_slope.is_negative(),
            "mu_slope must not be negative"
        );
        Ok(())
    }
}

/// Highest fee rate, micro-tokens per kWh (1 token per kWh).
pub const MAX_FEE: u64 = 1_000_000;
/// Most waivers one schedule carries.
pub const MAX_WAIVERS: usize = 32;
/// Most schedules the history keeps (each set by governance: a handful a year).
pub const MAX_FEE_ENTRIES: usize = 1_000;

/// The regulator's network fees, micro-tokens per kWh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    /// Wheeling charge of a trade inside one feeder (to the grid company).
    pub wheeling_feeder: u64,
    /// Wheeling charge of a trade across the island: different feeders, or a party at the
    /// point of common coupling. At least `wheeling_feeder`.
    pub wheeling_island: u64,
    /// Transaction fee of every trade (to the market's fee collector).
    pub transaction_fee: u64,
    /// The buyer's share of the transaction fee, percent; the seller pays the rest.
    pub buyer_share_percent: u64,
    #[serde(default)]
    pub waivers: Vec<Waiver>,
}

/// Fees waived for the periods `first_period..=last_period`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiver {
    pub first_period: u64,
    pub last_period: u64,
    /// Waive the wheeling charge.
    #[serde(default)]
    pub wheeling: bool,
    /// Waive the transaction fee.
    #[serde(default)]
    pub transaction: bool,
}

impl FeeSchedule {
    pub fn check(&self) -> Result<()> {
        ensure!(
            self.wheeling_feeder <= self.wheeling_island,
            "wheeling inside a feeder ({}) must not cost more than across the island ({})",
            self.wheeling_feeder,
            self.wheeling_island
        );
        ensure!(
            self.wheeling_island <= MAX_FEE && self.transaction_fee <= MAX_FEE,
            "fee rates are at most {MAX_FEE} per kWh"
        );
        ensure!(
            self.buyer_share_percent <= 100,
            "the buyer's share is a percentage: 0 to 100, not {}",
            self.buyer_share_percent
        );
        ensure!(
            self.waivers.len() <= MAX_WAIVERS,
            "at most {MAX_WAIVERS} waivers"
        );
        for w in &self.waivers {
            ensure!(
                w.first_period <= w.last_period,
                "a waiver's first period ({}) comes before its last ({})",
                w.first_period,
                w.last_period
            );
        }
        Ok(())
    }

    /// The rates a trade of `period` pays under this schedule, waivers applied.
    pub fn rates(&self, period: u64) -> FeeRates {
        let waived = |f: fn(&Waiver) -> bool| {
            self.waivers
                .iter()
                .any(|w| f(w) && (w.first_period..=w.last_period).contains(&period))
        };
        let (wheeling, transaction) = (!waived(|w| w.wheeling), !waived(|w| w.transaction));
        let tx = if transaction { self.transaction_fee } else { 0 };
        // The buyer's part rounds down; the seller pays the rest: the parts add up to the fee.
        let buyer_fee = tx * self.buyer_share_percent / 100;
        FeeRates {
            wheeling_feeder: if wheeling { self.wheeling_feeder } else { 0 },
            wheeling_island: if wheeling { self.wheeling_island } else { 0 },
            buyer_fee,
            seller_fee: tx - buyer_fee,
        }
    }
}

/// The fee rates of one period, micro-tokens per kWh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRates {
    pub wheeling_feeder: u64,
    pub wheeling_island: u64,
    /// The buyer's part of the transaction fee.
    pub buyer_fee: u64,
    /// The seller's part.
    pub seller_fee: u64,
}

/// A schedule and the height it takes effect at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeEntry {
    pub from_height: u64,
    pub fees: FeeSchedule,
}

/// The `fees` query's answer: the schedule in force, since when, and the next one if one is
/// announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeesAnswer {
    pub from_height: u64,
    #[serde(flatten)]
    pub fees: FeeSchedule,
    pub next: Option<FeeEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastKind {
    /// Renewable output, Wh over the period.
    Supply,
    /// Load, Wh over the period.
    Demand,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecuteMsg {
    /// Refused: forecasts go to the market, which checks who sends them (kept so that a
    /// sender of the old message learns where to send it).
    Forecast {
        period: u64,
        kind: ForecastKind,
        wh: u64,
    },
    /// New parameters (admin only: the regulators' governance).
    SetParams { params: Params },
    /// A new fee schedule from `from_height` (default: now); admin only. A schedule already
    /// announced for the same height is replaced; heights already passed are refused.
    SetFees {
        fees: FeeSchedule,
        #[serde(default)]
        from_height: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryMsg {
    Params {},
    /// Price and μ for a period whose forecast totals are `supply_wh` (renewable output)
    /// and `demand_wh` (load); without totals, μ = 1. The market's `price` query gives a
    /// period's figures from its forecasts.
    Price {
        period: u64,
        #[serde(default)]
        supply_wh: u64,
        #[serde(default)]
        demand_wh: u64,
    },
    /// The subsidy for delivering `wh` renewable Wh at subsidy factor `mu` and price `price`.
    Subsidy {
        mu: Fixed,
        price: u64,
        wh: u64,
    },
    /// The fee schedule in force (and the next one announced).
    Fees {},
    /// Every fee schedule, oldest first, with the height each took (or takes) effect.
    FeeHistory {},
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceAnswer {
    pub period: u64,
    pub price: u64,
    pub mu: Fixed,
    pub supply_wh: u64,
    pub demand_wh: u64,
    pub f_min: u64,
    pub f_max: u64,
    pub shortfall_penalty: u64,
    pub overdraw_penalty: u64,
    pub grid_tariff: u64,
    pub mechanism: Mechanism,
    /// The network fees a trade of this period pays, as in force when asked.
    #[serde(default)]
    pub fees: FeeRates,
}

#[derive(Serialize, Deserialize)]
pub struct InstantiateMsg {
    pub params: Params,
    /// Who may change the parameters (the regulator).
    pub admin: Address,
    /// The first fee schedule (default: no fees).
    #[serde(default)]
    pub fees: Option<FeeSchedule>,
}

#[derive(Serialize, Deserialize)]
pub struct MigrateMsg {
    pub params: Option<Params>,
}

const PARAMS: Item<Params> = Item::new("params");
const ADMIN: Item<Address> = Item::new("admin");
/// Every fee schedule, by `from_height` ascending.
const FEES: Item<Vec<FeeEntry>> = Item::new("fees");

/// The fee history.
fn fee_history() -> Result<Vec<FeeEntry>> {
    Ok(FEES.may_load()?.unwrap_or_default())
}

/// The schedule in force at `height` (the latest from at most `height`), and the next one.
pub fn fees_at(history: &[FeeEntry], height: u64) -> (Option<&FeeEntry>, Option<&FeeEntry>) {
    let split = history.partition_point(|e| e.from_height <= height);
    (
        split.checked_sub(1).and_then(|i| history.get(i)),
        history.get(split),
    )
}

/// μ for forecast renewable supply and load.
pub fn mu(p: &Params, supply: u64, demand: u64) -> Result<Fixed> {
    let big = supply.max(demand);
    if big == 0 {
        return Ok(Fixed::ONE);
    }
    let imbalance = Fixed::ratio(demand as i128 - supply as i128, big as i128)?;
    let raw = Fixed::ONE.checked_add(p.mu_slope.checked_mul(imbalance)?)?;
    Ok(raw.max(p.mu_min).min(p.mu_max))
}

/// `F(t, j)` for a given μ.
pub fn price(p: &Params, mu: Fixed) -> Result<u64> {
    let f = Fixed::from_int(p.reference_price as i64)
        .checked_mul(mu)?
        .trunc_int();
    Ok((f.max(0) as u64).clamp(p.f_min, p.f_max))
}

/// `R_i = μ · F · E_i`, with `E_i` in Wh and `F` per kWh; micro-tokens, rounded down.
pub fn subsidy(mu: Fixed, price: u64, wh: u64) -> Result<u64> {
    let value = Fixed::ratio(price as i128 * wh as i128, 1000)?
        .checked_mul(mu)?
        .trunc_int();
    u64::try_from(value.max(0)).map_err(|_| Error::new("subsidy overflows"))
}

/// The figures of a period with forecast totals `supply` and `demand`, under `p` (without fees).
pub fn answer_for(p: &Params, period: u64, supply: u64, demand: u64) -> Result<PriceAnswer> {
    let mu = mu(p, supply, demand)?;
    Ok(PriceAnswer {
        period,
        price: price(p, mu)?,
        mu,
        supply_wh: supply,
        demand_wh: demand,
        f_min: p.f_min,
        f_max: p.f_max,
        shortfall_penalty: p.shortfall_penalty,
        overdraw_penalty: p.overdraw_penalty,
        grid_tariff: p.grid_tariff,
        mechanism: p.mechanism,
        fees: FeeRates::default(),
    })
}

pub struct Pricing;

impl Contract for Pricing {
    const NAME: &'static str = "pricing";
    const VERSION: u32 = 1;
    type InstantiateMsg = InstantiateMsg;
    type ExecuteMsg = ExecuteMsg;
    type QueryMsg = QueryMsg;
    type MigrateMsg = MigrateMsg;
    type SudoMsg = NoMsg;

    fn instantiate(ctx: &mut Ctx, msg: InstantiateMsg) -> Result<Response> {
        msg.params.check()?;
        PARAMS.save(&msg.params)?;
        ADMIN.save(&msg.admin)?;
        if let Some(fees) = msg.fees {
            fees.check()?;
            FEES.save(&vec![FeeEntry {
                from_height: ctx.env().height,
                fees,
            }])?;
        }
        Ok(Response::new())
    }

    fn execute(ctx: &mut Ctx, msg: ExecuteMsg) -> Result<Response> {
        match msg {
            ExecuteMsg::Forecast { .. } => Err(Error::new(
                "forecasts go to the market contract ({\"forecast\":{period, kind, wh}}), \
                 from the owner of a registered device",
            )),
            ExecuteMsg::SetParams { params } => {
                ensure!(
                    ctx.caller()? == ADMIN.load()?,
                    "only the regulator may change pricing parameters"
                );
                params.check()?;
                PARAMS.save(&params)?;
                ctx.emit(
                    Event::new("pricing_params")
                        .attr("f_min", params.f_min)
                        .attr("f_max", params.f_max),
                );
                Ok(Response::new())
            }
            ExecuteMsg::SetFees { fees, from_height } => {
                ensure!(
                    ctx.caller()? == ADMIN.load()?,
                    "only the regulator may change the fees"
                );
                fees.check()?;
                let now = ctx.env().height;
                let from_height = from_height.unwrap_or(now);
                ensure!(
                    from_height >= now,
                    "fees are never retroactive: height {from_height} has passed (now {now})"
                );
                let mut history = fee_history()?;
                let at = history.partition_point(|e| e.from_height < from_height);
                let entry = FeeEntry { from_height, fees };
                if history
                    .get(at)
                    .is_some_and(|e| e.from_height == from_height)
                {
                    history[at] = entry;
                } else {
                    ensure!(
                        history.len() < MAX_FEE_ENTRIES,
                        "the fee history is full ({MAX_FEE_ENTRIES} schedules)"
                    );
                    history.insert(at, entry);
                }
                FEES.save(&history)?;
                let f = &history[at].fees;
                ctx.emit(
                    Event::new("fees")
                        .attr("from_height", from_height)
                        .attr("wheeling_feeder", f.wheeling_feeder)
                        .attr("wheeling_island", f.wheeling_island)
                        .attr("transaction_fee", f.transaction_fee)
                        .attr("buyer_share_percent", f.buyer_share_percent),
                );
                Ok(Response::new())
            }
        }
    }

    fn query(ctx: &Ctx, msg: QueryMsg) -> Result<Response> {
        let height = ctx.env().height;
        match msg {
            QueryMsg::Params {} => Response::json(&PARAMS.load()?),
            QueryMsg::Price {
                period,
                supply_wh,
                demand_wh,
            } => {
                let mut a = answer_for(&PARAMS.load()?, period, supply_wh, demand_wh)?;
                let history = fee_history()?;
                if let (Some(e), _) = fees_at(&history, height) {
                    a.fees = e.fees.rates(period);
                }
                Response::json(&a)
            }
            QueryMsg::Subsidy { mu, price, wh } => Response::json(&subsidy(mu, price, wh)?),
            QueryMsg::Fees {} => {
                let history = fee_history()?;
                let (now, next) = fees_at(&history, height);
                Response::json(&FeesAnswer {
                    from_height: now.map_or(0, |e| e.from_height),
                    fees: now.map(|e| e.fees.clone()).unwrap_or_default(),
                    next: next.cloned(),
                })
            }
            QueryMsg::FeeHistory {} => Response::json(&fee_history()?),
        }
    }

    fn migrate(_ctx: &mut Ctx, msg: MigrateMsg) -> Result<Response> {
        if let Some(p) = msg.params {
            p.check()?;
            PARAMS.save(&p)?;
        }
        Ok(Response::new())
    }
}

export_contract!(Pricing);

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_sdk::testing::MockChain;
    use proptest::prelude::*;

    pub fn params() -> Params {
        Params {
            f_min: 100_000,
            f_max: 400_000,
            reference_price: 200_000,
            mu_min: "0.5".parse().unwrap(),
            mu_max: "1.5".parse().unwrap(),
            mu_slope: Fixed::ONE,
            shortfall_penalty: 50_000,
            overdraw_penalty: 50_000,
            grid_tariff: 300_000,
            mechanism: Mechanism::PayAsClear,
        }
    }

    #[test]
    fn mu_follows_the_imbalance() {
        let p = params();
        assert_eq!(mu(&p, 0, 0).unwrap(), Fixed::ONE);
        assert_eq!(mu(&p, 500, 500).unwrap(), Fixed::ONE);
        assert!(
            mu(&p, 400, 1000).unwrap() > Fixed::ONE,
            "short of renewables: encourage"
        );
        assert!(
            mu(&p, 1000, 400).unwrap() < Fixed::ONE,
            "plenty: discourage"
        );
        assert_eq!(mu(&p, 0, 1000).unwrap(), p.mu_max.min("2".parse().unwrap()));
        assert_eq!(mu(&p, 1000, 0).unwrap(), "0.5".parse().unwrap());
        assert_eq!(subsidy(Fixed::ONE, 200_000, 1000).unwrap(), 200_000);
    }

    /// μ and `F(t, j)` to the unit, for supply above, below and equal to load (computed by
    /// hand from the formulas in the module doc, with slope 1, μ in [0.5, 1.5], reference
    /// 200,000 and band [100,000, 400,000]).
    #[test]
    fn mu_and_the_reference_price_in_exact_numbers() {
        let p = params();
        let fx = |s: &str| s.parse::<Fixed>().unwrap();
        // (supply, demand, μ, F)
        let cases = [
            (1_000, 1_000, "1", 200_000),  // balanced
            (800, 1_000, "1.2", 240_000),  // 200 / 1000 short: 1 + 0.2
            (1_000, 800, "0.8", 160_000),  // 200 / 1000 plenty: 1 - 0.2
            (750, 1_000, "1.25", 250_000), // 250 / 1000
            (1_000, 600, "0.6", 120_000),  // 400 / 1000
            (400, 1_000, "1.5", 300_000),  // 1.6, capped at mu_max
            (1_000, 0, "0.5", 100_000),    // 0, floored at mu_min
            (0, 0, "1", 200_000),          // nothing forecast
        ];
        for (supply, demand, want_mu, want_f) in cases {
            let m = mu(&p, supply, demand).unwrap();
            assert_eq!(m, fx(want_mu), "μ for supply {supply}, demand {demand}");
            assert_eq!(
                price(&p, m).unwrap(),
                want_f,
                "F for supply {supply}, demand {demand}"
            );
        }
        // A gentler slope halves the deviation: 1 - 0.5 · 0.4.
        let mut half = params();
        half.mu_slope = fx("0.5");
        assert_eq!(mu(&half, 1_000, 600).unwrap(), fx("0.8"));
        // The band clamps F: reference 200,000 · 0.5 = 100,000 is below a floor of 120,000.
        let mut band = params();
        band.f_min = 120_000;
        assert_eq!(price(&band, fx("0.5")).unwrap(), 120_000);
        // R_i = μ · F · E: 1.2 · 240,000 per kWh · 1 kWh.
        assert_eq!(subsidy(fx("1.2"), 240_000, 1_000).unwrap(), 288_000);
        // 0.8 · 160,000 · 0.25 kWh.
        assert_eq!(subsidy(fx("0.8"), 160_000, 250).unwrap(), 32_000);
    }

    #[test]
    fn forecasts_are_refused_here_and_only_the_regulator_sets_params() {
        let mut chain = MockChain::new();
        let (reg, wind) = (MockChain::addr("regulator"), MockChain::addr("wind"));
        let c = chain
            .instantiate::<Pricing>(
                reg,
                &InstantiateMsg {
                    params: params(),
                    admin: reg,
                    fees: None,
                },
                0,
            )
            .unwrap();
        let before = chain.storage(c);
        let err = chain
            .execute(
                c,
                wind,
                &ExecuteMsg::Forecast {
                    period: 3,
                    kind: ForecastKind::Supply,
                    wh: 1_000_000_000_000,
                },
                0,
            )
            .unwrap_err();
        assert!(err.contains("go to the market"), "{err}");
        assert_eq!(chain.storage(c), before);
        let a: PriceAnswer = chain
            .query(
                c,
                &QueryMsg::Price {
                    period: 3,
                    supply_wh: 400,
                    demand_wh: 1000,
                },
            )
            .unwrap();
        assert_eq!((a.supply_wh, a.demand_wh, a.price), (400, 1000, 300_000));
        let mut bad = params();
        bad.f_min = 0;
        assert!(
            chain
                .execute(c, reg, &ExecuteMsg::SetParams { params: bad }, 0)
                .is_err()
        );
        // A band so high that an order's escrow would overflow is refused.
        let mut huge = params();
        huge.f_max = MAX_PRICE + 1;
        let err = chain
            .execute(c, reg, &ExecuteMsg::SetParams { params: huge }, 0)
            .unwrap_err();
        assert!(err.contains("at most"), "{err}");
        let err = chain
            .execute(c, wind, &ExecuteMsg::SetParams { params: params() }, 0)
            .unwrap_err();
        assert!(err.contains("only the regulator"));
    }

    fn schedule(wheeling_feeder: u64, wheeling_island: u64, fee: u64, share: u64) -> FeeSchedule {
        FeeSchedule {
            wheeling_feeder,
            wheeling_island,
            transaction_fee: fee,
            buyer_share_percent: share,
            waivers: vec![],
        }
    }

    #[test]
    fn fees_take_effect_at_their_height_and_never_before() {
        let mut chain = MockChain::new();
        let (reg, someone) = (MockChain::addr("regulator"), MockChain::addr("someone"));
        let c = chain
            .instantiate::<Pricing>(
                reg,
                &InstantiateMsg {
                    params: params(),
                    admin: reg,
                    fees: Some(schedule(1_000, 5_000, 2_000, 50)),
                },
                0,
            )
            .unwrap();
        let rates = |chain: &MockChain, period| {
            let a: PriceAnswer = chain
                .query(
                    c,
                    &QueryMsg::Price {
                        period,
                        supply_wh: 0,
                        demand_wh: 0,
                    },
                )
                .unwrap();
            a.fees
        };
        let want = FeeRates {
            wheeling_feeder: 1_000,
            wheeling_island: 5_000,
            buyer_fee: 1_000,
            seller_fee: 1_000,
        };
        assert_eq!(rates(&chain, 7), want);
        // Announced at height 1 for height 10: in force from 10, not before.
        let mut next = schedule(2_000, 8_000, 3_000, 100);
        next.waivers.push(Waiver {
            first_period: 20,
            last_period: 29,
            wheeling: true,
            transaction: false,
        });
        chain
            .execute(
                c,
                reg,
                &ExecuteMsg::SetFees {
                    fees: next.clone(),
                    from_height: Some(10),
                },
                0,
            )
            .unwrap();
        let answer: FeesAnswer = chain.query(c, &QueryMsg::Fees {}).unwrap();
        assert_eq!(
            (answer.from_height, answer.fees.wheeling_island),
            (1, 5_000)
        );
        assert_eq!(answer.next.as_ref().map(|e| e.from_height), Some(10));
        chain.set_block(9, 1_700_000_009_000);
        assert_eq!(rates(&chain, 7), want);
        chain.set_block(10, 1_700_000_010_000);
        let later = rates(&chain, 7);
        assert_eq!(
            (later.wheeling_island, later.buyer_fee, later.seller_fee),
            (8_000, 3_000, 0),
            "all of the fee on the buyer at a 100% share"
        );
        // The waiver: periods 20..=29 pay no wheeling, the transaction fee still.
        let waived = rates(&chain, 25);
        assert_eq!(
            (
                waived.wheeling_feeder,
                waived.wheeling_island,
                waived.buyer_fee
            ),
            (0, 0, 3_000)
        );
        assert_eq!(rates(&chain, 30).wheeling_island, 8_000);
        // Never retroactive, only the regulator, only sane schedules: refused, nothing changes.
        let before = chain.storage(c);
        let err = chain
            .execute(
                c,
                reg,
                &ExecuteMsg::SetFees {
                    fees: schedule(0, 0, 0, 0),
                    from_height: Some(5),
                },
                0,
            )
            .unwrap_err();
        assert!(err.contains("never retroactive"), "{err}");
        let err = chain
            .execute(
                c,
                someone,
                &ExecuteMsg::SetFees {
                    fees: schedule(0, 0, 0, 0),
                    from_height: None,
                },
                0,
            )
            .unwrap_err();
        assert!(err.contains("only the regulator"), "{err}");
        for bad in [
            schedule(6, 5, 0, 0),
            schedule(0, 0, 0, 101),
            schedule(0, MAX_FEE + 1, 0, 0),
        ] {
            assert!(
                chain
                    .execute(
                        c,
                        reg,
                        &ExecuteMsg::SetFees {
                            fees: bad,
                            from_height: None,
                        },
                        0,
                    )
                    .is_err()
            );
        }
        assert_eq!(chain.storage(c), before);
        // The history keeps both, in order.
        let history: Vec<FeeEntry> = chain.query(c, &QueryMsg::FeeHistory {}).unwrap();
        assert_eq!(
            history.iter().map(|e| e.from_height).collect::<Vec<_>>(),
            vec![1, 10]
        );
        assert_eq!(history[1].fees, next);
    }

    proptest! {
        #[test]
        fn the_fee_parts_add_up_to_the_fee(fee in 0u64..=MAX_FEE, share in 0u64..=100) {
            let r = schedule(0, 0, fee, share).rates(0);
            prop_assert_eq!(r.buyer_fee + r.seller_fee, fee);
            prop_assert!(r.buyer_fee * 100 <= fee * share);
        }

        #[test]
        fn price_stays_in_band_and_mu_in_bounds(supply in 0u64..1_000_000_000, demand in 0u64..1_000_000_000, slope in 0i64..5) {
            let mut p = params();
            p.mu_slope = Fixed::from_int(slope);
            let m = mu(&p, supply, demand).unwrap();
            prop_assert!(m >= p.mu_min && m <= p.mu_max);
            if supply < demand { prop_assert!(m >= Fixed::ONE); }
            if supply > demand { prop_assert!(m <= Fixed::ONE); }
            let f = price(&p, m).unwrap();
            prop_assert!(f >= p.f_min && f <= p.f_max);
        }
    }
}
