//! Misbehaves on request, so tests can check that each kind of misbehaviour becomes a clear,
//! failed receipt that changes nothing.

use gridledger_sdk::prelude::*;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecuteMsg {
    /// Writes a key and succeeds.
    Put { key: String, value: String },
    /// Writes a key, then fails with a contract error.
    PutThenFail { key: String },
    /// Writes a key, then loops forever.
    PutThenLoop { key: String },
    /// Recurses without bound.
    Recurse {},
    /// Allocates `mib` MiB.
    Grow { mib: u32 },
    /// Panics (a wasm trap).
    Panic {},
    /// Answers bytes that are not JSON.
    Garbage {},
    /// Sends tokens from the contract.
    Send { to: Address, amount: u64 },
    /// Calls itself recursively through the host, `depth` times.
    CallSelf { depth: u32 },
    /// Calls itself through the host `depth` times, then recurses without bound at the
    /// bottom: the deepest native stack a transaction can ask for.
    NestThenRecurse { depth: u32 },
    /// Emits `count` events, each with one attribute of `bytes` bytes.
    Emit { count: u32, bytes: u32 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryMsg {
    Get {
        key: String,
    },
    /// A query that tries to write.
    Write {},
    /// A query that computes until its gas runs out.
    Spin {},
    /// Every stored entry after `after`, in key order or reversed (tests of scan paging).
    List {
        after: Option<String>,
        descending: bool,
    },
}

const KV: Map<String, String> = Map::new("kv");

pub struct Misbehave;

// Recursing forever is the point: the VM must stop it with a trap.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(n: u64, sink: &mut [u64; 16]) -> u64 {
    sink[(n % 16) as usize] = n;
    let r = recurse(n + 1, sink);
    r.wrapping_add(sink[(n % 7) as usize])
}

impl Contract for Misbehave {
    const NAME: &'static str = "misbehave";
    const VERSION: u32 = 1;
    type InstantiateMsg = NoMsg;
    type ExecuteMsg = ExecuteMsg;
    type QueryMsg = QueryMsg;
    type MigrateMsg = NoMsg;
    type SudoMsg = NoMsg;

    fn instantiate(_ctx: &mut Ctx, _msg: NoMsg) -> Result<Response> {
        Ok(Response::new())
    }

    fn execute(ctx: &mut Ctx, msg: ExecuteMsg) -> Result<Response> {
        match msg {
            ExecuteMsg::Put { key, value } => {
                KV.save(&key, &value)?;
                ctx.emit(Event::new("put").attr("key", key));
                Ok(Response::new())
            }
            ExecuteMsg::PutThenFail { key } => {
                KV.save(&key, &"x".to_string())?;
                fail!("failing on purpose after writing {key}")
            }
            ExecuteMsg::PutThenLoop { key } => {
                KV.save(&key, &"x".to_string())?;
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            ExecuteMsg::Recurse {} => {
                let mut sink = [0u64; 16];
                Response::json(&recurse(0, &mut sink))
            }
            ExecuteMsg::Grow { mib } => {
                let v = vec![1u8; (mib as usize) << 20];
                Response::json(&std::hint::black_box(v).len())
            }
            ExecuteMsg::Panic {} => panic!("panicking on purpose"),
            ExecuteMsg::Garbage {} => Ok(Response {
                data: vec![0xff, 0x00, 0x13],
            }),
            ExecuteMsg::Send { to, amount } => {
                ctx.transfer(&to, amount)?;
                Ok(Response::new())
            }
            ExecuteMsg::CallSelf { depth } => {
                if depth == 0 {
                    return Response::json(&0);
                }
                let me = ctx.address();
                let data = ctx.call_contract(&me, &ExecuteMsg::CallSelf { depth: depth - 1 }, 0)?;
                Ok(Response { data })
            }
            ExecuteMsg::Emit { count, bytes } => {
                let value = "x".repeat(bytes as usize);
                for _ in 0..count {
                    ctx.emit(Event {
                        kind: "spam".into(),
                        attributes: vec![("v".into(), value.clone())],
                    });
                }
                Response::json(&count)
            }
            ExecuteMsg::NestThenRecurse { depth } => {
                if depth == 0 {
                    let mut sink = [0u64; 16];
                    return Response::json(&recurse(0, &mut sink));
                }
                let me = ctx.address();
                let data =
                    ctx.call_contract(&me, &ExecuteMsg::NestThenRecurse { depth: depth - 1 }, 0)?;
                Ok(Response { data })
            }
        }
    }

    fn query(_ctx: &Ctx, msg: QueryMsg) -> Result<Response> {
        match msg {
            QueryMsg::Get { key } => Response::json(&KV.may_load(&key)?),
            QueryMsg::List { after, descending } => {
                let order = if descending {
                    Order::Descending
                } else {
                    Order::Ascending
                };
                let listed: Result<Vec<(String, String)>> =
                    KV.range(after.as_ref(), order).collect();
                Response::json(&listed?)
            }
            QueryMsg::Spin {} => {
                let mut sink = [0u64; 16];
                let mut i = 0u64;
                loop {
                    i = i.wrapping_add(1);
                    sink[(i % 16) as usize] = i;
                    if sink[3] == u64::MAX {
                        return Response::json(&sink[0]);
                    }
                }
            }
            QueryMsg::Write {} => {
                KV.save(&"q".to_string(), &"x".to_string())?;
                Ok(Response::new())
            }
        }
    }
}

export_contract!(Misbehave);
