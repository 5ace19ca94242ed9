//! `mss-admin reconcile --fill`: rows for the recipients the log proves
//! passed while the milter was down (`milter_down`), and for nothing else.
//!
//! TAILLE is estimated: Postfix's `size=` minus the median `size= − TAILLE`
//! of the month's matched captured messages of the same origin (smtpd or
//! pickup: pickup's queue file has no `Received:` from smtpd). With no
//! matched message of that origin, the median over all matched messages;
//! with none at all, `size=` itself (an upper bound). The MAIL_ID is derived
//! from (node, time, queue id): filling twice writes the same keys.

use mss_shared::model::MailIdGen;
use mss_shared::store::filled::Filled;

use super::episodes::Origin;
use super::Report;

/// The median of `v` (the lower middle for an even count); `None` if empty.
pub fn median(mut v: Vec<i64>) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// The overhead to subtract for a message of `origin`.
pub fn overhead(report: &Report, origin: Origin) -> i64 {
    let of = |o: Option<Origin>| {
        report
            .overhead
            .iter()
            .filter(|(x, _)| o.is_none_or(|o| *x == o))
            .map(|(_, d)| *d)
            .collect::<Vec<_>>()
    };
    let same = (origin != Origin::Unknown)
        .then(|| median(of(Some(origin))))
        .flatten();
    same.or_else(|| median(of(None))).unwrap_or(0)
}

/// The rows `--fill` adds for `report`'s `milter_down` recipients, as node
/// `node`.
pub fn rows(report: &Report, node: &str) -> Vec<Filled> {
    let ids = MailIdGen::new(node);
    report
        .missing
        .iter()
        .filter(|m| m.reason == "milter_down")
        .map(|m| {
            let origin = m.origin.unwrap_or(Origin::Unknown);
            let over = overhead(report, origin);
            Filled {
                domain: m.domain.clone(),
                time_us: m.time_us,
                mail_id: ids.make(m.time_us, Some(&m.queue_id)),
                sender: m.sender.clone(),
                recipient: m.recipient.clone(),
                size: (m.size as i64 - over).max(1) as u64,
                logged_size: m.size,
                overhead: over,
                queue_id: m.queue_id.clone(),
                origin: match origin {
                    Origin::Smtpd => "smtpd",
                    Origin::Pickup => "pickup",
                    Origin::Unknown => "unknown",
                }
                .into(),
                estimated: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::reconcile::episodes::Message;
    use crate::admin::reconcile::missing::MissingList;
    use crate::admin::reconcile::Coverage;

    /// Message `q` with its recipients, all missing for `reason`.
    fn missing(
        list: &mut MissingList,
        q: &str,
        rcpts: &[&str],
        reason: &str,
        origin: Origin,
        size: u64,
    ) {
        let m = Message {
            instance: "postfix".into(),
            queue_id: q.into(),
            time_us: 1_790_000_000_000_000,
            seq: list.len() as u64,
            origin,
            sender: "a@op.example".into(),
            size,
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            milter_down: reason == "milter_down",
            proxy_down: reason == "proxy_down",
            content_seen: true,
        };
        list.add("op.example", &m, rcpts.iter().copied());
    }

    #[test]
    fn median_is_the_lower_middle() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5]), Some(5));
        assert_eq!(median(vec![9, 1, 5]), Some(5));
        assert_eq!(median(vec![4, 1, 9, 6]), Some(4));
    }

    #[test]
    fn only_milter_down_is_filled_with_the_same_origin_median() {
        let mut list = MissingList::new(jiff::tz::TimeZone::UTC);
        missing(
            &mut list,
            "Q1",
            &["x@ext.test", "y@ext.test"],
            "milter_down",
            Origin::Smtpd,
            1000,
        );
        missing(
            &mut list,
            "Q2",
            &["z@ext.test"],
            "unexplained",
            Origin::Smtpd,
            900,
        );
        missing(
            &mut list,
            "Q3",
            &["w@ext.test"],
            "proxy_down",
            Origin::Smtpd,
            900,
        );
        missing(
            &mut list,
            "Q4",
            &["v@ext.test"],
            "milter_down",
            Origin::Pickup,
            500,
        );
        missing(
            &mut list,
            "Q5",
            &["u@ext.test"],
            "milter_down",
            Origin::Unknown,
            700,
        );
        list.sort();
        let report = Report {
            month: "2026-10".into(),
            matched: 4,
            filled: 0,
            missing: list,
            phantom: vec![],
            by_domain: vec![],
            coverage: Coverage::default(),
            overhead: vec![
                (Origin::Smtpd, 220),
                (Origin::Smtpd, 230),
                (Origin::Smtpd, 250),
                (Origin::Pickup, 100),
            ],
        };
        let got = rows(&report, "mx1");
        let view: Vec<_> = got
            .iter()
            .map(|f| (f.recipient.as_str(), f.size, f.overhead, f.origin.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                ("x@ext.test", 770, 230, "smtpd"),
                ("y@ext.test", 770, 230, "smtpd"),
                ("v@ext.test", 400, 100, "pickup"),
                // Unknown origin: the median over every matched message.
                ("u@ext.test", 480, 220, "unknown"),
            ]
        );
        assert_eq!(got[0].mail_id, got[1].mail_id, "one message, one MAIL_ID");
        assert!(got[0].mail_id.starts_with("mx1.") && got[0].mail_id.ends_with(".Q1"));
        assert_eq!(rows(&report, "mx1"), got, "deterministic: same keys twice");
        assert!(got.iter().all(|f| f.estimated));
        // No matched message at all: size= as is.
        let bare = Report {
            overhead: vec![],
            ..report
        };
        assert_eq!(rows(&bare, "mx1")[0].size, 1000);
    }
}
