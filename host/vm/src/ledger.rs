//! Native token balances and the registry of code and contracts, as stored in state.
//!
//! Shared by the VM (contracts read balances and send tokens) and the node's executor.

use gridledger_state::{ReadError, StateRead, StateStack};
use gridledger_types::schema::{self, Account, CodeEntry, ContractInfo, Roles};
use gridledger_types::{Address, Hash32, codec};

/// The stored state does not decode: a node fault, never a transaction's.
fn corrupt(what: &str, e: impl std::fmt::Display) -> ReadError {
    ReadError(format!("stored {what} does not decode: {e}"))
}

pub fn account(state: &dyn StateRead, who: &Address) -> Result<Account, ReadError> {
    match state.get(&schema::account_key(who))? {
        Some(b) => codec::decode("account", &b).map_err(|e| corrupt("account", e)),
        None => Ok(Account::default()),
    }
}

pub fn set_account(state: &mut StateStack, who: &Address, acct: &Account) {
    state.set(schema::account_key(who), codec::encode(acct));
}

/// Why tokens could not move.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("insufficient funds: {account} has {balance}, needs {needed}")]
    Insufficient {
        account: String,
        balance: u64,
        needed: u64,
    },
    #[error("balance of {0} would overflow")]
    Overflow(String),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Moves `amount` from one account to another, or changes nothing.
pub fn move_tokens(
    state: &mut StateStack,
    from: &Address,
    to: &Address,
    amount: u64,
) -> Result<(), TransferError> {
    if amount == 0 || from == to {
        // Still check the balance so a self-transfer cannot "prove" funds it does not have.
        let a = account(state, from)?;
        if a.balance < amount {
            return Err(TransferError::Insufficient {
                account: from.to_hex(),
                balance: a.balance,
                needed: amount,
            });
        }
        return Ok(());
    }
    let mut a = account(state, from)?;
    let mut b = account(state, to)?;
    if a.balance < amount {
        return Err(TransferError::Insufficient {
            account: from.to_hex(),
            balance: a.balance,
            needed: amount,
        });
    }
    a.balance -= amount;
    b.balance = b
        .balance
        .checked_add(amount)
        .ok_or_else(|| TransferError::Overflow(to.to_hex()))?;
    set_account(state, from, &a);
    set_account(state, to, &b);
    Ok(())
}

pub fn contract(state: &dyn StateRead, addr: &Address) -> Result<Option<ContractInfo>, ReadError> {
    match state.get(&schema::contract_key(addr))? {
        Some(b) => codec::decode("contract", &b)
            .map(Some)
            .map_err(|e| corrupt("contract", e)),
        None => Ok(None),
    }
}

pub fn code(state: &dyn StateRead, hash: &Hash32) -> Result<Option<CodeEntry>, ReadError> {
    match state.get(&schema::code_key(hash))? {
        Some(b) => codec::decode("code", &b)
            .map(Some)
            .map_err(|e| corrupt("code", e)),
        None => Ok(None),
    }
}

pub fn roles(state: &dyn StateRead, who: &Address) -> Result<Roles, ReadError> {
    match state.get(&schema::roles_key(who))? {
        Some(b) => codec::decode("roles", &b).map_err(|e| corrupt("roles", e)),
        None => Ok(Roles::default()),
    }
}
