//! Random names and keys, and their hex: an epoch for a new store, a node's name in a
//! cluster, the key that signs sign-in cookies.

use std::time::{SystemTime, UNIX_EPOCH};

/// 32 bytes from the operating system's random source.
pub(crate) fn random_key() -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(key)
}

/// 32 bytes from the operating system's random source, as hex.
pub(crate) fn random_hex32() -> std::io::Result<String> {
    Ok(data_encoding::HEXLOWER.encode(&random_key()?))
}

/// A key of 64 hex digits as bytes.
pub(crate) fn key_bytes(hex: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// A new epoch: random, so that two stores never share one.
pub(crate) fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time and the process still tell stores apart.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (now ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
