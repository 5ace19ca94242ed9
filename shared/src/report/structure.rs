//! Structures: which FINESS a BAL is attached to, and the per-structure
//! contact recorded in the registry (`meta` key `structure/<FINESS>`, JSON
//! [`Contact`]), written by `mss-admin structure set`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::registry::{Mailbox, RegistryStore};

const PREFIX: &str = "structure/";

/// A structure: a FINESS (EG when the BAL has one, else EJ), or the BALs
/// of a domain attached to none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum StructureKey {
    FinessEg(String),
    FinessEj(String),
    /// A domain's BALs with no FINESS ("de ville / not attached").
    Unattached(String),
}

impl StructureKey {
    /// The structure of a BAL of `domain` (`m`: its registry entry).
    pub fn of(m: Option<&Mailbox>, domain: &str) -> StructureKey {
        match m {
            Some(Mailbox {
                finess_eg: Some(eg),
                ..
            }) => StructureKey::FinessEg(eg.clone()),
            Some(Mailbox {
                finess_ej: Some(ej),
                ..
            }) => StructureKey::FinessEj(ej.clone()),
            _ => StructureKey::Unattached(domain.to_string()),
        }
    }

    pub fn finess(&self) -> Option<&str> {
        match self {
            StructureKey::FinessEg(f) | StructureKey::FinessEj(f) => Some(f),
            StructureKey::Unattached(_) => None,
        }
    }

    /// The part of the report's file names naming the structure.
    pub fn file_id(&self) -> String {
        match self {
            StructureKey::FinessEg(f) => format!("finess-eg-{}", safe(f)),
            StructureKey::FinessEj(f) => format!("finess-ej-{}", safe(f)),
            StructureKey::Unattached(d) => format!("non-rattache-{}", safe(d)),
        }
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What the registry knows of a structure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub finess: String,
    pub name: Option<String>,
    /// Where `mss-export run` mails the report (`[report] mail_to_structures`).
    pub contact: Option<String>,
}

/// A FINESS is nine characters: digits, with `2A`/`2B` for Corsica.
///
/// # Errors
/// [`Error::Usage`] naming the value.
pub fn check_finess(f: &str) -> Result<()> {
    let ok = f.len() == 9 && f.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "FINESS {f:?}: expected 9 characters (digits, 2A/2B for Corsica)"
        )))
    }
}

/// Every structure's contact, by FINESS.
///
/// # Errors
/// Store errors.
pub fn contacts(reg: Option<&RegistryStore>) -> Result<BTreeMap<String, Contact>> {
    let Some(reg) = reg else {
        return Ok(BTreeMap::new());
    };
    Ok(reg
        .list_meta(PREFIX)?
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_value::<Contact>(v).ok())
        .map(|c| (c.finess.clone(), c))
        .collect())
}

/// Record (or update) a structure's name and contact.
///
/// # Errors
/// Store errors.
pub fn put(reg: &RegistryStore, c: &Contact) -> Result<()> {
    reg.put_meta_synced(
        &format!("{PREFIX}{}", c.finess),
        &serde_json::to_value(c).expect("json"),
    )
}
