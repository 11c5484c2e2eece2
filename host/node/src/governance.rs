//! Regulators govern the market by proposal: upgrade a governed contract's code (with a dry
//! run when the proposal passes) or execute a message on it, at a height announced in advance.
//!
//! Lifecycle, all of it in events anyone can audit: `proposal_submitted` → votes →
//! `proposal_passed` (with the dry run's result and gas) or `proposal_rejected` → at the
//! enactment height, `proposal_enacted` or `proposal_failed` (the old code and state stay).

use crate::exec::{Executor, Fail, OpError, chain_event};
use borsh::{BorshDeserialize, BorshSerialize};
use gridledger_state::{StateRead, StateStack};
use gridledger_types::schema::{self, Roles};
use gridledger_types::{
    Address, ErrorCode, Event, GovAction, Hash32, Receipt, ReceiptError, codec,
};
use gridledger_vm::{BlockEnv, CallRequest, Entry, HostFault, ledger};
use serde::{Deserialize, Serialize};

/// Gas cap of a proposal's enactment (and of its dry run).
pub const ENACT_GAS: u64 = 2_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    Voting,
    /// Approved; the dry run of the enactment on the state at that moment gave this.
    Passed {
        dry_run_ok: bool,
        dry_run_gas: u64,
        dry_run_error: Option<String>,
    },
    Rejected,
    Enacted {
        gas: u64,
    },
    Failed {
        error: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Proposal {
    pub id: u64,
    pub proposer: Address,
    pub action: GovAction,
    pub enact_height: u64,
    pub submitted_height: u64,
    pub approvals: Vec<Address>,
    pub rejections: Vec<Address>,
    pub status: Status,
}

fn next_key() -> Vec<u8> {
    schema::meta_key("gov/next")
}

pub fn proposal_key(id: u64) -> Vec<u8> {
    schema::meta_key(&format!("gov/proposal/{id:020}"))
}

fn enact_prefix() -> Vec<u8> {
    schema::meta_key("gov/enact/")
}

fn enact_key(height: u64, id: u64) -> Vec<u8> {
    schema::meta_key(&format!("gov/enact/{height:020}/{id:020}"))
}

/// Code hashes a contract ran before, for rollbacks.
fn history_key(contract: &Address) -> Vec<u8> {
    schema::meta_key(&format!("gov/history/{}", contract.to_hex()))
}

fn op(code: ErrorCode, msg: impl Into<String>) -> Fail {
    Fail::Op(OpError(code, msg.into(), 0))
}

fn decode<T: BorshDeserialize>(what: &'static str, b: &[u8]) -> Result<T, Fail> {
    codec::decode(what, b).map_err(|e| Fail::Host(HostFault(e.to_string())))
}

pub(crate) fn load(state: &dyn StateRead, id: u64) -> Result<Option<Proposal>, Fail> {
    match state.get(&proposal_key(id))? {
        Some(b) => Ok(Some(decode("proposal", &b)?)),
        None => Ok(None),
    }
}

/// How many proposals were ever made (their ids are 0 up to this).
pub(crate) fn proposal_count(state: &dyn StateRead) -> Result<u64, Fail> {
    match state.get(&next_key())? {
        Some(b) => decode("proposal counter", &b),
        None => Ok(0),
    }
}

fn save(state: &mut StateStack, p: &Proposal) {
    state.set(proposal_key(p.id), codec::encode(p));
}

fn history(state: &dyn StateRead, contract: &Address) -> Result<Vec<Hash32>, Fail> {
    match state.get(&history_key(contract))? {
        Some(b) => decode("history", &b),
        None => Ok(Vec::new()),
    }
}

fn require_regulator(state: &dyn StateRead, who: &Address) -> Result<(), Fail> {
    if ledger::roles(state, who)?.has(Roles::REGULATOR) {
        Ok(())
    } else {
        Err(op(
            ErrorCode::Unauthorized,
            "only regulators may propose and vote",
        ))
    }
}

/// Checks that an action can be performed now (at proposal time and again at enactment).
fn check_action(state: &dyn StateRead, action: &GovAction) -> Result<(), Fail> {
    let contract = match action {
        GovAction::Upgrade { contract, .. } | GovAction::Execute { contract, .. } => contract,
    };
    let info = ledger::contract(state, contract)?.ok_or_else(|| {
        op(
            ErrorCode::NotFound,
            format!("no contract at {}", contract.to_hex()),
        )
    })?;
    if info.admin != Some(Address::governance()) {
        return Err(op(
            ErrorCode::Unauthorized,
            format!(
                "contract {} is not governed (its admin is not the governance address)",
                contract.to_hex()
            ),
        ));
    }
    if let GovAction::Upgrade {
        code_hash,
        rollback,
        ..
    } = action
    {
        let code = ledger::code(state, code_hash)?.ok_or_else(|| {
            op(
                ErrorCode::NotFound,
                format!("no code {}; store it first", code_hash.to_hex()),
            )
        })?;
        if code.name != info.name {
            return Err(op(
                ErrorCode::InvalidInput,
                format!(
                    "new code is contract {:?}, the contract is {:?}",
                    code.name, info.name
                ),
            ));
        }
        if *rollback {
            if !history(state, contract)?.contains(code_hash) {
                return Err(op(
                    ErrorCode::InvalidInput,
                    "a rollback must name code this contract ran before",
                ));
            }
        } else if code.version <= info.version {
            return Err(op(
                ErrorCode::InvalidInput,
                format!(
                    "new code must declare a higher version of {}: it declares v{}, the contract runs v{}",
                    info.name, code.version, info.version
                ),
            ));
        }
    }
    Ok(())
}

fn tally_event(kind: &str, p: &Proposal, extra: &[(&str, String)]) -> Event {
    let mut attrs = vec![
        ("id", p.id.to_string()),
        ("approvals", p.approvals.len().to_string()),
        ("rejections", p.rejections.len().to_string()),
    ];
    attrs.extend(extra.iter().cloned());
    chain_event(kind, &attrs)
}

impl Executor {
    pub(crate) fn propose(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        sender: Address,
        action: &GovAction,
        enact_height: u64,
        budget: u64,
    ) -> Result<(Vec<u8>, Vec<Event>, u64), Fail> {
        require_regulator(state, &sender)?;
        if enact_height <= block.height {
            return Err(op(
                ErrorCode::InvalidInput,
                format!(
                    "enactment height {enact_height} must be after the current height {}",
                    block.height
                ),
            ));
        }
        check_action(state, action)?;
        let id: u64 = match state.get(&next_key())? {
            Some(b) => decode("proposal counter", &b)?,
            None => 0,
        };
        state.set(next_key(), codec::encode(&(id + 1)));
        let mut p = Proposal {
            id,
            proposer: sender,
            action: action.clone(),
            enact_height,
            submitted_height: block.height,
            approvals: vec![sender],
            rejections: Vec::new(),
            status: Status::Voting,
        };
        let kind = match action {
            GovAction::Upgrade { rollback: true, .. } => "rollback",
            GovAction::Upgrade { .. } => "upgrade",
            GovAction::Execute { .. } => "execute",
        };
        let mut events = vec![tally_event(
            "proposal_submitted",
            &p,
            &[
                ("kind", kind.into()),
                ("enact_height", enact_height.to_string()),
                ("proposer", sender.to_hex()),
            ],
        )];
        let (more, gas) = self.tally(block, state, &mut p, budget)?;
        events.extend(more);
        save(state, &p);
        Ok((
            serde_json::json!({"proposal": id}).to_string().into_bytes(),
            events,
            gas,
        ))
    }

    pub(crate) fn vote(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        sender: Address,
        id: u64,
        approve: bool,
        budget: u64,
    ) -> Result<(Vec<u8>, Vec<Event>, u64), Fail> {
        require_regulator(state, &sender)?;
        let mut p =
            load(state, id)?.ok_or_else(|| op(ErrorCode::NotFound, format!("no proposal {id}")))?;
        if p.status != Status::Voting {
            return Err(op(
                ErrorCode::InvalidInput,
                format!("proposal {id} is no longer open for votes"),
            ));
        }
        if p.approvals.contains(&sender) || p.rejections.contains(&sender) {
            return Err(op(
                ErrorCode::InvalidInput,
                format!("{} already voted on proposal {id}", sender.to_hex()),
            ));
        }
        if approve {
            p.approvals.push(sender);
        } else {
            p.rejections.push(sender);
        }
        let mut events = vec![tally_event(
            "proposal_vote",
            &p,
            &[("voter", sender.to_hex()), ("approve", approve.to_string())],
        )];
        let (more, gas) = self.tally(block, state, &mut p, budget)?;
        events.extend(more);
        save(state, &p);
        Ok((Vec::new(), events, gas))
    }

    /// Passes (with a dry run) or rejects a proposal whose votes decide it. The dry run is
    /// paid by the transaction that decides it, from its `budget`: one that runs out of that
    /// fails the transaction (nothing is recorded; send it with more gas), rather than being
    /// recorded as the enactment's failure or computed for free.
    fn tally(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        p: &mut Proposal,
        budget: u64,
    ) -> Result<(Vec<Event>, u64), Fail> {
        let quorum = self.params.gov_quorum as usize;
        if p.approvals.len() >= quorum {
            // Dry run on the state as it is now, thrown away afterwards.
            state.push_layer();
            let dry = self.perform(block, state, &p.action, budget.min(ENACT_GAS));
            state.discard_layer();
            let (ok, gas, error) = match dry {
                Err(Fail::Op(OpError(ErrorCode::OutOfGas, _, gas))) if budget < ENACT_GAS => {
                    return Err(Fail::Op(OpError(
                        ErrorCode::OutOfGas,
                        format!(
                            "the enactment's dry run needs more than the {budget} gas this transaction has left; send it with more"
                        ),
                        gas,
                    )));
                }
                Ok((gas, _)) => (true, gas, None),
                Err(Fail::Op(OpError(_, msg, gas))) => (false, gas, Some(msg)),
                Err(Fail::Host(h)) => return Err(Fail::Host(h)),
            };
            p.status = Status::Passed {
                dry_run_ok: ok,
                dry_run_gas: gas,
                dry_run_error: error.clone(),
            };
            state.set(
                enact_key(p.enact_height.max(block.height + 1), p.id),
                Vec::new(),
            );
            return Ok((
                vec![tally_event(
                    "proposal_passed",
                    p,
                    &[
                        ("enact_height", p.enact_height.to_string()),
                        ("dry_run_ok", ok.to_string()),
                        ("dry_run_gas", gas.to_string()),
                        ("dry_run_error", error.unwrap_or_default()),
                    ],
                )],
                gas,
            ));
        }
        let regulators = self.params.gov_regulators as usize;
        if p.rejections.len() > regulators.saturating_sub(quorum) {
            p.status = Status::Rejected;
            return Ok((vec![tally_event("proposal_rejected", p, &[])], 0));
        }
        Ok((Vec::new(), 0))
    }

    /// Performs an action as governance. Returns the gas used and the contract's events.
    fn perform(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        action: &GovAction,
        gas_limit: u64,
    ) -> Result<(u64, Vec<Event>), Fail> {
        check_action(state, action)?;
        let governance = Address::governance();
        let (contract, entry, msg) = match action {
            GovAction::Upgrade {
                contract,
                code_hash,
                msg,
                ..
            } => {
                let mut info = ledger::contract(state, contract)?
                    .ok_or_else(|| op(ErrorCode::NotFound, "contract vanished"))?;
                let code = ledger::code(state, code_hash)?
                    .ok_or_else(|| op(ErrorCode::NotFound, "code vanished"))?;
                let mut hist = history(state, contract)?;
                if !hist.contains(&info.code_hash) {
                    hist.push(info.code_hash);
                }
                state.set(history_key(contract), codec::encode(&hist));
                info.code_hash = *code_hash;
                info.name = code.name;
                info.version = code.version;
                state.set(schema::contract_key(contract), codec::encode(&info));
                (*contract, Entry::Migrate, msg)
            }
            GovAction::Execute { contract, msg } => (*contract, Entry::Execute, msg),
        };
        let out = self.vm.call(
            block,
            state,
            CallRequest {
                contract,
                entry,
                caller: Some(governance),
                funds: 0,
                msg,
                gas_limit,
            },
        )?;
        match out.result {
            Ok(_) => Ok((out.gas_used, out.events)),
            Err(e) => Err(Fail::Op(OpError(e.code(), e.to_string(), out.gas_used))),
        }
    }

    /// Enacts every passed proposal due at this height. One system receipt each.
    pub fn enact_due(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
    ) -> Result<Vec<Receipt>, HostFault> {
        let due: Vec<Vec<u8>> = state
            .scan(&enact_prefix(), None, 64, false)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| {
                let tail = &k[enact_prefix().len()..];
                std::str::from_utf8(&tail[..20.min(tail.len())])
                    .ok()
                    .and_then(|h| h.parse::<u64>().ok())
                    .is_some_and(|h| h <= block.height)
            })
            .collect();
        let mut receipts = Vec::new();
        for key in due {
            state.remove(key.clone());
            let id: Option<u64> = std::str::from_utf8(&key[key.len() - 20..])
                .ok()
                .and_then(|s| s.parse().ok());
            let Some(id) = id else { continue };
            let mut p = match load(state, id) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(Fail::Host(h)) => return Err(h),
                Err(Fail::Op(_)) => continue,
            };
            state.push_layer();
            let result = self.perform(block, state, &p.action, ENACT_GAS);
            let (gas, error, events) = match result {
                Ok((gas, mut events)) => {
                    state.commit_layer();
                    p.status = Status::Enacted { gas };
                    events.insert(
                        0,
                        tally_event("proposal_enacted", &p, &[("gas", gas.to_string())]),
                    );
                    (gas, None, events)
                }
                Err(Fail::Op(OpError(code, msg, gas))) => {
                    state.discard_layer();
                    p.status = Status::Failed { error: msg.clone() };
                    (
                        gas,
                        Some(ReceiptError {
                            code,
                            message: msg.clone(),
                        }),
                        vec![tally_event("proposal_failed", &p, &[("error", msg)])],
                    )
                }
                Err(Fail::Host(h)) => {
                    state.discard_layer();
                    return Err(h);
                }
            };
            save(state, &p);
            let tx_hash = Hash32::tagged(
                b"gridledger/enactment/v1",
                &[&block.height.to_be_bytes(), &id.to_be_bytes()],
            );
            // The failure is on record in the proposal and the event; the receipt says what failed.
            receipts.push(Receipt {
                tx_hash,
                gas_used: gas,
                fee: 0,
                error,
                events,
                result: Vec::new(),
            });
        }
        Ok(receipts)
    }
}
