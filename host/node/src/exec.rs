//! Transaction execution: admission rules, fees, and the native operations.
//!
//! A transaction either is *rejected* (never enters a block, changes nothing, the API says
//! why) or is *included* and gets a receipt. An included transaction always bumps the
//! sender's nonce and pays for the gas it used; if its operation fails, everything else it
//! did is discarded.

use gridledger_state::{StateRead, StateStack};
use gridledger_types::schema::{self, CodeEntry, ContractInfo, Roles};
use gridledger_types::{
    Address, ErrorCode, Event, Hash32, Payload, Receipt, ReceiptError, SignedTx, codec,
};
use gridledger_vm::{BlockEnv, CallRequest, Entry, HostFault, Vm, code_hash, ledger};

/// Why a transaction was turned away before execution.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("wrong chain id: transaction is for {got:?}, this chain is {want:?}")]
    WrongChain { got: String, want: String },
    #[error("nonce {got} was already used (next is {want})")]
    NonceReplayed { got: u64, want: u64 },
    #[error("nonce {got} skips ahead (next is {want})")]
    NonceGap { got: u64, want: u64 },
    #[error("gas limit {got} is below the {need} this transaction needs before it runs")]
    GasTooLow { got: u64, need: u64 },
    #[error("gas limit {got} is above the chain's {max} per transaction")]
    GasTooHigh { got: u64, max: u64 },
    #[error("balance {balance} cannot pay the maximum fee {fee}")]
    CannotPayFee { balance: u64, fee: u64 },
    #[error("busy: the mempool is full; retry shortly")]
    MempoolFull,
    #[error("the sender already has {max} transactions waiting; wait for some to be included")]
    TooManyPending { max: usize },
    #[error(
        "the sender already has {pending} bytes of transactions waiting (at most {max}); wait for some to be included"
    )]
    TooManyPendingBytes { pending: usize, max: usize },
    #[error("transaction is already pending")]
    Duplicate,
    #[error("{0} is a registered device: device keys sign meter readings, not transactions")]
    DeviceSender(Address),
}

impl Rejected {
    /// A stable identifier for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Rejected::Malformed(_) => "malformed",
            Rejected::BadSignature(_) => "bad_signature",
            Rejected::WrongChain { .. } => "wrong_chain_id",
            Rejected::NonceReplayed { .. } => "nonce_replayed",
            Rejected::NonceGap { .. } => "nonce_gap",
            Rejected::GasTooLow { .. } => "gas_limit_too_low",
            Rejected::GasTooHigh { .. } => "gas_limit_too_high",
            Rejected::CannotPayFee { .. } => "insufficient_fee_balance",
            Rejected::MempoolFull => "busy",
            Rejected::TooManyPending { .. } | Rejected::TooManyPendingBytes { .. } => {
                "too_many_pending"
            }
            Rejected::Duplicate => "duplicate",
            Rejected::DeviceSender(_) => "device_sender",
        }
    }
}

/// Chain-wide parameters from genesis.
#[derive(Clone, Debug)]
pub struct ChainParams {
    pub chain_id: String,
    pub gas_price_per_kgas: u64,
    /// Fees go here (the grid company).
    pub fee_collector: Address,
    /// Approvals that pass a governance proposal, and how many regulators there are.
    pub gov_quorum: u32,
    pub gov_regulators: u32,
    /// Meter reading rules; `None`: the chain takes no readings.
    pub readings: Option<crate::devices::ReadingRules>,
}

impl ChainParams {
    /// Fee for `gas`, rounded up.
    pub fn fee(&self, gas: u64) -> u64 {
        let f = (gas as u128 * self.gas_price_per_kgas as u128).div_ceil(1000);
        f.min(u64::MAX as u128) as u64
    }
}

pub struct Executor {
    pub vm: Vm,
    pub params: ChainParams,
    /// Senders' public keys, decompressed once.
    pub keys: gridledger_types::keys::KeyCache,
}

/// A failed operation: the receipt's error, and the gas it burnt before failing.
pub(crate) struct OpError(pub(crate) ErrorCode, pub(crate) String, pub(crate) u64);

/// What an operation asks of the executor when it fails for a host reason.
pub(crate) enum Fail {
    Op(OpError),
    Host(HostFault),
}

impl From<OpError> for Fail {
    fn from(e: OpError) -> Self {
        Fail::Op(e)
    }
}

impl From<HostFault> for Fail {
    fn from(e: HostFault) -> Self {
        Fail::Host(e)
    }
}

impl From<gridledger_state::ReadError> for Fail {
    fn from(e: gridledger_state::ReadError) -> Self {
        Fail::Host(e.into())
    }
}

impl From<ledger::TransferError> for Fail {
    fn from(e: ledger::TransferError) -> Self {
        match e {
            ledger::TransferError::Read(r) => Fail::Host(r.into()),
            ledger::TransferError::Insufficient { .. } => {
                Fail::Op(OpError(ErrorCode::InsufficientFunds, e.to_string(), 0))
            }
            ledger::TransferError::Overflow(_) => {
                Fail::Op(OpError(ErrorCode::InvalidInput, e.to_string(), 0))
            }
        }
    }
}

fn op(code: ErrorCode, msg: impl Into<String>) -> Fail {
    Fail::Op(OpError(code, msg.into(), 0))
}

/// Whether executing a transaction must check its signature. A node skips the check only for
/// the exact bytes it already verified when admitting them to its mempool (the transaction
/// hash covers the signature), so each validator checks each signature once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    Verify,
    AlreadyVerified,
}

/// The successful outcome of an operation.
pub(crate) struct Done {
    pub(crate) gas: u64,
    pub(crate) result: Vec<u8>,
    pub(crate) events: Vec<Event>,
}

impl Executor {
    /// Gas charged before anything runs: size of the transaction, plus code bytes.
    pub fn intrinsic_gas(&self, tx: &SignedTx, encoded_len: usize) -> u64 {
        let g = &self.vm.config().gas;
        let mut gas = g.tx_base + g.tx_per_byte * encoded_len as u64;
        if let Payload::StoreCode { wasm } = &tx.body.payload {
            gas += g.store_code_per_byte * wasm.len() as u64;
        }
        gas
    }

    /// The stateless checks: signature, chain id, gas floor.
    pub fn check_stateless(&self, tx: &SignedTx, encoded_len: usize) -> Result<(), Rejected> {
        self.check_stateless_as(tx, encoded_len, SignatureCheck::Verify)
    }

    /// [`Executor::check_stateless`] for many transactions, each answered as alone; their
    /// signatures are checked as one batch.
    pub fn check_stateless_batch(&self, txs: &[(&SignedTx, usize)]) -> Vec<Result<(), Rejected>> {
        let txs_only: Vec<&SignedTx> = txs.iter().map(|(t, _)| *t).collect();
        let signatures = self.check_signatures(&txs_only);
        txs.iter()
            .zip(signatures)
            .map(|((tx, len), signature)| self.check_stateless_with(tx, *len, || signature))
            .collect()
    }

    /// Each transaction's signature, checked as one batch.
    pub fn check_signatures(&self, txs: &[&SignedTx]) -> Vec<Result<(), String>> {
        let signing: Vec<Vec<u8>> = txs.iter().map(|t| t.body.signing_bytes()).collect();
        let items: Vec<_> = txs
            .iter()
            .zip(&signing)
            .map(|(t, msg)| (&t.body.sender, msg.as_slice(), &t.signature))
            .collect();
        self.keys.verify_batch(&items)
    }

    fn check_stateless_as(
        &self,
        tx: &SignedTx,
        encoded_len: usize,
        signature: SignatureCheck,
    ) -> Result<(), Rejected> {
        self.check_stateless_with(tx, encoded_len, || match signature {
            SignatureCheck::Verify => {
                self.keys
                    .verify(&tx.body.sender, &tx.body.signing_bytes(), &tx.signature)
            }
            SignatureCheck::AlreadyVerified => Ok(()),
        })
    }

    /// Chain id, then the signature (as `signature` answers), then the gas floor.
    fn check_stateless_with(
        &self,
        tx: &SignedTx,
        encoded_len: usize,
        signature: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), Rejected> {
        if tx.body.chain_id != self.params.chain_id {
            return Err(Rejected::WrongChain {
                got: tx.body.chain_id.clone(),
                want: self.params.chain_id.clone(),
            });
        }
        // Before the signature: refusing costs nothing, and execution refuses it the same way.
        let max = self.vm.config().limits.max_tx_gas;
        if tx.body.gas_limit > max {
            return Err(Rejected::GasTooHigh {
                got: tx.body.gas_limit,
                max,
            });
        }
        signature().map_err(Rejected::BadSignature)?;
        let need = self.intrinsic_gas(tx, encoded_len);
        if tx.body.gas_limit < need {
            return Err(Rejected::GasTooLow {
                got: tx.body.gas_limit,
                need,
            });
        }
        Ok(())
    }

    /// Checks against state: the nonce is the next one and the sender can pay the maximum fee.
    pub fn check_stateful(
        &self,
        state: &dyn StateRead,
        tx: &SignedTx,
        expected_nonce: u64,
    ) -> Result<(), Rejected> {
        let body = &tx.body;
        if body.nonce < expected_nonce {
            return Err(Rejected::NonceReplayed {
                got: body.nonce,
                want: expected_nonce,
            });
        }
        if body.nonce > expected_nonce {
            return Err(Rejected::NonceGap {
                got: body.nonce,
                want: expected_nonce,
            });
        }
        if state
            .get(&schema::device_key(&body.sender))
            .ok()
            .flatten()
            .is_some()
        {
            return Err(Rejected::DeviceSender(body.sender));
        }
        let balance = ledger::account(state, &body.sender)
            .map(|a| a.balance)
            .unwrap_or(0);
        let fee = self.params.fee(body.gas_limit);
        if balance < fee {
            return Err(Rejected::CannotPayFee { balance, fee });
        }
        Ok(())
    }

    /// Applies one admitted transaction. `Ok(Err(_))`: it turned out to be inadmissible here
    /// (e.g. nonce moved on) and must be left out of the block.
    pub fn apply(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        tx: &SignedTx,
        encoded_len: usize,
        signature: SignatureCheck,
    ) -> Result<Result<Receipt, Rejected>, HostFault> {
        let body = &tx.body;
        let mut sender = ledger::account(state, &body.sender)?;
        if let Err(r) = self
            .check_stateless_as(tx, encoded_len, signature)
            .and_then(|_| self.check_stateful(state, tx, sender.nonce))
        {
            return Ok(Err(r));
        }
        // Escrow the maximum fee and use the nonce; these stand whatever the operation does.
        let max_fee = self.params.fee(body.gas_limit);
        sender.balance -= max_fee;
        sender.nonce += 1;
        ledger::set_account(state, &body.sender, &sender);

        let intrinsic = self.intrinsic_gas(tx, encoded_len);
        let budget = body.gas_limit - intrinsic;
        state.push_layer();
        let outcome = self.operate(block, state, tx, budget);
        let (gas_used, result, events, error) = match outcome {
            Ok(done) => {
                state.commit_layer();
                (
                    intrinsic + done.gas.min(budget),
                    done.result,
                    done.events,
                    None,
                )
            }
            Err(Fail::Op(OpError(code, message, burnt))) => {
                state.discard_layer();
                // A failed call still pays for the gas it burnt.
                (
                    intrinsic + burnt.min(budget),
                    Vec::new(),
                    Vec::new(),
                    Some(ReceiptError { code, message }),
                )
            }
            Err(Fail::Host(h)) => {
                state.discard_layer();
                return Err(h);
            }
        };
        let fee = self.params.fee(gas_used).min(max_fee);
        let mut sender = ledger::account(state, &body.sender)?;
        sender.balance += max_fee - fee;
        ledger::set_account(state, &body.sender, &sender);
        if fee > 0 {
            let mut collector = ledger::account(state, &self.params.fee_collector)?;
            collector.balance = collector.balance.saturating_add(fee);
            ledger::set_account(state, &self.params.fee_collector, &collector);
        }
        Ok(Ok(Receipt {
            tx_hash: tx.hash(),
            gas_used,
            fee,
            error,
            events,
            result,
        }))
    }

    fn operate(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        tx: &SignedTx,
        budget: u64,
    ) -> Result<Done, Fail> {
        let sender = tx.body.sender;
        let none = |result: Vec<u8>| Done {
            gas: 0,
            result,
            events: Vec::new(),
        };
        match &tx.body.payload {
            Payload::Transfer { to, amount } => {
                if *amount == 0 {
                    return Err(op(
                        ErrorCode::InvalidInput,
                        "transfer amount must be positive",
                    ));
                }
                ledger::move_tokens(state, &sender, to, *amount)?;
                Ok(Done {
                    gas: 0,
                    result: Vec::new(),
                    events: vec![chain_event(
                        "transfer",
                        &[
                            ("from", sender.to_hex()),
                            ("to", to.to_hex()),
                            ("amount", amount.to_string()),
                        ],
                    )],
                })
            }
            Payload::StoreCode { wasm } => {
                let info = self
                    .vm
                    .validate_code(wasm)
                    .map_err(|e| op(ErrorCode::InvalidInput, format!("code refused: {e}")))?;
                let hash = code_hash(wasm);
                let key = schema::code_key(&hash);
                if state.get(&key)?.is_none() {
                    state.set(
                        key,
                        codec::encode(&CodeEntry {
                            name: info.name.clone(),
                            version: info.version,
                            wasm: wasm.clone(),
                        }),
                    );
                }
                let result = serde_json::json!({"code_hash": hash.to_hex(), "name": info.name, "version": info.version});
                Ok(none(result.to_string().into_bytes()))
            }
            Payload::Instantiate {
                code_hash,
                msg,
                funds,
                label,
                admin,
            } => {
                let contract = Address::contract(&sender, tx.body.nonce);
                let done = self.instantiate(
                    block, state, sender, contract, *code_hash, msg, *funds, label, *admin, budget,
                )?;
                let result = serde_json::json!({"contract": contract.to_hex(), "data": json_or_null(&done.result)});
                Ok(Done {
                    result: result.to_string().into_bytes(),
                    ..done
                })
            }
            Payload::Execute {
                contract,
                msg,
                funds,
            } => {
                if ledger::contract(state, contract)?.is_none() {
                    return Err(op(
                        ErrorCode::NotFound,
                        format!("no contract at {}", contract.to_hex()),
                    ));
                }
                if *funds > 0 {
                    ledger::move_tokens(state, &sender, contract, *funds)?;
                }
                self.call(
                    block,
                    state,
                    *contract,
                    Entry::Execute,
                    Some(sender),
                    *funds,
                    msg,
                    budget,
                )
            }
            Payload::Migrate {
                contract,
                code_hash,
                msg,
            } => {
                let Some(mut info) = ledger::contract(state, contract)? else {
                    return Err(op(
                        ErrorCode::NotFound,
                        format!("no contract at {}", contract.to_hex()),
                    ));
                };
                if info.admin != Some(sender) {
                    return Err(op(
                        ErrorCode::Unauthorized,
                        "only the contract's admin may migrate it",
                    ));
                }
                let Some(code) = ledger::code(state, code_hash)? else {
                    return Err(op(
                        ErrorCode::NotFound,
                        format!("no code {}", code_hash.to_hex()),
                    ));
                };
                info.code_hash = *code_hash;
                info.name = code.name;
                info.version = code.version;
                state.set(schema::contract_key(contract), codec::encode(&info));
                self.call(
                    block,
                    state,
                    *contract,
                    Entry::Migrate,
                    Some(sender),
                    0,
                    msg,
                    budget,
                )
            }
            Payload::Mint { to, amount } => {
                self.require_role(state, &sender, Roles::GRID_COMPANY, "mint")?;
                let mut acct = ledger::account(state, to)?;
                acct.balance = acct
                    .balance
                    .checked_add(*amount)
                    .ok_or_else(|| op(ErrorCode::InvalidInput, "balance would overflow"))?;
                ledger::set_account(state, to, &acct);
                adjust_supply(state, *amount as i128)?;
                Ok(Done {
                    gas: 0,
                    result: Vec::new(),
                    events: vec![chain_event(
                        "mint",
                        &[("to", to.to_hex()), ("amount", amount.to_string())],
                    )],
                })
            }
            Payload::Propose {
                action,
                enact_height,
            } => {
                let (result, events, gas) =
                    self.propose(block, state, sender, action, *enact_height, budget)?;
                Ok(Done {
                    gas,
                    result,
                    events,
                })
            }
            Payload::Vote { proposal, approve } => {
                let (result, events, gas) =
                    self.vote(block, state, sender, *proposal, *approve, budget)?;
                Ok(Done {
                    gas,
                    result,
                    events,
                })
            }
            Payload::RegisterDevice {
                device,
                owner,
                kind,
                rated_power_w,
            } => self.register_device(
                block,
                state,
                sender,
                *device,
                *owner,
                kind,
                *rated_power_w,
                budget,
            ),
            Payload::RevokeDevice { device } => self.revoke_device(state, sender, *device),
            Payload::Readings { readings } => self.readings(block, state, readings, budget),
            Payload::Burn { amount, payout_ref } => {
                self.require_role(state, &sender, Roles::GRID_COMPANY, "burn")?;
                let mut acct = ledger::account(state, &sender)?;
                if acct.balance < *amount {
                    return Err(op(
                        ErrorCode::InsufficientFunds,
                        format!("cannot burn {amount}: balance is {}", acct.balance),
                    ));
                }
                acct.balance -= amount;
                ledger::set_account(state, &sender, &acct);
                adjust_supply(state, -(*amount as i128))?;
                Ok(Done {
                    gas: 0,
                    result: Vec::new(),
                    events: vec![chain_event(
                        "burn",
                        &[
                            ("amount", amount.to_string()),
                            ("payout_ref", payout_ref.clone()),
                        ],
                    )],
                })
            }
        }
    }

    /// A call the chain makes by itself (a contract's `sudo`), gas-capped and fee-free. Its
    /// receipt is named by a hash of the height, contract and message.
    pub fn system_call(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        contract: Address,
        msg: &[u8],
        gas_limit: u64,
    ) -> Result<Receipt, HostFault> {
        let out = self.vm.call(
            block,
            state,
            CallRequest {
                contract,
                entry: Entry::Sudo,
                caller: None,
                funds: 0,
                msg,
                gas_limit,
            },
        )?;
        let tx_hash = Hash32::tagged(
            b"gridledger/system-call/v1",
            &[&block.height.to_be_bytes(), &contract.0, msg],
        );
        let (result, error) = match out.result {
            Ok(data) => (data, None),
            Err(e) => (
                Vec::new(),
                Some(ReceiptError {
                    code: e.code(),
                    message: e.to_string(),
                }),
            ),
        };
        Ok(Receipt {
            tx_hash,
            gas_used: out.gas_used,
            fee: 0,
            error,
            events: out.events,
            result,
        })
    }

    pub(crate) fn require_role(
        &self,
        state: &dyn StateRead,
        who: &Address,
        role: u8,
        what: &str,
    ) -> Result<(), Fail> {
        if ledger::roles(state, who)?.has(role) {
            Ok(())
        } else {
            Err(op(
                ErrorCode::Unauthorized,
                format!("{what} needs the {} role", Roles(role).names().join("/")),
            ))
        }
    }

    /// Creates a contract record and runs its instantiate entry point.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn instantiate(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        creator: Address,
        contract: Address,
        code_hash: Hash32,
        msg: &[u8],
        funds: u64,
        label: &str,
        admin: Option<Address>,
        budget: u64,
    ) -> Result<Done, Fail> {
        let Some(code) = ledger::code(state, &code_hash)? else {
            return Err(op(
                ErrorCode::NotFound,
                format!("no code {}", code_hash.to_hex()),
            ));
        };
        if ledger::contract(state, &contract)?.is_some() {
            return Err(op(
                ErrorCode::InvalidInput,
                format!("a contract already exists at {}", contract.to_hex()),
            ));
        }
        let info = ContractInfo {
            code_hash,
            creator,
            admin,
            label: label.to_string(),
            name: code.name,
            version: code.version,
        };
        state.set(schema::contract_key(&contract), codec::encode(&info));
        if funds > 0 {
            ledger::move_tokens(state, &creator, &contract, funds)?;
        }
        self.call(
            block,
            state,
            contract,
            Entry::Instantiate,
            Some(creator),
            funds,
            msg,
            budget,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call(
        &self,
        block: &BlockEnv,
        state: &mut StateStack,
        contract: Address,
        entry: Entry,
        caller: Option<Address>,
        funds: u64,
        msg: &[u8],
        budget: u64,
    ) -> Result<Done, Fail> {
        let out = self.vm.call(
            block,
            state,
            CallRequest {
                contract,
                entry,
                caller,
                funds,
                msg,
                gas_limit: budget,
            },
        )?;
        match out.result {
            Ok(result) => Ok(Done {
                gas: out.gas_used,
                result,
                events: out.events,
            }),
            Err(e) => Err(Fail::Op(OpError(e.code(), e.to_string(), out.gas_used))),
        }
    }
}

fn json_or_null(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn chain_event(kind: &str, attrs: &[(&str, String)]) -> Event {
    Event {
        contract: None,
        kind: kind.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn adjust_supply(state: &mut StateStack, delta: i128) -> Result<(), Fail> {
    let key = schema::meta_key(schema::META_SUPPLY);
    let current: u64 = match state.get(&key)? {
        Some(b) => codec::decode("supply", &b).map_err(|e| Fail::Host(HostFault(e.to_string())))?,
        None => 0,
    };
    let next = (current as i128 + delta).clamp(0, u64::MAX as i128) as u64;
    state.set(key, codec::encode(&next));
    Ok(())
}
