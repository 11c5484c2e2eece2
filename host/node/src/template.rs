//! Genesis instantiate messages name accounts and contracts (`{account:NAME}`,
//! `{contract:LABEL}`) and the chain's settings (`{period_ms}`, ...); these are filled in
//! before the message is sent.

use crate::NodeError;
use crate::genesis::Genesis;
use gridledger_types::Address;
use std::collections::BTreeMap;

/// Fills `{account:NAME}`, `{contract:LABEL}`, `{genesis_time_ms}`, `{period_ms}`,
/// `{market_start_ms}`, `{sudo_gas}`, `{governance}`, `{grid}` and `{devices}` in a genesis instantiate
/// message.
pub(crate) fn fill(
    msg: &str,
    genesis: &Genesis,
    accounts: &BTreeMap<String, Address>,
    contracts: &BTreeMap<String, Address>,
) -> Result<String, NodeError> {
    let mut out = msg
        .replace("{genesis_time_ms}", &genesis.genesis_time_ms.to_string())
        .replace("{governance}", &Address::governance().to_hex())
        .replace("{grid}", &genesis.grid_json());
    if out.contains("{devices}") {
        // Without `[devices]` the list would be empty: a market with no meters, silently.
        if genesis.devices.is_none() {
            return Err(NodeError::Config(
                "a genesis message uses {devices}, but genesis has no [devices] (one-node runs \
                 that drop the readings pipeline keep the list with drop_device_readings)"
                    .into(),
            ));
        }
        out = out.replace("{devices}", &genesis.devices_json());
    }
    if let Some(m) = &genesis.market {
        out = out
            .replace("{period_ms}", &m.period_ms.to_string())
            .replace("{sudo_gas}", &m.sudo_gas.to_string())
            .replace(
                "{market_start_ms}",
                &m.start(genesis.genesis_time_ms).to_string(),
            );
    }
    fill_names(&out, accounts, contracts)
}

/// Replaces each `{account:NAME}` and `{contract:LABEL}` in one pass over `text` (a
/// replace per name was quadratic: a genesis of 10,000 accounts whose market lists 10,000
/// devices took seconds to load).
fn fill_names(
    text: &str,
    accounts: &BTreeMap<String, Address>,
    contracts: &BTreeMap<String, Address>,
) -> Result<String, NodeError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let unknown = || {
            NodeError::Config(format!(
                "genesis message refers to an unknown name: {}",
                tail.chars().take(40).collect::<String>()
            ))
        };
        let named = [("{account:", accounts), ("{contract:", contracts)]
            .into_iter()
            .find_map(|(tag, names)| Some((tail.strip_prefix(tag)?, names)));
        match named {
            Some((name_and_rest, names)) => {
                let end = name_and_rest.find('}').ok_or_else(unknown)?;
                let address = names.get(&name_and_rest[..end]).ok_or_else(unknown)?;
                out.push_str(&address.to_hex());
                rest = &name_and_rest[end + 1..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (BTreeMap<String, Address>, BTreeMap<String, Address>) {
        (
            [("wind".to_string(), Address([1; 32]))].into(),
            [("pricing".to_string(), Address([2; 32]))].into(),
        )
    }

    #[test]
    fn names_are_filled_and_other_braces_kept() {
        let (a, c) = names();
        let got = fill_names(
            r#"{"seller":"{account:wind}","pricing":"{contract:pricing}","x":{"y":1}}"#,
            &a,
            &c,
        )
        .unwrap();
        assert_eq!(
            got,
            format!(
                r#"{{"seller":"{}","pricing":"{}","x":{{"y":1}}}}"#,
                Address([1; 32]).to_hex(),
                Address([2; 32]).to_hex()
            )
        );
    }

    /// Found by review: without `[devices]`, `{devices}` rendered `[]`, a market with no
    /// meters that refused every forecast and offer without saying why.
    #[test]
    fn devices_without_a_devices_section_are_refused() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut g = Genesis::load(&repo.join("genesis/island.toml")).unwrap();
        let (a, c) = (g.addresses(), BTreeMap::new());
        let listed = fill(r#"{"devices": {devices}}"#, &g, &a, &c).unwrap();
        assert!(listed.contains(&a["meter-wind-1"].to_hex()), "{listed}");
        g.devices = None;
        let e = fill(r#"{"devices": {devices}}"#, &g, &a, &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("genesis has no [devices]"), "{e}");
    }

    #[test]
    fn unknown_or_unclosed_names_are_refused() {
        let (a, c) = names();
        for bad in [
            r#"{"s":"{account:nobody}"}"#,
            r#"{"s":"{contract:wind}"}"#,
            r#"{"s":"{account:wind"#,
            "{account:ééééééééééééééééééééééééééééééééééééééééé",
        ] {
            let e = fill_names(bad, &a, &c).unwrap_err().to_string();
            assert!(e.contains("unknown name"), "{bad}: {e}");
        }
    }
}
