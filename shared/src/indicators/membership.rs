//! Whether a BAL belongs to month M's files, or why it is excluded (SPEC.md
//! "Which BALs are left out of both files of month M-1"; here `r` is the
//! month of the figures, M-1 in the seeds).

use jiff::civil::Date;
use serde::Serialize;

use crate::month::Month;
use crate::store::registry::{Mailbox, Status, StatusChange};

/// Why a BAL is left out of a month's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Excluded {
    Test,
    Suspended,
    Deleted,
    /// No status known before the end of the month.
    NotYetRegistered,
}

impl Excluded {
    pub fn as_str(self) -> &'static str {
        match self {
            Excluded::Test => "test",
            Excluded::Suspended => "suspended",
            Excluded::Deleted => "deleted",
            Excluded::NotYetRegistered => "not_yet_registered",
        }
    }
}

/// The status in force before `day` (last change dated before it; an
/// undated change is "since an unknown date"). `history` is chronological.
pub fn status_before(history: &[StatusChange], day: Date) -> Option<&StatusChange> {
    history
        .iter()
        .rev()
        .find(|c| c.date.is_none_or(|d| d < day))
}

/// The day the registry dates the BAL's creation: its first status, if dated.
/// A first registration without a date proves no creation date.
pub fn created(history: &[StatusChange]) -> Option<Date> {
    history.first().and_then(|c| c.date)
}

/// A BAL left out of month `r`: the kind, and a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub kind: Excluded,
    pub detail: String,
}

impl Excluded {
    /// Whether the BAL's Echanges rows are left out too. A BAL not yet
    /// registered during the month keeps its rows (a registry creation date
    /// never drops mail: the build reports the date as inconsistent).
    pub fn drops_rows(self) -> bool {
        self != Excluded::NotYetRegistered
    }
}

/// Why a BAL is left out of month `r`, or `None` if it is in
/// (`history`: as recorded by the month's cut-off, see
/// [`crate::store::registry::Mailbox::as_recorded_by`]):
/// - test BALs never;
/// - a status known before the end of `r` is needed (else not yet registered);
/// - judged on the status in force at the end of the month after `r`:
///   active → in; suspended or deleted on a date in `r` or later → in (also
///   when first registered so); earlier → out.
pub fn excluded(test: bool, history: &[StatusChange], r: Month) -> Option<Exclusion> {
    if test {
        return Some(Exclusion {
            kind: Excluded::Test,
            detail: "test mailbox".into(),
        });
    }
    let not_yet = || Exclusion {
        kind: Excluded::NotYetRegistered,
        detail: format!("not yet registered during {r}"),
    };
    if status_before(history, r.next().first_day()).is_none() {
        return Some(not_yet());
    }
    let c = status_before(history, r.next().next().first_day())?;
    match (c.status, c.date) {
        (Status::Active, _) => None,
        (st, Some(d)) if d < r.first_day() => Some(Exclusion {
            kind: if st == Status::Deleted {
                Excluded::Deleted
            } else {
                Excluded::Suspended
            },
            detail: format!("{} since {d}, before {r}", st.as_str()),
        }),
        _ => None,
    }
}

impl Mailbox {
    /// Whether the BAL appears in the files of month `r`
    /// ([`excluded`]).
    pub fn included_in(&self, r: Month) -> bool {
        self.excluded_from(r).is_none()
    }

    /// Why the BAL is left out of the files of month `r`, or `None` if it is in them.
    pub fn excluded_from(&self, r: Month) -> Option<String> {
        excluded(self.test, &self.history, r).map(|e| e.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn ch(status: Status, d: Option<Date>) -> StatusChange {
        StatusChange {
            status,
            date: d,
            recorded: None,
        }
    }

    #[test]
    fn exclusions() {
        let r = Month::parse("2026-11").unwrap();
        let nov = Some(date(2026, 11, 10));
        let dec = Some(date(2026, 12, 3));
        let oct = Some(date(2026, 10, 2));
        let jan = Some(date(2027, 1, 2));
        let kind = |t, h: &[StatusChange]| excluded(t, h, r).map(|e| e.kind);
        let act = ch(Status::Active, None);
        assert_eq!(kind(false, std::slice::from_ref(&act)), None);
        assert_eq!(kind(true, std::slice::from_ref(&act)), Some(Excluded::Test));
        assert_eq!(
            kind(false, &[act.clone(), ch(Status::Suspended, oct)]),
            Some(Excluded::Suspended)
        );
        assert_eq!(
            kind(false, &[act.clone(), ch(Status::Deleted, oct)]),
            Some(Excluded::Deleted)
        );
        // Suspended or deleted during r or the month after: kept.
        assert_eq!(
            kind(false, &[act.clone(), ch(Status::Suspended, nov)]),
            None
        );
        assert_eq!(kind(false, &[act.clone(), ch(Status::Deleted, dec)]), None);
        // A change after the month after does not alter r.
        assert_eq!(
            kind(
                false,
                &[
                    act.clone(),
                    ch(Status::Deleted, oct),
                    ch(Status::Active, jan)
                ]
            ),
            Some(Excluded::Deleted)
        );
        // First registered as suspended during r: kept.
        assert_eq!(kind(false, &[ch(Status::Suspended, nov)]), None);
        // Created after r: not yet.
        assert_eq!(
            kind(false, &[ch(Status::Active, dec)]),
            Some(Excluded::NotYetRegistered)
        );
        assert_eq!(created(std::slice::from_ref(&act)), None);
        assert_eq!(
            created(&[ch(Status::Active, nov), ch(Status::Suspended, dec)]),
            nov
        );
    }
}
