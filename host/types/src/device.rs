//! Metered devices: what the grid company registers, and the readings their keys sign.
//!
//! A reading is signed OCMF-style by the device's ed25519 key, over the exact bytes of
//! [`MeterReading::signing_bytes`]: a domain tag, the chain id and the canonical reading. The
//! counters are cumulative (they never go backwards) and the sequence number never repeats, so
//! a reading cannot be replayed, reordered or altered without the chain noticing.

use crate::codec;
use crate::hash::Hash32;
use crate::keys::{self, Address, Keypair, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Domain tag of a reading signature.
pub const READING_SIGN: &[u8] = b"gridledger/meter-reading/v1";

/// Most readings in one transaction.
pub const MAX_READINGS_PER_TX: usize = 4_096;

/// What a device measured at one moment, as its key signs it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MeterReading {
    /// The device: its ed25519 public key.
    pub device: Address,
    /// The delivery period the reading was taken in.
    pub period: u64,
    /// Energy delivered to the grid since the meter was installed, Wh.
    pub export_wh: u64,
    /// Energy drawn from the grid since the meter was installed, Wh.
    pub import_wh: u64,
    /// Instantaneous power, W: positive exports, negative imports.
    pub power_w: i64,
    /// When the reading was taken, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// 0 for the device's first reading, then one more for each.
    pub seq: u64,
    /// Code hash of the plugin (driver) that read the device.
    pub plugin: Hash32,
}

impl MeterReading {
    /// The exact bytes the device key signs.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut out = READING_SIGN.to_vec();
        out.extend(codec::encode(&chain_id.to_string()));
        out.extend(codec::encode(self));
        out
    }

    pub fn sign(self, chain_id: &str, key: &Keypair) -> SignedReading {
        let signature = key.sign(&self.signing_bytes(chain_id));
        SignedReading {
            reading: self,
            signature,
        }
    }
}

/// A reading with the device's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedReading {
    pub reading: MeterReading,
    pub signature: Signature,
}

impl SignedReading {
    pub fn verify(&self, chain_id: &str) -> Result<(), String> {
        keys::verify(
            &self.reading.device,
            &self.reading.signing_bytes(chain_id),
            &self.signature,
        )
    }
}

/// A registered device and where its readings stand, as the chain keeps it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The participant whose energy the device measures.
    pub owner: Address,
    /// What it is (`wind_turbine`, `pv`, `household_load`, `battery`, …).
    pub kind: String,
    /// Most power it can export or import, W: the bound on plausible energy.
    pub rated_power_w: u64,
    pub revoked: bool,
    /// Code hash of the plugin behind its latest accepted reading.
    pub plugin: Option<Hash32>,
    /// Its latest accepted reading.
    pub last: Option<MeterReading>,
    /// The period whose energy is being accumulated, and the counters when it began.
    pub open_period: Option<PeriodStart>,
}

/// Counters at the start of a period's accumulation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PeriodStart {
    pub period: u64,
    pub export_wh: u64,
    pub import_wh: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> MeterReading {
        MeterReading {
            device: Keypair::from_seed_phrase("meter").address(),
            period: 3,
            export_wh: 1_000,
            import_wh: 20,
            power_w: 4_000,
            timestamp_ms: 1_767_225_615_000,
            seq: 7,
            plugin: Hash32([5; 32]),
        }
    }

    #[test]
    fn a_signed_reading_verifies_only_as_signed() {
        let key = Keypair::from_seed_phrase("meter");
        let signed = reading().sign("island", &key);
        signed.verify("island").unwrap();
        assert!(signed.verify("other-chain").is_err());
        let mut more = signed.clone();
        more.reading.export_wh += 1;
        assert!(more.verify("island").is_err());
        let mut replayed = signed.clone();
        replayed.reading.seq += 1;
        assert!(replayed.verify("island").is_err());
        let forged = reading().sign("island", &Keypair::from_seed_phrase("someone else"));
        assert!(forged.verify("island").is_err());
    }
}
