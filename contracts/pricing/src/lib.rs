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

impl Params {
    pub fn check(&self) -> Result<()> {
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
}

#[derive(Serialize, Deserialize)]
pub struct InstantiateMsg {
    pub params: Params,
    /// Who may change the parameters (the regulator).
    pub admin: Address,
}

#[derive(Serialize, Deserialize)]
pub struct MigrateMsg {
    pub params: Option<Params>,
}

const PARAMS: Item<Params> = Item::new("params");
const ADMIN: Item<Address> = Item::new("admin");

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

/// The figures of a period with forecast totals `supply` and `demand`, under `p`.
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

    fn instantiate(_ctx: &mut Ctx, msg: InstantiateMsg) -> Result<Response> {
        msg.params.check()?;
        PARAMS.save(&msg.params)?;
        ADMIN.save(&msg.admin)?;
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
        }
    }

    fn query(_ctx: &Ctx, msg: QueryMsg) -> Result<Response> {
        match msg {
            QueryMsg::Params {} => Response::json(&PARAMS.load()?),
            QueryMsg::Price {
                period,
                supply_wh,
                demand_wh,
            } => Response::json(&answer_for(&PARAMS.load()?, period, supply_wh, demand_wh)?),
            QueryMsg::Subsidy { mu, price, wh } => Response::json(&subsidy(mu, price, wh)?),
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
        let err = chain
            .execute(c, wind, &ExecuteMsg::SetParams { params: params() }, 0)
            .unwrap_err();
        assert!(err.contains("only the regulator"));
    }

    proptest! {
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
