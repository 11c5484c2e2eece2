//! The device plugin host.
//!
//! Meters, inverters, turbines and batteries are read by *plugins*: WASI 0.2 components that
//! export the `gridledger:device/driver` interface (`sdk/wit/device/device.wit`). The host:
//!
//! - runs each plugin with the capabilities its manifest grants and no others
//!   ([`runtime`], [`manifest`]), every call bounded in memory and time;
//! - keeps each device's signing key, cumulative energy counters and sequence number, and
//!   turns a plugin's samples into readings the chain will accept ([`meter`]);
//! - supervises plugins: restarts a failing one with backoff, and swaps in a new version
//!   between polls after a health check, rolling back if it fails ([`supervisor`]).

pub mod manifest;
pub mod meter;
pub mod runtime;
pub mod set;
pub mod supervisor;

pub use manifest::{DeviceBinding, PluginManifest};
pub use runtime::{PluginCode, PluginError, PluginRuntime, RunningPlugin, Sample};
pub use set::{PluginSet, RegisteredDevice};
