//! The Connexions date of a BAL for month M and the rule that produced it
//! (SPEC.md "Connexions: never, unknown, known"). Pure: the caller gathers
//! the facts ([`Facts`]) up to the end of M.

use jiff::civil::Date;
use serde::Serialize;

/// `1900-01-01 00:00:00`: no information (Référentiel v1.3.1).
pub const UNKNOWN_DATE: &str = "1900-01-01 00:00:00";

/// Which rule decided a BAL's Connexions date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An applicative BAL's last login.
    AppLogin,
    /// An applicative BAL with no login known: its last exchange (sent or received).
    LastExchange,
    /// The last login known (any source, any age).
    Login,
    /// No login, logins covered for the BAL's whole life: empty date.
    Never,
    /// No information: `1900-01-01 00:00:00`.
    Unknown,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AppLogin => "app_login",
            Rule::LastExchange => "last_exchange",
            Rule::Login => "login",
            Rule::Never => "never",
            Rule::Unknown => "unknown",
        }
    }
}

/// What is known of a BAL up to the end of month M (times in µs since the epoch, UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    pub applicative: bool,
    /// Last login known, any source, any age, up to the end of M.
    pub last_login: Option<i64>,
    /// Last mail sent or received, any age, up to the end of M.
    pub last_exchange: Option<i64>,
    /// The day the registry dates the BAL's creation (its first status, dated).
    /// `None`: first registered without a date, or not in the registry.
    pub created: Option<Date>,
    /// `[coverage] logins_since` for the BAL's domain.
    pub logins_since: Option<Date>,
}

/// The decision: `at` is the time to format (µs UTC) for rules that carry
/// one; `Never` is the empty string, `Unknown` is [`UNKNOWN_DATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub rule: Rule,
    pub at: Option<i64>,
}

/// Decide the Connexions date, rules in SPEC.md order.
pub fn decide(f: &Facts) -> Decision {
    if f.applicative {
        if let Some(t) = f.last_login {
            return Decision {
                rule: Rule::AppLogin,
                at: Some(t),
            };
        }
        if let Some(t) = f.last_exchange {
            return Decision {
                rule: Rule::LastExchange,
                at: Some(t),
            };
        }
    }
    if let Some(t) = f.last_login {
        return Decision {
            rule: Rule::Login,
            at: Some(t),
        };
    }
    match (f.created, f.logins_since) {
        (Some(c), Some(s)) if c >= s => Decision {
            rule: Rule::Never,
            at: None,
        },
        _ => Decision {
            rule: Rule::Unknown,
            at: None,
        },
    }
}

impl Decision {
    /// The exact string written in the file; `fmt` formats a time.
    pub fn render(&self, fmt: impl Fn(i64) -> String) -> String {
        match (self.rule, self.at) {
            (Rule::Never, _) => String::new(),
            (_, Some(t)) => fmt(t),
            _ => UNKNOWN_DATE.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn d(f: Facts) -> (Rule, Option<i64>) {
        let r = decide(&f);
        (r.rule, r.at)
    }

    #[test]
    fn rules_in_order() {
        let since = Some(date(2026, 11, 1));
        // Applicative: login, else last exchange, else the personal rules.
        let app = Facts {
            applicative: true,
            logins_since: since,
            ..Facts::default()
        };
        assert_eq!(
            d(Facts {
                last_login: Some(5),
                last_exchange: Some(9),
                ..app
            }),
            (Rule::AppLogin, Some(5))
        );
        assert_eq!(
            d(Facts {
                last_exchange: Some(9),
                ..app
            }),
            (Rule::LastExchange, Some(9))
        );
        assert_eq!(d(app), (Rule::Unknown, None));
        assert_eq!(
            d(Facts {
                created: Some(date(2026, 11, 1)),
                ..app
            }),
            (Rule::Never, None)
        );
        // Personal: a known login wins, any age; exchanges never count.
        let p = Facts {
            logins_since: since,
            created: Some(date(2026, 12, 3)),
            ..Facts::default()
        };
        assert_eq!(
            d(Facts {
                last_login: Some(7),
                last_exchange: Some(9),
                ..p
            }),
            (Rule::Login, Some(7))
        );
        assert_eq!(
            d(Facts {
                last_exchange: Some(9),
                ..p
            }),
            (Rule::Never, None)
        );
        // Created before coverage, undated, or coverage not declared: unknown.
        assert_eq!(
            d(Facts {
                created: Some(date(2026, 10, 31)),
                ..p
            }),
            (Rule::Unknown, None)
        );
        assert_eq!(d(Facts { created: None, ..p }), (Rule::Unknown, None));
        assert_eq!(
            d(Facts {
                logins_since: None,
                ..p
            }),
            (Rule::Unknown, None)
        );
    }

    #[test]
    fn render() {
        let f = |t: i64| format!("t{t}");
        assert_eq!(
            Decision {
                rule: Rule::Never,
                at: None
            }
            .render(f),
            ""
        );
        assert_eq!(
            Decision {
                rule: Rule::Unknown,
                at: None
            }
            .render(f),
            UNKNOWN_DATE
        );
        assert_eq!(
            Decision {
                rule: Rule::Login,
                at: Some(3)
            }
            .render(f),
            "t3"
        );
        assert_eq!(Rule::LastExchange.as_str(), "last_exchange");
    }
}
