//! The chain's rules, end to end through admission, execution and storage (in memory).
//! Each bad input gets a clear error and changes nothing (except the fee where one is due).

use gridledger_node::testing::{TEST_CHAIN_ID, TX_GAS, TestChain, test_genesis};
use gridledger_node::{Node, Rejected};
use gridledger_types::{Address, ErrorCode, Keypair, Payload, Signature, TxBody};
use std::path::Path;

fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/contracts")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `cargo run -p gridledger-build` first",
            path.display()
        )
    })
}

#[test]
fn transfer_moves_tokens_and_pays_the_fee() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let bob = Keypair::from_seed_phrase("bob");
    let gc = chain.grid_company.address();
    let gc_before = chain.balance(&gc);
    let r = chain.send(
        &alice,
        Payload::Transfer {
            to: bob.address(),
            amount: 400,
        },
    );
    assert!(r.is_success(), "{:?}", r.error);
    assert!(r.fee > 0);
    assert_eq!(chain.balance(&bob.address()), 400);
    assert_eq!(chain.balance(&alice.address()), 1_000_000 - 400 - r.fee);
    assert_eq!(chain.balance(&gc), gc_before + r.fee);
    assert_eq!(chain.nonce(&alice.address()), 1);
    assert_eq!(r.events[0].kind, "transfer");
}

/// A rejected transaction never reaches a block: the sender's balance and nonce stay put and
/// nothing waits in the mempool.
fn assert_rejected(
    chain: &mut TestChain,
    sender: &Keypair,
    bytes: &[u8],
    want: fn(&Rejected) -> bool,
) {
    let before = (
        chain.balance(&sender.address()),
        chain.nonce(&sender.address()),
    );
    let err = chain.node.submit(bytes).expect_err("must be rejected");
    assert!(want(&err), "unexpected rejection: {err}");
    assert!(!err.to_string().is_empty());
    chain.next_block();
    assert_eq!(
        (
            chain.balance(&sender.address()),
            chain.nonce(&sender.address())
        ),
        before
    );
    assert_eq!(chain.node.mempool_len(), 0);
}

#[test]
fn malformed_and_truncated_bytes_are_rejected() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let tx = chain
        .sign(
            &alice,
            Payload::Transfer {
                to: Address([1; 32]),
                amount: 1,
            },
            TX_GAS,
        )
        .encode();
    assert_rejected(&mut chain, &alice, b"", |e| {
        matches!(e, Rejected::Malformed(_))
    });
    assert_rejected(&mut chain, &alice, &tx[..tx.len() - 3], |e| {
        matches!(e, Rejected::Malformed(_))
    });
    let mut trailing = tx.clone();
    trailing.push(7);
    assert_rejected(&mut chain, &alice, &trailing, |e| {
        matches!(e, Rejected::Malformed(_))
    });
    assert_rejected(&mut chain, &alice, &[0xff; 300], |e| {
        matches!(e, Rejected::Malformed(_))
    });
}

#[test]
fn wrong_signature_and_wrong_chain_are_rejected() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let mut tx = chain.sign(
        &alice,
        Payload::Transfer {
            to: Address([1; 32]),
            amount: 1,
        },
        TX_GAS,
    );
    tx.signature = Signature([7; 64]);
    assert_rejected(&mut chain, &alice, &tx.encode(), |e| {
        matches!(e, Rejected::BadSignature(_))
    });
    // Signed by someone else while claiming to be alice.
    let mallory = Keypair::from_seed_phrase("mallory");
    let forged = TxBody {
        chain_id: TEST_CHAIN_ID.into(),
        sender: alice.address(),
        nonce: 1,
        gas_limit: TX_GAS,
        payload: Payload::Transfer {
            to: mallory.address(),
            amount: 5,
        },
    }
    .sign(&mallory);
    assert_rejected(&mut chain, &alice, &forged.encode(), |e| {
        matches!(e, Rejected::BadSignature(_))
    });
    let other_chain = TxBody {
        chain_id: "another-chain".into(),
        sender: alice.address(),
        nonce: 1,
        gas_limit: TX_GAS,
        payload: Payload::Transfer {
            to: mallory.address(),
            amount: 5,
        },
    }
    .sign(&alice);
    assert_rejected(&mut chain, &alice, &other_chain.encode(), |e| {
        matches!(e, Rejected::WrongChain { .. })
    });
}

#[test]
fn replayed_and_skipped_nonces_are_rejected() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let tx = chain.sign(
        &alice,
        Payload::Transfer {
            to: Address([1; 32]),
            amount: 1,
        },
        TX_GAS,
    );
    chain.submit_bytes(&tx.encode()).unwrap();
    assert_rejected(&mut chain, &alice, &tx.encode(), |e| {
        matches!(e, Rejected::NonceReplayed { got: 0, want: 1 })
    });
    let skip = TxBody {
        chain_id: TEST_CHAIN_ID.into(),
        sender: alice.address(),
        nonce: 5,
        gas_limit: TX_GAS,
        payload: Payload::Transfer {
            to: Address([1; 32]),
            amount: 1,
        },
    }
    .sign(&alice);
    assert_rejected(&mut chain, &alice, &skip.encode(), |e| {
        matches!(e, Rejected::NonceGap { got: 5, want: 1 })
    });
    // Several pending transactions of one sender are taken in nonce order in one block.
    for n in 1..4 {
        let t = TxBody {
            chain_id: TEST_CHAIN_ID.into(),
            sender: alice.address(),
            nonce: n,
            gas_limit: TX_GAS,
            payload: Payload::Transfer {
                to: Address([1; 32]),
                amount: 1,
            },
        }
        .sign(&alice);
        chain.node.submit(&t.encode()).unwrap();
    }
    chain.next_block();
    assert_eq!(chain.nonce(&alice.address()), 4);
}

#[test]
fn gas_limit_below_the_intrinsic_cost_is_rejected() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let tx = chain.sign(
        &alice,
        Payload::Transfer {
            to: Address([1; 32]),
            amount: 1,
        },
        100,
    );
    assert_rejected(&mut chain, &alice, &tx.encode(), |e| {
        matches!(e, Rejected::GasTooLow { got: 100, .. })
    });
}

/// One transaction may not ask every validator for more than `max_tx_gas` of work (a loop
/// with a huge gas limit stalled every validator for 35 s): refused at admission, before its
/// signature is checked, and by execution the same way (a leader that includes it anyway).
#[test]
fn gas_limit_above_the_cap_is_rejected_with_gas_limit_too_high() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 10_000_000_000);
    let max = gridledger_vm::VmConfig::default().limits.max_tx_gas;
    let transfer = Payload::Transfer {
        to: Address([1; 32]),
        amount: 1,
    };
    let tx = chain.sign(&alice, transfer.clone(), max + 1);
    assert_rejected(
        &mut chain,
        &alice,
        &tx.encode(),
        |e| matches!(e, Rejected::GasTooHigh { max: m, .. } if *m == gridledger_vm::VmConfig::default().limits.max_tx_gas),
    );
    assert_eq!(
        chain.node.submit(&tx.encode()).unwrap_err().code(),
        "gas_limit_too_high"
    );
    // Executed directly (as a finalized block from a faulty leader would be): left out.
    let before = chain.balance(&alice.address());
    let time = chain.node.head().time_ms + 1;
    let block = chain.node.execute_block(time, vec![tx]).unwrap();
    assert!(block.tx_hashes.is_empty());
    assert_eq!(chain.balance(&alice.address()), before);
    // At the cap it is fine.
    let ok = chain.sign(&alice, transfer, max);
    chain.node.submit(&ok.encode()).unwrap();
}

#[test]
fn balance_too_low_for_the_fee_is_rejected_and_for_the_amount_fails() {
    let mut chain = TestChain::new();
    let poor = chain.account("poor", 1_000);
    let tx = chain.sign(
        &poor,
        Payload::Transfer {
            to: Address([1; 32]),
            amount: 1,
        },
        TX_GAS,
    );
    assert_rejected(&mut chain, &poor, &tx.encode(), |e| {
        matches!(e, Rejected::CannotPayFee { balance: 1_000, .. })
    });
    let alice = chain.account("alice", 1_000_000);
    let r = chain.send(
        &alice,
        Payload::Transfer {
            to: Address([1; 32]),
            amount: 5_000_000,
        },
    );
    let err = r.error.clone().expect("must fail");
    assert_eq!(err.code, ErrorCode::InsufficientFunds);
    assert!(
        err.message.contains("insufficient funds"),
        "{}",
        err.message
    );
    assert_eq!(chain.balance(&Address([1; 32])), 0);
    assert_eq!(
        chain.balance(&alice.address()),
        1_000_000 - r.fee,
        "only the fee is charged"
    );
    assert_eq!(chain.nonce(&alice.address()), 1, "the nonce is used");
}

#[test]
fn non_component_and_wasi_uploads_are_refused() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 100_000_000);
    let core = wat::parse_str("(module)").unwrap();
    let r = chain.store_code(&alice, &core).unwrap_err();
    let e = r.error.unwrap();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    assert!(
        e.message.contains("not a component") || e.message.contains("core wasm module"),
        "{}",
        e.message
    );
    let wasi =
        wat::parse_str(r#"(component (import "wasi:filesystem/types@0.2.0" (instance)))"#).unwrap();
    let e = chain.store_code(&alice, &wasi).unwrap_err().error.unwrap();
    assert!(
        e.message.contains("wasi:filesystem/types@0.2.0"),
        "{}",
        e.message
    );
    let e = chain
        .store_code(&alice, b"\0asm garbage")
        .unwrap_err()
        .error
        .unwrap();
    assert_eq!(e.code, ErrorCode::InvalidInput);
}

#[test]
fn misbehaving_contracts_fail_with_clear_receipts_and_change_nothing_but_the_fee() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000_000);
    let code = chain.store_code(&alice, &component("misbehave")).unwrap();
    let c = chain.instantiate(&alice, code, "null").unwrap();
    let cases: &[(&str, ErrorCode, &str)] = &[
        (
            r#"{"put_then_loop":{"key":"a"}}"#,
            ErrorCode::OutOfGas,
            "out of gas",
        ),
        (r#"{"recurse":{}}"#, ErrorCode::Trap, "stack overflow"),
        (r#"{"grow":{"mib":64}}"#, ErrorCode::Trap, "memory"),
        (r#"{"panic":{}}"#, ErrorCode::Trap, "unreachable"),
        (r#"{"garbage":{}}"#, ErrorCode::InvalidResult, "not JSON"),
        (
            r#"{"put_then_fail":{"key":"a"}}"#,
            ErrorCode::ContractError,
            "on purpose",
        ),
        ("[1,2", ErrorCode::ContractError, "invalid message"),
    ];
    for (msg, code, text) in cases {
        let root_keys = chain.query(c, r#"{"get":{"key":"a"}}"#).unwrap();
        let before = chain.balance(&alice.address());
        let r = chain.execute(&alice, c, msg, 0);
        let e = r.error.clone().unwrap_or_else(|| panic!("{msg} must fail"));
        assert_eq!(e.code, *code, "{msg}: {}", e.message);
        assert!(e.message.contains(text), "{msg}: {}", e.message);
        assert!(r.events.is_empty());
        assert_eq!(
            chain.balance(&alice.address()),
            before - r.fee,
            "{msg}: only the fee"
        );
        assert_eq!(
            chain.query(c, r#"{"get":{"key":"a"}}"#).unwrap(),
            root_keys,
            "{msg}: no writes"
        );
        if *code == ErrorCode::OutOfGas {
            assert_eq!(r.gas_used, TX_GAS, "out of gas burns the whole limit");
        }
    }
    // And the chain goes on.
    let ok = chain.execute(&alice, c, r#"{"put":{"key":"a","value":"v"}}"#, 0);
    assert!(ok.is_success());
    assert_eq!(chain.query(c, r#"{"get":{"key":"a"}}"#).unwrap(), "v");
}

#[test]
fn unknown_contract_fails_with_not_found() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 100_000_000);
    let r = chain.execute(&alice, Address([0x55; 32]), "{}", 0);
    assert_eq!(r.error.unwrap().code, ErrorCode::NotFound);
    assert!(matches!(
        chain.query(Address([0x55; 32]), "{}"),
        Err(gridledger_vm::CallError::NotFound(_))
    ));
}

#[test]
fn funds_sent_to_a_failing_call_come_back() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 100_000_000);
    let code = chain.store_code(&alice, &component("misbehave")).unwrap();
    let c = chain.instantiate(&alice, code, "null").unwrap();
    let before = chain.balance(&alice.address());
    let r = chain.execute(&alice, c, r#"{"panic":{}}"#, 5_000);
    assert!(!r.is_success());
    assert_eq!(chain.balance(&c), 0);
    assert_eq!(chain.balance(&alice.address()), before - r.fee);
    let r = chain.execute(&alice, c, r#"{"put":{"key":"k","value":"v"}}"#, 5_000);
    assert!(r.is_success());
    assert_eq!(chain.balance(&c), 5_000);
}

#[test]
fn contracts_call_each_other_and_migrate_only_by_their_admin() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000_000);
    let bob = chain.account("bob", 1_000_000_000);
    let counter = chain.store_code(&alice, &component("counter")).unwrap();
    let a = chain
        .instantiate(&alice, counter, r#"{"start":0}"#)
        .unwrap();
    let b = chain
        .instantiate(&alice, counter, r#"{"start":10}"#)
        .unwrap();
    let r = chain.execute(
        &bob,
        a,
        &format!(r#"{{"forward":{{"to":"{b}","by":5}}}}"#),
        0,
    );
    assert!(r.is_success(), "{:?}", r.error);
    assert_eq!(chain.query(b, r#"{"count":{}}"#).unwrap()["count"], 15);
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].contract, Some(b));

    let migrate = |msg: &str| Payload::Migrate {
        contract: a,
        code_hash: counter,
        msg: msg.as_bytes().to_vec(),
    };
    let denied = chain.send(&bob, migrate(r#"{"set_count":99}"#));
    assert_eq!(denied.error.unwrap().code, ErrorCode::Unauthorized);
    let ok = chain.send(&alice, migrate(r#"{"set_count":99}"#));
    assert!(ok.is_success(), "{:?}", ok.error);
    assert_eq!(chain.query(a, r#"{"count":{}}"#).unwrap()["count"], 99);
    // Migrating to code that refuses migration fails and leaves the contract on its code.
    let other = chain.store_code(&alice, &component("misbehave")).unwrap();
    let r = chain.send(
        &alice,
        Payload::Migrate {
            contract: a,
            code_hash: other,
            msg: b"null".to_vec(),
        },
    );
    assert_eq!(r.error.unwrap().code, ErrorCode::ContractError);
    assert_eq!(chain.query(a, r#"{"count":{}}"#).unwrap()["count"], 99);
    // Without an admin a contract is immutable.
    let fixed = chain
        .instantiate_with(&alice, counter, r#"{"start":0}"#, None, 0)
        .unwrap();
    let r = chain.send(
        &alice,
        Payload::Migrate {
            contract: fixed,
            code_hash: counter,
            msg: b"{}".to_vec(),
        },
    );
    assert_eq!(r.error.unwrap().code, ErrorCode::Unauthorized);
}

#[test]
fn only_the_grid_company_mints_and_burns() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 100_000_000);
    let denied = chain.send(
        &alice,
        Payload::Mint {
            to: alice.address(),
            amount: 1,
        },
    );
    assert_eq!(denied.error.clone().unwrap().code, ErrorCode::Unauthorized);
    let gc = chain.grid_company.clone();
    let r = chain.send(
        &gc,
        Payload::Mint {
            to: alice.address(),
            amount: 500,
        },
    );
    assert!(r.is_success());
    assert_eq!(
        chain.balance(&alice.address()),
        100_000_000 - denied.fee + 500
    );
    let r = chain.send(
        &gc,
        Payload::Burn {
            amount: u64::MAX,
            payout_ref: "x".into(),
        },
    );
    assert_eq!(r.error.unwrap().code, ErrorCode::InsufficientFunds);
    let r = chain.send(
        &gc,
        Payload::Burn {
            amount: 1_000,
            payout_ref: "bank-transfer-42".into(),
        },
    );
    assert!(r.is_success());
    assert_eq!(
        r.events[0].attributes[1],
        ("payout_ref".to_string(), "bank-transfer-42".to_string())
    );
}

#[test]
fn restart_resumes_with_the_same_state_root() {
    let dir = tempfile::tempdir().unwrap();
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/contracts");
    let genesis = test_genesis(Vec::new());
    let gc = Keypair::from_seed_phrase("test grid company");
    let (root, height) = {
        let node = Node::open(dir.path(), genesis.clone(), &contracts).unwrap();
        for i in 0..3u64 {
            let tx = TxBody {
                chain_id: TEST_CHAIN_ID.into(),
                sender: gc.address(),
                nonce: i,
                gas_limit: TX_GAS,
                payload: Payload::Transfer {
                    to: Address([2; 32]),
                    amount: 10,
                },
            }
            .sign(&gc);
            node.submit(&tx.encode()).unwrap();
            node.produce_block(1_767_225_700_000 + i).unwrap();
        }
        let head = node.head();
        (head.state_root, head.height)
    };
    let node = Node::open(dir.path(), genesis.clone(), &contracts).unwrap();
    assert_eq!(node.head().height, height);
    assert_eq!(node.head().state_root, root);
    assert_eq!(node.account(&Address([2; 32])).unwrap().0.balance, 30);
    let next = node.produce_block(1_767_225_800_000).unwrap();
    assert_eq!(next.header.height, height + 1);
    drop(node);

    // Another genesis, or other VM settings, refuse this directory.
    let mut other = genesis.clone();
    other.chain_id = "other".into();
    assert!(Node::open(dir.path(), other, &contracts).is_err());
    let mut pinned = genesis;
    pinned.vm_config_hash = "00".repeat(32);
    let err = Node::open(dir.path(), pinned, &contracts)
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("VM settings"), "{err}");
}

/// Executing a finalized proposal skips the signature check only for the exact bytes this node
/// verified when admitting them to its mempool: a transaction it never saw is checked, and
/// one with a bad signature is left out of the block.
#[test]
fn finalized_proposals_check_the_signatures_the_mempool_did_not() {
    use gridledger_consensus::crypto::{Bls, BlsSecret, VoteScheme};
    use gridledger_consensus::{Certificate, Digest, Proposal, VoteKind};
    use gridledger_node::finality::{BlockPayload, FinalityProof, ProposalHeader};

    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let bob = chain.account("bob", 1_000_000);
    let carol = chain.account("carol", 1_000_000);
    let transfer = Payload::Transfer {
        to: Address([9; 32]),
        amount: 1,
    };
    let pooled = chain.sign(&alice, transfer.clone(), TX_GAS);
    chain.node.submit(&pooled.encode()).expect("admitted");
    let unseen_good = chain.sign(&carol, transfer.clone(), TX_GAS);
    let mut unseen_forged = chain.sign(&bob, transfer, TX_GAS);
    unseen_forged.signature = Signature([7; 64]);

    let head = chain.node.head();
    let proposal = Proposal {
        view: 7,
        height: head.height + 1,
        parent: Digest::ZERO,
        parent_view: 0,
        payload: BlockPayload {
            time_ms: head.time_ms + 1_000,
            txs: vec![unseen_forged, pooled.clone(), unseen_good.clone()],
        }
        .encode(),
    };
    // The node does not re-check the certificate (consensus did); any well-formed one will do.
    let certificate = Certificate::<Bls> {
        kind: VoteKind::Finalize,
        view: 7,
        digest: proposal.digest(),
        signers: vec![1],
        signature: Bls::sign(&BlsSecret::from_seed(b"test validator"), b"finalize"),
    };
    let proof = FinalityProof::new(&certificate, vec![ProposalHeader::of(&proposal)]);
    let block = chain
        .node
        .commit_finalized(&proposal, &proof, chain.grid_company.address())
        .expect("committed");
    assert_eq!(block.tx_hashes, vec![pooled.hash(), unseen_good.hash()]);
    assert_eq!(chain.nonce(&alice.address()), 1);
    assert_eq!(chain.nonce(&carol.address()), 1);
    assert_eq!(chain.nonce(&bob.address()), 0, "the forged transfer ran");
}

/// A batch that peers passed on is answered transaction by transaction as each would be alone
/// (its signatures checked together); only the good ones are queued, in order.
#[test]
fn a_relayed_batch_answers_each_transaction_as_alone() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000);
    let bob = chain.account("bob", 1_000_000);
    let transfer = Payload::Transfer {
        to: Address([9; 32]),
        amount: 1,
    };
    let first = chain.sign(&alice, transfer.clone(), TX_GAS);
    let second = TxBody {
        nonce: 1,
        ..first.body.clone()
    }
    .sign(&alice);
    let mut tampered = chain.sign(&bob, transfer.clone(), TX_GAS);
    tampered.signature.0[40] ^= 1;
    let gap = TxBody {
        nonce: 5,
        ..chain.sign(&bob, transfer, TX_GAS).body
    }
    .sign(&bob);
    // A small-order key as sender, with a "signature" that plain ZIP 215 accepts for it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity);
    let small_order_sender = gridledger_types::SignedTx {
        body: TxBody {
            sender: Address(identity),
            nonce: 0,
            ..first.body.clone()
        },
        signature: Signature(forged),
    };
    let batch = vec![
        first.encode(),
        tampered.encode(),
        first.encode(),
        vec![0xff; 10],
        small_order_sender.encode(),
        second.encode(),
        gap.encode(),
    ];
    let answers = chain.node.submit_relayed_batch(&batch);
    assert!(
        matches!(answers[0], Ok(h) if h == first.hash()),
        "{answers:?}"
    );
    assert!(
        matches!(answers[1], Err(Rejected::BadSignature(_))),
        "{answers:?}"
    );
    assert!(
        matches!(answers[2], Err(Rejected::Duplicate)),
        "{answers:?}"
    );
    assert!(
        matches!(answers[3], Err(Rejected::Malformed(_))),
        "{answers:?}"
    );
    assert!(
        matches!(answers[4], Err(Rejected::BadSignature(_))),
        "{answers:?}"
    );
    assert!(
        matches!(answers[5], Ok(h) if h == second.hash()),
        "{answers:?}"
    );
    assert!(
        matches!(answers[6], Err(Rejected::NonceGap { .. })),
        "{answers:?}"
    );
    assert_eq!(chain.node.mempool_len(), 2);
    chain.next_block();
    assert_eq!(chain.nonce(&alice.address()), 2);
    assert_eq!(chain.nonce(&bob.address()), 0);
}

/// However many queries anyone sends, block execution keeps its own instances: queries run on
/// an engine and pool of their own, at most `MAX_CONCURRENT_QUERIES` at once (the rest wait,
/// then are answered busy). Before, queries filling the shared pool made this node's
/// transactions fail as traps while other validators' succeeded: a fork from an HTTP client.
/// Queries run on the VM with the wall-clock limit (the VM's tests show the limit stops a
/// query whatever gas it has left); the node's own per-block count of settled periods does
/// not need it.
#[test]
fn queries_have_a_wall_clock_limit() {
    let chain = TestChain::new();
    assert_eq!(
        chain.node.query_time_limit(),
        Some(gridledger_node::QUERY_TIME_LIMIT)
    );
}

#[test]
fn a_flood_of_queries_never_fails_a_transaction() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000_000);
    let code = chain.store_code(&alice, &component("misbehave")).unwrap();
    let c = chain.instantiate(&alice, code, "null").unwrap();
    let node = chain.node.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // 80 threads, each a query spinning to the end of its gas, again and again: more than the
    // old shared pool's 64 instances.
    let flood: Vec<_> = (0..80)
        .map(|_| {
            let (node, stop, busy) = (node.clone(), stop.clone(), busy.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match node.query(&c, br#"{"spin":{}}"#) {
                        Err(gridledger_node::QueryError::Busy(_)) => {
                            busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(gridledger_node::QueryError::Call(_)) => {}
                        other => panic!("a spinning query: {other:?}"),
                    }
                }
            })
        })
        .collect();
    // Meanwhile, transactions that nest calls to the deepest level the VM allows.
    let depth = gridledger_vm::VmConfig::default().limits.max_call_depth - 1;
    for _ in 0..10 {
        let r = chain.execute(
            &alice,
            c,
            &format!(r#"{{"call_self":{{"depth":{depth}}}}}"#),
            0,
        );
        assert!(r.is_success(), "{:?}", r.error);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
}

/// A block's transactions emit at most `MAX_BLOCK_EVENT_BYTES` of events in all: the one that
/// would pass it, and its sender's later ones, wait for the next block, whole and in order.
#[test]
fn a_blocks_events_are_capped_and_what_does_not_fit_waits() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 100_000_000_000);
    let code = chain.store_code(&alice, &component("misbehave")).unwrap();
    let c = chain.instantiate(&alice, code, "null").unwrap();
    let nonce = chain.nonce(&alice.address());
    // Each emits two events of 500,000 bytes: 17 of them pass 16 MiB.
    let txs: Vec<_> = (0..17)
        .map(|i| {
            gridledger_types::TxBody {
                chain_id: gridledger_node::testing::TEST_CHAIN_ID.into(),
                sender: alice.address(),
                nonce: nonce + i,
                gas_limit: 200_000_000,
                payload: Payload::Execute {
                    contract: c,
                    msg: br#"{"emit":{"count":2,"bytes":500000}}"#.to_vec(),
                    funds: 0,
                },
            }
            .sign(&alice)
        })
        .collect();
    let time = chain.node.head().time_ms + 1;
    let block = chain.node.execute_block(time, txs.clone()).unwrap();
    assert_eq!(block.tx_hashes.len(), 16, "the 17th does not fit");
    let bytes: usize = block
        .receipts
        .iter()
        .flat_map(|r| &r.events)
        .map(gridledger_vm::event_bytes)
        .sum();
    assert!(bytes <= gridledger_node::MAX_BLOCK_EVENT_BYTES, "{bytes}");
    assert!(block.receipts.iter().all(|r| r.is_success()));
    let next = chain
        .node
        .execute_block(time + 1, vec![txs[16].clone()])
        .unwrap();
    assert_eq!(
        next.tx_hashes,
        vec![txs[16].hash()],
        "it comes in the next block"
    );
}

fn transfer_with_nonce(key: &Keypair, nonce: u64, amount: u64) -> gridledger_types::SignedTx {
    gridledger_types::TxBody {
        chain_id: gridledger_node::testing::TEST_CHAIN_ID.into(),
        sender: key.address(),
        nonce,
        gas_limit: 100_000,
        payload: Payload::Transfer {
            to: Address([3; 32]),
            amount,
        },
    }
    .sign(key)
}

/// One account cannot fill the mempool: at most `MAX_PENDING_PER_SENDER` waiting, and only as
/// many as its balance pays the maximum fees of, all together (it used to be checked against
/// the committed balance one at a time, so one fee's worth queued thousands). Refusals change
/// nothing; another sender still gets in.
#[test]
fn one_sender_cannot_fill_the_mempool_or_queue_fees_it_cannot_pay() {
    use gridledger_node::mempool::MAX_PENDING_PER_SENDER;
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000_000);
    // (Funding makes a block, which would take what waits: fund both first.)
    let bob = chain.account("bob", 250);
    for n in 0..MAX_PENDING_PER_SENDER as u64 {
        chain
            .node
            .submit(&transfer_with_nonce(&alice, n, 1).encode())
            .unwrap();
    }
    let over = transfer_with_nonce(&alice, MAX_PENDING_PER_SENDER as u64, 1);
    let err = chain.node.submit(&over.encode()).unwrap_err();
    assert_eq!(err.code(), "too_many_pending");
    assert_eq!(chain.node.mempool_len(), MAX_PENDING_PER_SENDER);
    assert!(matches!(
        chain.node.tx_status(&over.hash()).unwrap(),
        gridledger_node::TxStatus::Unknown
    ));
    // Bob can pay two maximum fees (100 each at this gas price), not three.
    chain
        .node
        .submit(&transfer_with_nonce(&bob, 0, 0).encode())
        .unwrap();
    chain
        .node
        .submit(&transfer_with_nonce(&bob, 1, 0).encode())
        .unwrap();
    let third = chain.node.submit(&transfer_with_nonce(&bob, 2, 0).encode());
    assert!(
        matches!(
            third,
            Err(Rejected::CannotPayFee {
                balance: 250,
                fee: 300
            })
        ),
        "{third:?}"
    );
    assert_eq!(chain.node.mempool_len(), MAX_PENDING_PER_SENDER + 2);
}

/// Large transactions count by their bytes: one sender's waiting transactions hold at most
/// `MAX_PENDING_BYTES_PER_SENDER` (junk readings batches of 80 KB each, gossiped to every
/// validator, used to be limited only by their number). The refusal changes nothing.
#[test]
fn one_sender_cannot_queue_more_than_its_share_of_bytes() {
    use gridledger_node::mempool::MAX_PENDING_BYTES_PER_SENDER;
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 100_000_000_000);
    let big = |nonce: u64| {
        gridledger_types::TxBody {
            chain_id: gridledger_node::testing::TEST_CHAIN_ID.into(),
            sender: alice.address(),
            nonce,
            gas_limit: 100_000_000,
            payload: Payload::StoreCode {
                wasm: vec![nonce as u8; 300 << 10],
            },
        }
        .sign(&alice)
    };
    let fit = MAX_PENDING_BYTES_PER_SENDER / (300 << 10);
    for n in 0..fit as u64 {
        chain.node.submit(&big(n).encode()).unwrap();
    }
    let over = big(fit as u64);
    let err = chain.node.submit(&over.encode()).unwrap_err();
    assert_eq!(err.code(), "too_many_pending");
    assert!(err.to_string().contains("bytes"), "{err}");
    assert_eq!(chain.node.mempool_len(), fit);
    assert!(matches!(
        chain.node.tx_status(&over.hash()).unwrap(),
        gridledger_node::TxStatus::Unknown
    ));
}

/// A transaction the node accepted and then let go (here: another transaction of the same
/// sender took its nonce) answers `dropped` with the reason, never a bare "not found".
#[test]
fn a_dropped_transaction_says_why() {
    let mut chain = TestChain::new();
    let alice = chain.account("alice", 1_000_000_000);
    let nonce = chain.nonce(&alice.address());
    let waiting = transfer_with_nonce(&alice, nonce, 1);
    chain.node.submit(&waiting.encode()).unwrap();
    let rival = transfer_with_nonce(&alice, nonce, 2);
    let time = chain.node.head().time_ms + 1;
    let block = chain.node.execute_block(time, vec![rival.clone()]).unwrap();
    assert_eq!(block.tx_hashes, vec![rival.hash()]);
    match chain.node.tx_status(&waiting.hash()).unwrap() {
        gridledger_node::TxStatus::Dropped(why) => {
            assert!(why.contains("nonce was used"), "{why}")
        }
        _ => panic!("the waiting transaction must be reported dropped"),
    }
    assert_eq!(chain.node.mempool_len(), 0);
}

/// A full mempool makes room for a newcomer by evicting the youngest transaction of whoever
/// has the most waiting, down to a fair share: a flood from a few accounts cannot lock others
/// out. The evicted one answers `dropped` with why; an invalid newcomer evicts no one.
#[test]
fn a_full_mempool_evicts_the_biggest_senders_youngest_for_a_newcomer() {
    let mut chain = TestChain::new();
    let flooder = chain.account("flooder", 1_000_000_000);
    let newcomer = chain.account("newcomer", 1_000_000_000);
    chain.node.set_mempool_capacity(4);
    let flood: Vec<_> = (0..4)
        .map(|n| transfer_with_nonce(&flooder, n, 1))
        .collect();
    for t in &flood {
        chain.node.submit(&t.encode()).unwrap();
    }
    // Before eviction existed, this was refused `busy`.
    let first = transfer_with_nonce(&newcomer, 0, 1);
    chain.node.submit(&first.encode()).unwrap();
    assert_eq!(chain.node.mempool_len(), 4);
    match chain.node.tx_status(&flood[3].hash()).unwrap() {
        gridledger_node::TxStatus::Dropped(why) => assert!(why.contains("evicted"), "{why}"),
        other => panic!("the flooder's youngest must be dropped, not {other:?}"),
    }
    // An invalid newcomer (a nonce gap) evicts no one.
    let gap = transfer_with_nonce(&newcomer, 5, 1);
    assert_eq!(
        chain.node.submit(&gap.encode()).unwrap_err().code(),
        "nonce_gap"
    );
    assert!(matches!(
        chain.node.tx_status(&flood[2].hash()).unwrap(),
        gridledger_node::TxStatus::Pending
    ));
    // Down to a fair share: 3 against 1 gives way once more (2 and 2), then no more.
    chain
        .node
        .submit(&transfer_with_nonce(&newcomer, 1, 1).encode())
        .unwrap();
    let third = chain
        .node
        .submit(&transfer_with_nonce(&newcomer, 2, 1).encode());
    assert_eq!(third.unwrap_err().code(), "busy");
    // The flooder resubmitting what was evicted does not evict back.
    assert_eq!(
        chain.node.submit(&flood[2].encode()).unwrap_err().code(),
        "busy"
    );
    // What stayed is what a block takes.
    chain.next_block();
    assert_eq!(chain.node.mempool_len(), 0);
    assert_eq!(chain.nonce(&flooder.address()), 2);
    assert_eq!(chain.nonce(&newcomer.address()), 2);
}
