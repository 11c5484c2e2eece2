//! The VM against real contract components (built by `cargo run -p gridledger-build`).

use gridledger_state::{StateRead, StateStack};
use gridledger_types::schema::{self, CodeEntry, ContractInfo};
use gridledger_types::{Address, codec};
use gridledger_vm::{BlockEnv, CallError, CallRequest, CodeError, Entry, Vm, VmConfig, code_hash};

fn component(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/contracts")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the contracts first: cargo run -p gridledger-build",
            path.display()
        )
    })
}

fn block() -> BlockEnv {
    BlockEnv {
        height: 7,
        time_ms: 1_000,
        chain_id: "vm-test".into(),
    }
}

const ALICE: Address = Address([0xa1; 32]);

/// Deploys `name` at a fixed address straight into state.
fn deploy(vm: &Vm, state: &mut StateStack, name: &str, at: Address) {
    let wasm = component(name);
    let info = vm.validate_code(&wasm).expect("valid code");
    let hash = code_hash(&wasm);
    state.set(
        schema::code_key(&hash),
        codec::encode(&CodeEntry {
            name: info.name.clone(),
            version: info.version,
            wasm,
        }),
    );
    state.set(
        schema::contract_key(&at),
        codec::encode(&ContractInfo {
            code_hash: hash,
            creator: ALICE,
            admin: None,
            label: name.into(),
            name: info.name,
            version: info.version,
        }),
    );
}

fn call(
    vm: &Vm,
    state: &mut StateStack,
    at: Address,
    entry: Entry,
    msg: &str,
    gas: u64,
) -> gridledger_vm::CallOutcome {
    vm.call(
        &block(),
        state,
        CallRequest {
            contract: at,
            entry,
            caller: Some(ALICE),
            funds: 0,
            msg: msg.as_bytes(),
            gas_limit: gas,
        },
    )
    .expect("no host fault")
}

fn setup(name: &str) -> (Vm, StateStack, Address) {
    let vm = Vm::new(VmConfig::default(), None).unwrap();
    let mut state = StateStack::default();
    let at = Address([0xc0; 32]);
    deploy(&vm, &mut state, name, at);
    (vm, state, at)
}

const GAS: u64 = 10_000_000;

#[test]
fn counter_runs_and_gas_is_deterministic() {
    let (vm, mut state, c) = setup("counter");
    let out = call(
        &vm,
        &mut state,
        c,
        Entry::Instantiate,
        r#"{"start":5}"#,
        GAS,
    );
    out.result.unwrap();
    let a = call(
        &vm,
        &mut state,
        c,
        Entry::Execute,
        r#"{"increment":{"by":2}}"#,
        GAS,
    );
    assert_eq!(a.result.unwrap(), b"7");
    assert_eq!(a.events.len(), 1);
    assert_eq!(a.events[0].kind, "increment");
    assert_eq!(a.events[0].contract, Some(c));
    let b = call(
        &vm,
        &mut state,
        c,
        Entry::Execute,
        r#"{"increment":{"by":2}}"#,
        GAS,
    );
    assert_eq!(b.result.unwrap(), b"9");
    // The second call reads the tally the first one created, so it costs a little more.
    assert!(b.gas_used > a.gas_used);
    // The same calls on a fresh VM and state cost exactly the same gas.
    let (vm2, mut state2, c2) = setup("counter");
    call(
        &vm2,
        &mut state2,
        c2,
        Entry::Instantiate,
        r#"{"start":5}"#,
        GAS,
    )
    .result
    .unwrap();
    let a2 = call(
        &vm2,
        &mut state2,
        c2,
        Entry::Execute,
        r#"{"increment":{"by":2}}"#,
        GAS,
    );
    let b2 = call(
        &vm2,
        &mut state2,
        c2,
        Entry::Execute,
        r#"{"increment":{"by":2}}"#,
        GAS,
    );
    assert_eq!(
        (a.gas_used, b.gas_used),
        (a2.gas_used, b2.gas_used),
        "the same work costs the same gas"
    );
    assert!(a.gas_used > vm.config().gas.instantiate);
    let q = call(&vm, &mut state, c, Entry::Query, r#"{"count":{}}"#, GAS);
    assert_eq!(q.result.unwrap(), br#"{"count":9,"version":1}"#);
}

#[test]
fn too_little_gas_fails_cleanly() {
    let (vm, mut state, c) = setup("counter");
    call(
        &vm,
        &mut state,
        c,
        Entry::Instantiate,
        r#"{"start":5}"#,
        GAS,
    )
    .result
    .unwrap();
    let before = state.pending_changes();
    let out = call(
        &vm,
        &mut state,
        c,
        Entry::Execute,
        r#"{"increment":{"by":2}}"#,
        30_000,
    );
    assert_eq!(out.result, Err(CallError::OutOfGas));
    assert_eq!(out.gas_used, 30_000);
    assert_eq!(state.pending_changes(), before);
}

fn assert_fails_without_writes(name: &str, msg: &str, check: impl Fn(&CallError) -> bool) -> u64 {
    let (vm, mut state, c) = setup(name);
    call(&vm, &mut state, c, Entry::Instantiate, "null", GAS)
        .result
        .unwrap();
    let before = state.pending_changes();
    let out = call(&vm, &mut state, c, Entry::Execute, msg, GAS);
    let err = out.result.clone().expect_err("must fail");
    assert!(check(&err), "{msg}: unexpected error {err:?}");
    assert!(out.events.is_empty());
    assert_eq!(
        state.pending_changes(),
        before,
        "{msg}: a failed call must leave no writes"
    );
    out.gas_used
}

#[test]
fn infinite_loop_runs_out_of_gas() {
    let used = assert_fails_without_writes("misbehave", r#"{"put_then_loop":{"key":"k"}}"#, |e| {
        *e == CallError::OutOfGas
    });
    assert_eq!(used, GAS);
}

#[test]
fn unbounded_recursion_traps() {
    assert_fails_without_writes(
        "misbehave",
        r#"{"recurse":{}}"#,
        |e| matches!(e, CallError::Trap(m) if m.contains("stack overflow")),
    );
}

#[test]
fn memory_past_the_limit_traps() {
    assert_fails_without_writes("misbehave", r#"{"grow":{"mib":64}}"#, |e| {
        matches!(e, CallError::Trap(_) | CallError::OutOfGas)
    });
    // Under the limit, the same request succeeds.
    let (vm, mut state, c) = setup("misbehave");
    assert_eq!(
        call(
            &vm,
            &mut state,
            c,
            Entry::Execute,
            r#"{"grow":{"mib":2}}"#,
            GAS
        )
        .result
        .unwrap(),
        b"2097152"
    );
}

#[test]
fn panic_traps() {
    assert_fails_without_writes(
        "misbehave",
        r#"{"panic":{}}"#,
        |e| matches!(e, CallError::Trap(m) if m.contains("unreachable")),
    );
}

#[test]
fn garbage_output_is_an_invalid_result() {
    assert_fails_without_writes("misbehave", r#"{"garbage":{}}"#, |e| {
        matches!(e, CallError::InvalidResult(_))
    });
}

#[test]
fn contract_error_discards_its_writes() {
    assert_fails_without_writes(
        "misbehave",
        r#"{"put_then_fail":{"key":"k"}}"#,
        |e| matches!(e, CallError::Contract(m) if m.contains("on purpose")),
    );
}

#[test]
fn malformed_message_is_a_contract_error() {
    assert_fails_without_writes(
        "misbehave",
        "{not json",
        |e| matches!(e, CallError::Contract(m) if m.contains("invalid message")),
    );
}

#[test]
fn queries_cannot_write() {
    let (vm, mut state, c) = setup("misbehave");
    let out = call(&vm, &mut state, c, Entry::Query, r#"{"write":{}}"#, GAS);
    assert!(
        matches!(out.result, Err(CallError::Trap(ref m)) if m.contains("not allowed in a query")),
        "{:?}",
        out.result
    );
}

#[test]
fn call_depth_is_bounded() {
    let (vm, mut state, c) = setup("misbehave");
    let ok = call(
        &vm,
        &mut state,
        c,
        Entry::Execute,
        r#"{"call_self":{"depth":3}}"#,
        GAS,
    );
    assert_eq!(ok.result.unwrap(), b"0");
    let deep = call(
        &vm,
        &mut state,
        c,
        Entry::Execute,
        r#"{"call_self":{"depth":50}}"#,
        100 * GAS,
    );
    assert!(
        matches!(deep.result, Err(CallError::Contract(ref m)) if m.contains("call depth")),
        "{:?}",
        deep.result
    );
}

#[test]
fn unknown_contract_is_not_found() {
    let (vm, mut state, _) = setup("counter");
    let out = call(&vm, &mut state, Address([9; 32]), Entry::Execute, "{}", GAS);
    assert!(matches!(out.result, Err(CallError::NotFound(_))));
    assert_eq!(out.gas_used, 0);
}

#[test]
fn contract_sends_only_what_it_has() {
    let (vm, mut state, c) = setup("misbehave");
    gridledger_vm::ledger::set_account(
        &mut state,
        &c,
        &schema::Account {
            balance: 100,
            nonce: 0,
        },
    );
    let bob = Address([0xb0; 32]);
    let msg = format!(r#"{{"send":{{"to":"{}","amount":60}}}}"#, bob.to_hex());
    call(&vm, &mut state, c, Entry::Execute, &msg, GAS)
        .result
        .unwrap();
    assert_eq!(
        gridledger_vm::ledger::account(&state, &bob)
            .unwrap()
            .balance,
        60
    );
    let out = call(&vm, &mut state, c, Entry::Execute, &msg, GAS);
    assert!(
        matches!(out.result, Err(CallError::Contract(ref m)) if m.contains("insufficient funds")),
        "{:?}",
        out.result
    );
    assert_eq!(
        gridledger_vm::ledger::account(&state, &c).unwrap().balance,
        40
    );
}

#[test]
fn uploads_that_are_not_contracts_are_refused() {
    let vm = Vm::new(VmConfig::default(), None).unwrap();
    assert!(matches!(
        vm.validate_code(b"definitely not wasm"),
        Err(CodeError::NotComponent(_))
    ));
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    assert_eq!(vm.validate_code(&core), Err(CodeError::CoreModule));
    let wasi = wat::parse_str(
        r#"(component
             (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#,
    )
    .unwrap();
    assert_eq!(
        vm.validate_code(&wasi),
        Err(CodeError::ForbiddenImport(
            "wasi:cli/environment@0.2.0".into()
        ))
    );
    let nested = wat::parse_str("(component (component))").unwrap();
    assert_eq!(vm.validate_code(&nested), Err(CodeError::Nested));
    let empty = wat::parse_str("(component)").unwrap();
    assert!(matches!(
        vm.validate_code(&empty),
        Err(CodeError::WrongWorld(_))
    ));
    let memory64 = wat::parse_str("(component (core module (memory i64 1)))").unwrap();
    assert!(
        matches!(vm.validate_code(&memory64), Err(CodeError::Compile(_))),
        "memory64 must be off"
    );
    let shared = wat::parse_str("(component (core module (memory 1 1 shared)))").unwrap();
    assert!(
        matches!(vm.validate_code(&shared), Err(CodeError::Compile(_))),
        "threads must be off"
    );
    let good = vm.validate_code(&component("counter")).unwrap();
    assert_eq!((good.name.as_str(), good.version), ("counter", 1));
}

#[test]
fn compiled_code_is_cached_on_disk_by_hash_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = component("counter");
    let vm = Vm::new(VmConfig::default(), Some(dir.path().to_path_buf())).unwrap();
    vm.validate_code(&wasm).unwrap();
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with(&code_hash(&wasm).to_hex()) && files[0].ends_with(".cwasm"));
    // A new VM (a restarted node) runs the contract from the artifact even though state has
    // no code entry for it: proof the artifact, not a recompile, was used.
    let vm2 = Vm::new(VmConfig::default(), Some(dir.path().to_path_buf())).unwrap();
    let mut state = StateStack::default();
    let c = Address([0xc0; 32]);
    state.set(
        schema::contract_key(&c),
        codec::encode(&ContractInfo {
            code_hash: code_hash(&wasm),
            creator: ALICE,
            admin: None,
            label: "c".into(),
            name: "counter".into(),
            version: 1,
        }),
    );
    call(
        &vm2,
        &mut state,
        c,
        Entry::Instantiate,
        r#"{"start":1}"#,
        GAS,
    )
    .result
    .unwrap();
    assert!(state.get(&schema::contract_key(&c)).unwrap().is_some());
}

/// A state whose contract storage fails to read: a broken disk, say.
struct FailingStorage(std::collections::BTreeMap<Vec<u8>, Vec<u8>>);

impl StateRead for FailingStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, gridledger_state::ReadError> {
        if key.first() == Some(&schema::TAG_CONTRACT_STORE) {
            return Err(gridledger_state::ReadError("disk on fire".into()));
        }
        Ok(self.0.get(key).cloned())
    }
    fn scan(
        &self,
        p: &[u8],
        a: Option<&[u8]>,
        l: usize,
        d: bool,
    ) -> Result<Vec<gridledger_state::overlay::Entry>, gridledger_state::ReadError> {
        self.0.scan(p, a, l, d)
    }
}

#[test]
fn a_storage_fault_is_a_host_fault_not_a_receipt() {
    let (vm, mut state, c) = setup("counter");
    let base: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = state
        .take_changes()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let mut broken = StateStack::new(std::sync::Arc::new(FailingStorage(base)));
    let err = vm
        .call(
            &block(),
            &mut broken,
            CallRequest {
                contract: c,
                entry: Entry::Execute,
                caller: Some(ALICE),
                funds: 0,
                msg: br#"{"increment":{"by":1}}"#,
                gas_limit: GAS,
            },
        )
        .expect_err("a host fault must not become a call result");
    assert!(err.0.contains("disk on fire"), "{err}");
    assert!(broken.pending_changes().is_empty(), "nothing is written");
}

/// A call that finds the instance pool full fails as this node's fault (`HostFault`), never as
/// the contract's (a trap receipt): how full a node's pool is depends on that node (queries
/// filling a shared pool made one validator's transactions fail while the others' succeeded).
#[test]
fn a_full_instance_pool_is_a_host_fault_not_a_trap() {
    let vm = Vm::with_pool_slots(VmConfig::default(), None, 1).unwrap();
    let mut state = StateStack::default();
    let c = Address([0xc0; 32]);
    deploy(&vm, &mut state, "misbehave", c);
    let before = state.pending_changes();
    let req = |msg: &'static str| CallRequest {
        contract: c,
        entry: Entry::Execute,
        caller: Some(ALICE),
        funds: 0,
        msg: msg.as_bytes(),
        gas_limit: GAS,
    };
    // One slot: a call runs, a call that nests one more does not find an instance.
    let ok = vm
        .call(&block(), &mut state, req(r#"{"call_self":{"depth":0}}"#))
        .unwrap();
    assert_eq!(ok.result.unwrap(), b"0");
    let full = vm.call(&block(), &mut state, req(r#"{"call_self":{"depth":1}}"#));
    match full {
        Err(gridledger_vm::HostFault(m)) => assert!(m.contains("instantiating"), "{m}"),
        Ok(out) => panic!("a full pool became the contract's result: {:?}", out.result),
    }
    assert_eq!(state.pending_changes(), before, "nothing written");
}

/// The child half of the test below: the deepest call a transaction can make (nesting to the
/// maximum depth, then unbounded recursion) on a thread of `GRIDLEDGER_TEST_STACK` bytes.
#[test]
#[ignore = "run in a child process by the_deepest_call_traps_on_an_execution_thread"]
fn child_runs_the_deepest_call_on_a_thread_of_a_given_stack() {
    let Some(bytes) = std::env::var("GRIDLEDGER_TEST_STACK")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return;
    };
    let result = std::thread::Builder::new()
        .stack_size(bytes)
        .spawn(|| {
            let (vm, mut state, c) = setup("misbehave");
            let depth = VmConfig::default().limits.max_call_depth - 1;
            let msg = format!(r#"{{"nest_then_recurse":{{"depth":{depth}}}}}"#);
            call(&vm, &mut state, c, Entry::Execute, &msg, 100 * GAS).result
        })
        .unwrap()
        .join()
        .unwrap();
    println!(
        "child: {} ({result:?})",
        if result.is_err() {
            "failed cleanly"
        } else {
            "succeeded"
        }
    );
}

/// Deep recursion at the deepest nesting a transaction can reach is a trap receipt, never a
/// dead process: on a default 2 MiB thread (what a test or a plain `std::thread` has) and on
/// the execution stack the node's runtimes give their threads. Run in child processes, since a
/// thread's stack overflowing would abort the test binary itself. (The suspicion that each
/// nested call gets a fresh 512 KiB allowance, 4.5 MiB in all, and so aborts a 2 MiB thread,
/// did not hold on this wasmtime: the child traps cleanly.)
#[test]
fn the_deepest_call_traps_on_an_execution_thread() {
    let run = |stack: usize| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_runs_the_deepest_call_on_a_thread_of_a_given_stack",
                "--nocapture",
            ])
            .env("GRIDLEDGER_TEST_STACK", stack.to_string())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success()
                && said.contains("child: failed cleanly")
                && said.contains("stack overflow"),
            "{stack}-byte thread: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(2 << 20);
    run(VmConfig::default().execution_stack_bytes());
}

/// Events are bounded per call (count and bytes, the calls it makes included) and priced near
/// storage: a contract cannot make every validator keep gigabytes of receipts.
#[test]
fn events_are_capped_per_call_and_priced_near_storage() {
    let (vm, mut state, c) = setup("misbehave");
    let limits = VmConfig::default().limits;
    let emit = |state: &mut StateStack, count: usize, bytes: usize| {
        call(
            &vm,
            state,
            c,
            Entry::Execute,
            &format!(r#"{{"emit":{{"count":{count},"bytes":{bytes}}}}}"#),
            100 * GAS,
        )
    };
    let ok = emit(&mut state, 10, 100);
    assert_eq!(ok.events.len(), 10, "{:?}", ok.result);
    let more = emit(&mut state, 20, 100);
    // 10 more events of ~100 bytes cost ~20 gas a byte more.
    assert!(
        more.gas_used - ok.gas_used >= 10 * 100 * 20,
        "{} {}",
        more.gas_used,
        ok.gas_used
    );
    let too_many = emit(&mut state, limits.max_events_per_call + 1, 1);
    assert!(
        matches!(too_many.result, Err(CallError::Trap(ref m)) if m.contains("at most")),
        "{:?}",
        too_many.result
    );
    assert!(too_many.events.is_empty());
    let too_big = emit(&mut state, 2, limits.max_event_bytes_per_call / 2 + 1);
    assert!(
        matches!(too_big.result, Err(CallError::Trap(ref m)) if m.contains("bytes in all")),
        "{:?}",
        too_big.result
    );
}

/// A query VM whose calls may run for 50 ms.
fn query_vm_with_50_ms() -> Vm {
    Vm::for_queries(
        VmConfig::default(),
        None,
        16,
        std::time::Duration::from_millis(50),
    )
    .unwrap()
}

/// A query VM stops a call at its wall-clock deadline even with gas for seconds of work left
/// (a loop given 2·10¹¹ gas would otherwise run for about ten seconds, then run out of gas),
/// and keeps answering.
#[test]
fn a_query_stops_at_its_deadline_whatever_gas_it_has_left() {
    let vm = query_vm_with_50_ms();
    let mut state = StateStack::default();
    let at = Address([0xc0; 32]);
    deploy(&vm, &mut state, "misbehave", at);
    let gas = 200_000_000_000;
    let out = call(&vm, &mut state, at, Entry::Query, r#"{"spin":{}}"#, gas);
    match &out.result {
        Err(CallError::Trap(m)) => assert!(m.contains("time limit"), "{m}"),
        other => panic!("expected the deadline to stop the query: {other:?}"),
    }
    assert!(out.gas_used < gas, "{}", out.gas_used);
    // Gas still binds first when it is the smaller limit, and the VM answers the next query.
    let out = call(&vm, &mut state, at, Entry::Query, r#"{"spin":{}}"#, GAS);
    assert!(
        matches!(out.result, Err(CallError::OutOfGas)),
        "{:?}",
        out.result
    );
    let out = call(
        &vm,
        &mut state,
        at,
        Entry::Query,
        r#"{"get":{"key":"k"}}"#,
        GAS,
    );
    assert_eq!(out.result.unwrap(), b"null");
}

/// A query's deadline counts running, not compiling: the first query of a contract on a query
/// VM compiles it (the market: seconds, far longer than the 50 ms allowed here) and is still
/// answered (here with the error of a market never instantiated, not the deadline's).
#[test]
fn a_query_deadline_does_not_count_compiling_the_contract() {
    let execution = Vm::new(VmConfig::default(), None).unwrap();
    let mut state = StateStack::default();
    let at = Address([0xc0; 32]);
    // Deployed (and compiled) by another VM: the query VM has never seen the code.
    deploy(&execution, &mut state, "market", at);
    let queries = query_vm_with_50_ms();
    let out = call(
        &queries,
        &mut state,
        at,
        Entry::Query,
        r#"{"config":{}}"#,
        GAS,
    );
    match out.result {
        Err(CallError::Contract(_)) => {}
        other => panic!("expected the market's own error: {other:?}"),
    }
}

/// A contract's `Map` iteration through the host's packed scan: every entry once, in order,
/// across pages (64 a page) and across state layers (a newer layer overwriting older values).
#[test]
fn scans_return_what_is_stored_across_pages() {
    let (vm, mut state, c) = setup("misbehave");
    let mut want = std::collections::BTreeMap::new();
    let mut put = |state: &mut StateStack, key: String, value: String| {
        let msg = serde_json::json!({ "put": { "key": key, "value": value } }).to_string();
        call(&vm, state, c, Entry::Execute, &msg, GAS)
            .result
            .unwrap();
        want.insert(key, value);
    };
    for i in 0..150 {
        put(&mut state, format!("k{i:03}"), format!("v{i}"));
    }
    state.push_layer();
    for i in (0..150).step_by(2) {
        put(&mut state, format!("k{i:03}"), format!("newer {i}"));
    }
    let list = |state: &mut StateStack, after: Option<&str>, descending: bool| {
        let msg =
            serde_json::json!({ "list": { "after": after, "descending": descending } }).to_string();
        let out = call(&vm, state, c, Entry::Query, &msg, 100 * GAS);
        serde_json::from_slice::<Vec<(String, String)>>(&out.result.unwrap()).unwrap()
    };
    let all: Vec<(String, String)> = want.clone().into_iter().collect();
    assert_eq!(list(&mut state, None, false), all);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(list(&mut state, None, true), reversed);
    let after: Vec<_> = all
        .iter()
        .filter(|(k, _)| k.as_str() > "k063")
        .cloned()
        .collect();
    assert_eq!(list(&mut state, Some("k063"), false), after);
    let before: Vec<_> = reversed
        .iter()
        .filter(|(k, _)| k.as_str() < "k100")
        .cloned()
        .collect();
    assert_eq!(list(&mut state, Some("k100"), true), before);
}
