//! Pricing v2, as a governance test fixture: the same rules as `pricing` v1, a higher version,
//! and a `migrate` that sets new parameters or, on request, fails.

use gridledger_sdk::prelude::*;
use pricing::Pricing;

#[derive(Serialize, Deserialize)]
pub struct MigrateMsg {
    #[serde(default)]
    pub params: Option<pricing::Params>,
    /// Fail the migration (to test that a failed enactment changes nothing).
    #[serde(default)]
    pub fail: bool,
}

pub struct PricingNext;

impl Contract for PricingNext {
    const NAME: &'static str = "pricing";
    const VERSION: u32 = 2;
    type InstantiateMsg = pricing::InstantiateMsg;
    type ExecuteMsg = pricing::ExecuteMsg;
    type QueryMsg = pricing::QueryMsg;
    type MigrateMsg = MigrateMsg;
    type SudoMsg = NoMsg;

    fn instantiate(ctx: &mut Ctx, msg: Self::InstantiateMsg) -> Result<Response> {
        Pricing::instantiate(ctx, msg)
    }

    fn execute(ctx: &mut Ctx, msg: Self::ExecuteMsg) -> Result<Response> {
        Pricing::execute(ctx, msg)
    }

    fn query(ctx: &Ctx, msg: Self::QueryMsg) -> Result<Response> {
        Pricing::query(ctx, msg)
    }

    fn migrate(ctx: &mut Ctx, msg: MigrateMsg) -> Result<Response> {
        ensure!(!msg.fail, "migration refused on request");
        let r = Pricing::migrate(ctx, pricing::MigrateMsg { params: msg.params })?;
        ctx.emit(Event::new("pricing_migrated").attr("version", Self::VERSION));
        Ok(r)
    }
}

export_contract!(PricingNext);
