//! Regulators upgrade pricing by proposal: guards, dry run, enactment at the announced height,
//! failed enactment, rollback, parameter change, and who may take part.

use gridledger_node::genesis::{GenesisAccount, GenesisContract};
use gridledger_node::governance::Status;
use gridledger_node::testing::{TestChain, test_genesis};
use gridledger_types::{Address, ErrorCode, GovAction, Hash32, Keypair, Payload, Receipt};
use std::path::Path;

fn regulator(n: u32) -> Keypair {
    Keypair::from_seed_phrase(&format!("gov regulator-{n}"))
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/contracts")
            .join(format!("{name}.wasm")),
    )
    .expect("built contracts")
}

const PARAMS: &str = r#"{"f_min":100000,"f_max":400000,"reference_price":200000,"mu_min":"0.5","mu_max":"1.5","mu_slope":"1","shortfall_penalty":50000,"overdraw_penalty":40000,"grid_tariff":300000,"mechanism":"pay_as_clear"}"#;

struct Gov {
    chain: TestChain,
    pricing: Address,
    v1: Hash32,
    v2: Hash32,
}

fn setup() -> Gov {
    let accounts = (1..=3)
        .map(|n| GenesisAccount {
            name: format!("regulator-{n}"),
            address: None,
            dev_seed: Some(format!("gov regulator-{n}")),
            balance: 1_000_000_000,
            roles: vec!["regulator".into()],
        })
        .collect();
    let mut genesis = test_genesis(accounts);
    genesis.contracts = vec![GenesisContract {
        label: "pricing".into(),
        wasm: "pricing.wasm".into(),
        msg: format!(r#"{{"params":{PARAMS},"admin":"{{governance}}"}}"#),
        funds: 0,
        creator: "regulator-1".into(),
        admin: Some("governance".into()),
    }];
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    let mut chain = TestChain::with_genesis(genesis, &contracts);
    let pricing = chain.node.contract_by_label("pricing").unwrap().unwrap();
    let r1 = regulator(1);
    let v1 = chain.store_code(&r1, &wasm("pricing")).unwrap();
    let v2 = chain.store_code(&r1, &wasm("pricing-next")).unwrap();
    Gov {
        chain,
        pricing,
        v1,
        v2,
    }
}

impl Gov {
    fn height(&self) -> u64 {
        self.chain.node.head().height
    }

    fn propose(&mut self, who: &Keypair, action: GovAction, enact_height: u64) -> Receipt {
        self.chain.send(
            who,
            Payload::Propose {
                action,
                enact_height,
            },
        )
    }

    fn upgrade(&self, code_hash: Hash32, msg: &str, rollback: bool) -> GovAction {
        GovAction::Upgrade {
            contract: self.pricing,
            code_hash,
            msg: msg.as_bytes().to_vec(),
            rollback,
        }
    }

    fn status(&self, id: u64) -> Status {
        self.chain.node.proposal(id).unwrap().unwrap().status
    }

    fn version(&self) -> serde_json::Value {
        let v: serde_json::Value = reqless_contract(&self.chain, self.pricing);
        v["version"].clone()
    }

    /// Produces blocks until `height` and returns every receipt's events on the way.
    fn advance_to(&mut self, height: u64) -> Vec<String> {
        let mut kinds = Vec::new();
        while self.height() < height {
            let t = self.chain.time_ms() + 1000;
            let b = self.chain.block_at(t);
            kinds.extend(
                b.receipts
                    .iter()
                    .flat_map(|r| r.events.iter().map(|e| e.kind.clone())),
            );
        }
        kinds
    }
}

fn reqless_contract(chain: &TestChain, at: Address) -> serde_json::Value {
    let snap = chain.node.snapshot().unwrap();
    let info = gridledger_vm::ledger::contract(&snap, &at)
        .unwrap()
        .unwrap();
    serde_json::json!({"version": info.version, "code_hash": info.code_hash.to_hex()})
}

#[test]
fn an_upgrade_passes_dry_runs_and_is_enacted_at_the_announced_height() {
    let mut g = setup();
    let (r1, r2) = (regulator(1), regulator(2));
    let enact = g.height() + 6;
    let r = g.propose(&r1, g.upgrade(g.v2, "{}", false), enact);
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(r.events[0].kind, "proposal_submitted");
    assert_eq!(g.status(0), Status::Voting);
    let r = g.chain.send(
        &r2,
        Payload::Vote {
            proposal: 0,
            approve: true,
        },
    );
    assert!(r.is_success(), "{:?}", r.error);
    let passed = r
        .events
        .iter()
        .find(|e| e.kind == "proposal_passed")
        .expect("quorum of 2 reached");
    assert!(
        passed
            .attributes
            .contains(&("dry_run_ok".into(), "true".into()))
    );
    assert!(
        matches!(g.status(0), Status::Passed { dry_run_ok: true, dry_run_gas, .. } if dry_run_gas > 0)
    );
    // Announced, not yet enacted: still v1.
    assert_eq!(g.version(), 1);
    let kinds = g.advance_to(enact);
    assert!(kinds.contains(&"proposal_enacted".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"pricing_migrated".to_string()),
        "the new code's migrate ran: {kinds:?}"
    );
    assert_eq!(g.version(), 2);
    assert!(matches!(g.status(0), Status::Enacted { .. }));
    // The contract still answers.
    assert_eq!(
        g.chain
            .query(g.pricing, r#"{"price":{"period":1}}"#)
            .unwrap()["price"],
        200000
    );

    // Rolling back to the previous code is allowed by naming it as a rollback.
    let back = g.height() + 3;
    assert!(
        g.propose(&r1, g.upgrade(g.v1, "{}", true), back)
            .is_success()
    );
    assert!(
        g.chain
            .send(
                &r2,
                Payload::Vote {
                    proposal: 1,
                    approve: true
                }
            )
            .is_success()
    );
    g.advance_to(back);
    assert_eq!(g.version(), 1);
}

/// The dry run a deciding vote triggers is paid by that vote, from its own gas: a vote without
/// enough gas for it fails with `out_of_gas` and changes nothing (the proposal stays open, the
/// vote unrecorded); with enough, its receipt counts the dry run's gas. (It used to run up to
/// 2·10⁹ gas inside a vote charged nothing.)
#[test]
fn the_dry_run_is_paid_by_the_deciding_vote() {
    let mut g = setup();
    let (r1, r2) = (regulator(1), regulator(2));
    let enact = g.height() + 6;
    let r = g.propose(&r1, g.upgrade(g.v2, "{}", false), enact);
    assert!(r.is_success(), "{:?}", r.error);
    let vote = Payload::Vote {
        proposal: 0,
        approve: true,
    };
    // Enough for the vote itself, not for the migration's dry run.
    let short = g.chain.sign(&r2, vote.clone(), 30_000);
    let r = g.chain.submit_bytes(&short.encode()).expect("admitted");
    let e = r.error.clone().unwrap_or_else(|| {
        panic!(
            "the vote must fail: {:?} {:?} {:?}",
            r.gas_used,
            r.events.iter().map(|e| &e.attributes).collect::<Vec<_>>(),
            g.status(0)
        )
    });
    assert_eq!(e.code, ErrorCode::OutOfGas, "{}", e.message);
    assert!(e.message.contains("dry run"), "{}", e.message);
    assert_eq!(g.status(0), Status::Voting, "nothing recorded");
    let r = g.chain.send(&r2, vote);
    assert!(r.is_success(), "{:?}", r.error);
    let Status::Passed { dry_run_gas, .. } = g.status(0) else {
        panic!("passed");
    };
    assert!(r.gas_used > dry_run_gas, "{} > {dry_run_gas}", r.gas_used);
}

#[test]
fn a_failing_migration_is_recorded_and_changes_nothing() {
    let mut g = setup();
    let (r1, r2) = (regulator(1), regulator(2));
    let enact = g.height() + 4;
    assert!(
        g.propose(&r1, g.upgrade(g.v2, r#"{"fail":true}"#, false), enact)
            .is_success()
    );
    let r = g.chain.send(
        &r2,
        Payload::Vote {
            proposal: 0,
            approve: true,
        },
    );
    assert!(
        matches!(g.status(0), Status::Passed { dry_run_ok: false, dry_run_error: Some(ref e), .. } if e.contains("refused on request")),
        "{:?}",
        r.events
    );
    let before = reqless_contract(&g.chain, g.pricing);
    let kinds = g.advance_to(enact);
    assert!(kinds.contains(&"proposal_failed".to_string()), "{kinds:?}");
    assert!(
        matches!(g.status(0), Status::Failed { ref error } if error.contains("refused on request"))
    );
    assert_eq!(
        reqless_contract(&g.chain, g.pricing),
        before,
        "old code stays"
    );
}

#[test]
fn guards_on_who_and_what() {
    let mut g = setup();
    let r1 = regulator(1);
    let outsider = g.chain.account("outsider", 1_000_000_000);
    let h = g.height() + 50;
    let e = g
        .propose(&outsider, g.upgrade(g.v2, "{}", false), h)
        .error
        .unwrap();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    // Same version (v1 → v1) is not an upgrade; rollback to code never run is refused.
    let e = g
        .propose(&r1, g.upgrade(g.v1, "{}", false), h)
        .error
        .unwrap();
    assert!(e.message.contains("higher version"), "{}", e.message);
    let e = g
        .propose(&r1, g.upgrade(g.v2, "{}", true), h)
        .error
        .unwrap();
    assert!(e.message.contains("ran before"), "{}", e.message);
    // Another contract's code.
    let counter = g.chain.store_code(&r1, &wasm("counter")).unwrap();
    let e = g
        .propose(&r1, g.upgrade(counter, "{}", false), h)
        .error
        .unwrap();
    assert!(e.message.contains("\"counter\""), "{}", e.message);
    // Enactment must be in the future.
    let e = g
        .propose(&r1, g.upgrade(g.v2, "{}", false), 1)
        .error
        .unwrap();
    assert!(e.message.contains("must be after"), "{}", e.message);
    // Votes: outsiders, twice, unknown proposals.
    assert!(
        g.propose(&r1, g.upgrade(g.v2, "{}", false), g.height() + 20)
            .is_success()
    );
    assert_eq!(
        g.chain
            .send(
                &outsider,
                Payload::Vote {
                    proposal: 0,
                    approve: true
                }
            )
            .error
            .unwrap()
            .code,
        ErrorCode::Unauthorized
    );
    assert!(
        g.chain
            .send(
                &r1,
                Payload::Vote {
                    proposal: 0,
                    approve: true
                }
            )
            .error
            .unwrap()
            .message
            .contains("already voted")
    );
    assert_eq!(
        g.chain
            .send(
                &r1,
                Payload::Vote {
                    proposal: 9,
                    approve: true
                }
            )
            .error
            .unwrap()
            .code,
        ErrorCode::NotFound
    );
    // Two rejections out of three regulators: the proposal cannot pass.
    assert!(
        g.chain
            .send(
                &regulator(2),
                Payload::Vote {
                    proposal: 0,
                    approve: false
                }
            )
            .is_success()
    );
    let r = g.chain.send(
        &regulator(3),
        Payload::Vote {
            proposal: 0,
            approve: false,
        },
    );
    assert!(r.events.iter().any(|e| e.kind == "proposal_rejected"));
    assert_eq!(g.status(0), Status::Rejected);
    // And nobody can set pricing parameters directly: pricing's admin is governance.
    let direct = g.chain.execute(
        &r1,
        g.pricing,
        &format!(r#"{{"set_params":{{"params":{PARAMS}}}}}"#),
        0,
    );
    assert!(direct.error.unwrap().message.contains("only the regulator"));
}

#[test]
fn a_parameter_change_by_proposal() {
    let mut g = setup();
    let (r1, r2) = (regulator(1), regulator(2));
    let new = PARAMS.replace("\"f_max\":400000", "\"f_max\":350000");
    let action = GovAction::Execute {
        contract: g.pricing,
        msg: format!(r#"{{"set_params":{{"params":{new}}}}}"#).into_bytes(),
    };
    let enact = g.height() + 3;
    assert!(g.propose(&r1, action, enact).is_success());
    assert!(
        g.chain
            .send(
                &r2,
                Payload::Vote {
                    proposal: 0,
                    approve: true
                }
            )
            .is_success()
    );
    assert_eq!(
        g.chain.query(g.pricing, r#"{"params":{}}"#).unwrap()["f_max"],
        400000
    );
    g.advance_to(enact);
    assert_eq!(
        g.chain.query(g.pricing, r#"{"params":{}}"#).unwrap()["f_max"],
        350000
    );
}
