//! `[coverage]`: from which day the operator captures every login of its BALs
//! (DESIGN.md config contract). Absent means "not covered": the Connexions
//! file never claims that a BAL never connected (SPEC.md "Connexions: never,
//! unknown, known").
//!
//! ```toml
//! [coverage]
//! logins_since = "2026-11-01"
//! [coverage.domains."ch-b.mssante.fr"]
//! logins_since = "2027-01-05"
//! ```

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// From this day every login to the operator's BALs is captured.
    pub logins_since: Option<Date>,
    /// Per-domain overrides (domain lowercased when looked up).
    #[serde(default)]
    pub domains: BTreeMap<String, DomainCoverage>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DomainCoverage {
    pub logins_since: Option<Date>,
}

impl Coverage {
    pub fn is_default(&self) -> bool {
        *self == Coverage::default()
    }

    /// The day from which logins of `domain` are all captured, if declared
    /// (the domain's override first, then the global value).
    pub fn logins_since(&self, domain: &str) -> Option<Date> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domains
            .iter()
            .find(|(k, _)| k.trim_end_matches('.').eq_ignore_ascii_case(&d))
            .and_then(|(_, c)| c.logins_since)
            .or(self.logins_since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_override() {
        let c: Coverage = toml::from_str(
            "logins_since = \"2026-11-01\"\n[domains.\"ch-b.mssante.fr\"]\nlogins_since = \"2027-01-05\"\n",
        )
        .unwrap();
        assert_eq!(
            c.logins_since("ch-a.mssante.fr"),
            Some(jiff::civil::date(2026, 11, 1))
        );
        assert_eq!(
            c.logins_since("CH-B.mssante.fr"),
            Some(jiff::civil::date(2027, 1, 5))
        );
        assert_eq!(Coverage::default().logins_since("x"), None);
        assert!(toml::from_str::<Coverage>("logins_sinse = \"2026-11-01\"").is_err());
        assert!(toml::from_str::<Coverage>("logins_since = \"2026-13-01\"").is_err());
    }
}
