//! The SunSpec meter plugin against a real Modbus TCP server on 127.0.0.1 serving a SunSpec
//! register map (the "SunS" marker, model 1, meter model 203), including the server going
//! away and coming back.

use gridledger_devices::{DeviceBinding, PluginManifest, PluginRuntime};
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

const BASE: u16 = 40000;

/// Registers from `BASE`: "SunS", model 1 (66 registers), model 203 (105), end marker.
fn register_map(w_x10: i16, export_wh: u32, import_wh: u32) -> Vec<u16> {
    let mut r = vec![0x5375, 0x6e53, 1, 66];
    let mut common = vec![0u16; 66];
    for (i, pair) in b"gridledger-test-meter-co".chunks(2).enumerate() {
        common[i] = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
    }
    r.extend(common);
    r.extend([203, 105]);
    // 0x8000 is "not implemented" for int16 points, 0 for the 32-bit accumulators (36..).
    let mut m = vec![0x8000u16; 36];
    m.extend(vec![0u16; 105 - 36]);
    m[69] = 0x8000; // TotVAh_SF
    m[0] = 100; // A
    m[4] = 0; // A_SF
    m[5] = 2300; // PhV
    m[13] = (-1i16) as u16; // V_SF
    m[14] = 500; // Hz
    m[16] = w_x10 as u16; // W
    m[20] = (-1i16) as u16; // W_SF: tenths of a watt
    m[36] = (export_wh >> 16) as u16; // TotWhExp
    m[37] = export_wh as u16;
    m[44] = (import_wh >> 16) as u16; // TotWhImp
    m[45] = import_wh as u16;
    m[52] = 0; // TotWh_SF
    r.extend(m);
    r.extend([0xFFFF, 0]);
    r
}

/// The meter's registers, and whether it is down: a meter that is down answers every request
/// with an error. (Aborting the server's task alone does not reliably cut a connection it
/// already accepted: tokio-modbus serves each on a task of its own, so a poll could still be
/// answered and the outage test passed only most of the time.)
#[derive(Clone)]
struct Meter(Arc<RwLock<Vec<u16>>>, Arc<std::sync::atomic::AtomicBool>);

impl tokio_modbus::server::Service for Meter {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return ready(Err(ExceptionCode::ServerDeviceFailure));
        }
        ready(match req {
            Request::ReadHoldingRegisters(addr, n) => {
                let regs = self.0.read().expect("registers");
                let start = addr.wrapping_sub(BASE) as usize;
                match regs.get(start..start + n as usize) {
                    Some(slice) if addr >= BASE => {
                        Ok(Response::ReadHoldingRegisters(slice.to_vec()))
                    }
                    _ => Err(ExceptionCode::IllegalDataAddress),
                }
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Serves `meter` on `addr` until the returned task is aborted (connections it accepted may
/// outlive it: see [`Meter`]).
async fn serve(addr: SocketAddr, meter: Meter) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, peer| {
            let meter = meter.clone();
            async move { accept_tcp_connection(stream, peer, move |_| Ok(Some(meter.clone()))) }
        };
        let _ = server.serve(&on_connected, |_| {}).await;
    });
    (addr, task)
}

fn manifest(addr: SocketAddr, grant: bool) -> PluginManifest {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config: toml::Table = toml::from_str(&format!(
        r#"timeout_ms = 500
           [[meters]]
           device = "meter-pcc"
           addr = "{addr}"
           unit_id = 1
           base_address = {BASE}"#
    ))
    .unwrap();
    PluginManifest {
        id: "sunspec".into(),
        wasm: root.join("target/device-plugins/sunspec_meter.wasm"),
        version: None,
        code_hash: None,
        allowed_code_hashes: Vec::new(),
        poll_ms: 100,
        memory_limit_bytes: 32 << 20,
        time_limit_ms: 3_000,
        connect: if grant { vec![addr] } else { Vec::new() },
        read_dir: None,
        config,
        devices: vec![DeviceBinding {
            name: "meter-pcc".into(),
            dev_seed: Some("sunspec test meter".into()),
            key_file: None,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_sunspec_meter_over_modbus_tcp_through_outages() {
    let registers = Arc::new(RwLock::new(register_map(-12_345, 5_000, 700)));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let meter = Meter(registers.clone(), down.clone());
    let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), meter.clone()).await;
    let rt = PluginRuntime::new().unwrap();
    let m = manifest(addr, true);
    let wasm = std::fs::read(&m.wasm).expect("built plugin (cargo run -p gridledger-build)");
    let code = rt.load(&wasm).unwrap();
    let mut plugin = rt.start(&code, &m).await.unwrap();
    assert_eq!(plugin.info.model, "sunspec-meter");

    // -1234.5 W flows into the site per SunSpec's sign: the plugin reports it as import.
    let s = plugin.poll(1).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].device.as_str(), s[0].power_w), ("meter-pcc", 1_234));
    assert_eq!((s[0].export_wh, s[0].import_wh), (Some(5_000), Some(700)));

    *registers.write().unwrap() = register_map(20_000, 5_100, 701);
    let s = plugin.poll(2).await.unwrap();
    assert_eq!(
        (s[0].power_w, s[0].export_wh, s[0].import_wh),
        (-2_000, Some(5_100), Some(701))
    );

    // The meter goes away: the poll fails (and the node would restart the plugin).
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    server.abort();
    let _ = server.await;
    let e = plugin.poll(3).await.unwrap_err().to_string();
    assert!(e.contains("meter-pcc"), "{e}");

    // It comes back on the same address: the plugin reconnects by itself.
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let (_, server) = serve(addr, meter.clone()).await;
    let s = plugin.poll(4).await.unwrap();
    assert_eq!(s[0].export_wh, Some(5_100));
    server.abort();

    // Without the grant, the plugin cannot reach the meter at all.
    let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), meter).await;
    let mut denied = rt.start(&code, &manifest(addr, false)).await.unwrap();
    let e = denied.poll(5).await.unwrap_err().to_string();
    assert!(e.contains("connecting"), "{e}");
    server.abort();
}
