//! One month's figures for every structure, in one pass over the rows and
//! the Connexions lines of [`crate::figures::Context`].

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use super::{
    kind_name, ConnexionLine, Connexions, Day, ExcludedBal, Files, Mailboxes, Report, Sent,
    SentLine, StructureKey, ToAct, TopBal, TrustSpace, TypeLine, KINDS,
};
use crate::config::Config;
use crate::error::Result;
use crate::figures::{BalLine, Context, Fate};
use crate::indicators::connexions::Rule;
use crate::listeblanche::ListeBlanche;
use crate::month::{format_csv_date, from_micros, Month};
use crate::store::capture::CaptureStore;
use crate::store::registry::{Mailbox, RegistryStore};

fn empty(month: Month, key: StructureKey) -> Report {
    Report {
        month: month.to_string(),
        structure: key,
        name: None,
        contact: None,
        domains: vec![],
        mailboxes: Mailboxes::default(),
        sent: Sent::default(),
        connexions: Connexions::default(),
        previous_month: None,
        year_before: None,
        files: Files::default(),
    }
}

#[derive(Default)]
struct Acc {
    types: HashMap<&'static str, (u64, u64)>,
    sent_types: HashMap<&'static str, [u64; 3]>,
    days: BTreeMap<String, [u64; 2]>,
    bals: HashMap<String, (&'static str, [u64; 3])>,
}

/// Every structure's figures for one month (no comparisons).
pub(super) fn gather(
    cfg: &Config,
    cap: &CaptureStore,
    reg: Option<&RegistryStore>,
    month: Month,
    now: Timestamp,
    liste: Option<&ListeBlanche>,
) -> Result<BTreeMap<StructureKey, Report>> {
    let ctx = Context::load(cfg, cap, reg, month, now)?;
    let inside = |rcpt: &str| -> bool {
        let d = crate::config::domain_of(rcpt).unwrap_or_default();
        cfg.operator.domains.contains(&d)
            || cfg.policy.as_ref().is_some_and(|p| p.allow.contains(&d))
            || liste.is_some_and(|l| l.contains(&d))
    };
    let mut reports: BTreeMap<StructureKey, Report> = BTreeMap::new();
    let mut accs: BTreeMap<StructureKey, Acc> = BTreeMap::new();
    let mut domains = cfg.operator.domains.clone();
    domains.sort();
    let month_days = days_of(month);
    let three_back = month.prev().prev().to_string();
    for d in &domains {
        let boxes: HashMap<&str, &Mailbox> = ctx
            .mailboxes(d)
            .iter()
            .map(|m| (m.bal.as_str(), m))
            .collect();
        let key_of = |bal: &str| StructureKey::of(boxes.get(bal).copied(), d);
        let mut last_id = String::new();
        let tally = ctx.rows(cap, d, |r| {
            if r.fate != Fate::Written {
                return;
            }
            let m = boxes.get(r.sender.as_str()).copied();
            let key = StructureKey::of(m, d);
            let kind = kind_name(m);
            let rep = reports
                .entry(key.clone())
                .or_insert_with(|| empty(month, key.clone()));
            let acc = accs.entry(key).or_default();
            let new_msg = r.mail_id != last_id;
            if new_msg {
                last_id.clone_from(&r.mail_id);
            }
            let (m1, b1) = (u64::from(new_msg), if new_msg { r.size } else { 0 });
            rep.sent.messages += m1;
            rep.sent.rows += 1;
            rep.sent.bytes += b1;
            if liste.is_some() {
                let t = rep.sent.trust_space.get_or_insert_with(TrustSpace::default);
                if inside(&r.recipient) {
                    t.inside += 1;
                } else {
                    t.outside += 1;
                }
            }
            for (slot, add) in acc
                .sent_types
                .entry(kind)
                .or_default()
                .iter_mut()
                .zip([m1, 1, b1])
            {
                *slot += add;
            }
            let day = format_csv_date(from_micros(r.time_us), &ctx.tz)[..10].to_string();
            let dc = acc.days.entry(day).or_default();
            dc[0] += m1;
            dc[1] += 1;
            let b = acc.bals.entry(r.sender.clone()).or_insert((kind, [0; 3]));
            for (slot, add) in b.1.iter_mut().zip([m1, 1, b1]) {
                *slot += add;
            }
        })?;
        for l in ctx.connexions(d, &tally.senders) {
            let m = boxes.get(l.bal.as_str()).copied();
            let key = key_of(&l.bal);
            let rep = reports
                .entry(key.clone())
                .or_insert_with(|| empty(month, key.clone()));
            if !rep.domains.contains(d) {
                rep.domains.push(d.clone());
            }
            let acc = accs.entry(key).or_default();
            let kind = kind_name(m);
            let t = acc.types.entry(kind).or_default();
            if l.included {
                t.0 += 1;
            } else {
                t.1 += 1;
            }
            connexion(rep, &l, kind, m, &month.to_string(), &three_back);
        }
    }
    for (key, acc) in accs {
        let Some(rep) = reports.get_mut(&key) else {
            continue;
        };
        finish(rep, acc, &month_days);
    }
    Ok(reports)
}

/// Count one line of the Connexions files in its structure's report.
fn connexion(
    rep: &mut Report,
    l: &BalLine,
    kind: &'static str,
    m: Option<&Mailbox>,
    month: &str,
    three_back: &str,
) {
    if !l.included {
        if let Some(because) = l.excluded_because {
            rep.mailboxes.excluded.push(ExcludedBal {
                bal: l.bal.clone(),
                kind,
                because,
                detail: l.detail.clone(),
            });
        }
        return;
    }
    let (Some(date), Some(rule)) = (l.date.clone(), l.rule) else {
        return;
    };
    let c = &mut rep.connexions;
    match rule {
        Rule::Never => c.never += 1,
        Rule::Unknown => c.unknown += 1,
        _ if date.starts_with(month) => c.connected_in_month += 1,
        _ => c.connected_earlier += 1,
    }
    if kind == "personnelle" {
        let why = match rule {
            Rule::Never => Some("never"),
            Rule::Unknown => None,
            _ => (date.as_str() < three_back).then_some("over_3_months"),
        };
        if let Some(why) = why {
            c.to_act.push(ToAct {
                bal: l.bal.clone(),
                date: date.clone(),
                why,
            });
        }
        if m.is_some_and(|m| m.finess_eg.is_none() && m.finess_ej.is_none()) {
            c.personal_without_finess.push(l.bal.clone());
        }
    }
    c.lines.push(ConnexionLine {
        bal: l.bal.clone(),
        kind,
        date,
        rule,
    });
}

fn finish(rep: &mut Report, acc: Acc, month_days: &[String]) {
    rep.mailboxes.by_type = KINDS
        .iter()
        .map(|k| {
            let (i, e) = acc.types.get(k).copied().unwrap_or_default();
            TypeLine {
                kind: k,
                included: i,
                excluded: e,
            }
        })
        .collect();
    rep.sent.by_type = KINDS
        .iter()
        .map(|k| {
            let [messages, rows, bytes] = acc.sent_types.get(k).copied().unwrap_or_default();
            SentLine {
                kind: k,
                messages,
                rows,
                bytes,
            }
        })
        .collect();
    rep.sent.days = month_days
        .iter()
        .map(|d| {
            let [messages, rows] = acc.days.get(d).copied().unwrap_or_default();
            Day {
                day: d.clone(),
                messages,
                rows,
            }
        })
        .collect();
    let mut top: Vec<TopBal> = acc
        .bals
        .into_iter()
        .map(|(bal, (kind, [messages, rows, bytes]))| TopBal {
            bal,
            kind,
            messages,
            rows,
            bytes,
        })
        .collect();
    top.sort_by(|a, b| {
        (b.rows, b.messages)
            .cmp(&(a.rows, a.messages))
            .then_with(|| a.bal.cmp(&b.bal))
    });
    top.truncate(10);
    rep.sent.top = top;
    rep.domains.sort();
    let c = &mut rep.connexions;
    c.lines.sort_by(|a, b| a.bal.cmp(&b.bal));
    c.to_act.sort_by(|a, b| a.bal.cmp(&b.bal));
    c.personal_without_finess.sort();
    rep.mailboxes.excluded.sort_by(|a, b| a.bal.cmp(&b.bal));
}

/// `YYYY-MM-DD` of every day of `m`.
fn days_of(m: Month) -> Vec<String> {
    let (first, next) = (m.first_day(), m.next().first_day());
    let mut out = vec![];
    let mut d = first;
    while d < next {
        out.push(d.to_string());
        d = d.tomorrow().unwrap_or(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::membership::Excluded;
    use crate::store::registry::BalType;

    fn line(bal: &str, date: Option<&str>, rule: Option<Rule>, ex: Option<Excluded>) -> BalLine {
        BalLine {
            bal: bal.into(),
            domain: "d.fr".into(),
            date: date.map(str::to_string),
            rule,
            included: ex.is_none(),
            excluded_because: ex,
            detail: ex.map(|_| "why".into()),
            registered: true,
            inconsistent: false,
        }
    }

    fn personal(eg: Option<&str>) -> Mailbox {
        Mailbox {
            bal: "x@d.fr".into(),
            kind: BalType::Personnelle,
            test: false,
            finess_ej: None,
            finess_eg: eg.map(str::to_string),
            login_tracking: true,
            history: vec![],
        }
    }

    #[test]
    fn connexions_lines_are_counted_and_personal_bals_to_act_on_listed() {
        let mut r = empty(
            Month::parse("2026-11").unwrap(),
            StructureKey::Unattached("d.fr".into()),
        );
        let (m, three) = ("2026-11", "2026-09");
        let with = personal(Some("750000001"));
        let without = personal(None);
        let cases = [
            (
                line(
                    "in@d.fr",
                    Some("2026-11-03 10:00:00"),
                    Some(Rule::Login),
                    None,
                ),
                "personnelle",
                Some(&with),
            ),
            (
                line(
                    "recent@d.fr",
                    Some("2026-09-01 00:00:00"),
                    Some(Rule::Login),
                    None,
                ),
                "personnelle",
                Some(&with),
            ),
            (
                line(
                    "old@d.fr",
                    Some("2026-08-31 23:59:59"),
                    Some(Rule::Login),
                    None,
                ),
                "personnelle",
                Some(&without),
            ),
            (
                line("never@d.fr", Some(""), Some(Rule::Never), None),
                "personnelle",
                Some(&with),
            ),
            (
                line(
                    "unk@d.fr",
                    Some("1900-01-01 00:00:00"),
                    Some(Rule::Unknown),
                    None,
                ),
                "personnelle",
                Some(&with),
            ),
            (
                line(
                    "app@d.fr",
                    Some("2026-01-01 00:00:00"),
                    Some(Rule::LastExchange),
                    None,
                ),
                "applicative",
                None,
            ),
            (
                line("gone@d.fr", None, None, Some(Excluded::Deleted)),
                "personnelle",
                Some(&with),
            ),
        ];
        for (l, kind, mb) in &cases {
            connexion(&mut r, l, kind, *mb, m, three);
        }
        let c = &r.connexions;
        assert_eq!(
            (
                c.connected_in_month,
                c.connected_earlier,
                c.never,
                c.unknown
            ),
            (1, 3, 1, 1)
        );
        let act: Vec<(&str, &str)> = c.to_act.iter().map(|a| (a.bal.as_str(), a.why)).collect();
        // An applicative BAL is never "to act on"; the 1900 date is no proof.
        assert_eq!(
            act,
            [("old@d.fr", "over_3_months"), ("never@d.fr", "never")]
        );
        assert_eq!(c.personal_without_finess, ["old@d.fr"]);
        assert_eq!(c.lines.len(), 6);
        assert_eq!(r.mailboxes.excluded.len(), 1);
        assert_eq!(r.mailboxes.excluded[0].because, Excluded::Deleted);
    }

    #[test]
    fn every_day_of_the_month() {
        let d = days_of(Month::parse("2028-02").unwrap());
        assert_eq!(
            (d.len(), d[0].as_str(), d[28].as_str()),
            (29, "2028-02-01", "2028-02-29")
        );
    }

    #[test]
    fn structure_is_eg_then_ej_then_the_domain() {
        let mut m = personal(Some("750000001"));
        m.finess_ej = Some("750000099".into());
        assert_eq!(
            StructureKey::of(Some(&m), "d.fr"),
            StructureKey::FinessEg("750000001".into())
        );
        m.finess_eg = None;
        assert_eq!(
            StructureKey::of(Some(&m), "d.fr"),
            StructureKey::FinessEj("750000099".into())
        );
        assert_eq!(
            StructureKey::of(None, "d.fr"),
            StructureKey::Unattached("d.fr".into())
        );
        assert_eq!(
            StructureKey::Unattached("a b".into()).file_id(),
            "non-rattache-a_b"
        );
    }

    #[test]
    fn formats_and_settings_are_checked() {
        use super::super::settings::ReportSettings;
        use super::super::write::Format;
        assert_eq!(
            Format::parse_list("json, html,json").unwrap(),
            [Format::Json, Format::Html]
        );
        assert_eq!(
            Format::parse_list("pdf").unwrap_err().to_string(),
            "--format pdf: expected html, json or csv (comma-separated)"
        );
        let s = ReportSettings {
            mail_to_structures: true,
            ..ReportSettings::default()
        };
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "configuration: key `report.from`: required with mail_to_structures = true (the sender of the report mails)"
        );
        let s = ReportSettings {
            lang: "de".into(),
            ..ReportSettings::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`report.lang`"));
    }
}
