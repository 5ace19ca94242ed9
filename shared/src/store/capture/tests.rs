use super::*;
use crate::model::{LoginRecord, MessageRecord, Record};
use crate::month::{from_micros, Month};
use jiff::tz::TimeZone;

fn cls() -> Classifier {
    Classifier::new(
        &["ch-a.mssante.fr".into(), "ch-b.mssante.fr".into()],
        TimeZone::get("Europe/Paris").unwrap(),
    )
}

fn msg(id: &str, from: &str, to: &[&str], at: &str, size: u64) -> Record {
    Record::Message(MessageRecord {
        mail_id: id.into(),
        queue_id: Some("Q1".into()),
        message_id: Some("<m@x>".into()),
        sender: from.into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        size,
        time_us: at.parse::<jiff::Timestamp>().unwrap().as_microsecond(),
        frontend: "proxy".into(),
    })
}

#[test]
fn rows_are_per_recipient_sorted_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = CaptureStore::open(&dir.path().join("c")).unwrap();
    let c = cls();
    let recs = vec![
        msg(
            "m2",
            "x@ch-a.mssante.fr",
            &["r1@out.fr"],
            "2026-10-05T10:00:00Z",
            50,
        ),
        msg(
            "m1",
            "y@ch-a.mssante.fr",
            &["r2@out.fr", "z@ch-b.mssante.fr"],
            "2026-10-05T09:00:00Z",
            70,
        ),
        msg(
            "m3",
            "in@else.fr",
            &["z@ch-b.mssante.fr"],
            "2026-10-06T09:00:00Z",
            10,
        ),
    ];
    s.apply(&recs, &c, true).unwrap();
    s.apply(&recs, &c, true).unwrap(); // replay: no duplicate
    let m = Month::parse("2026-10").unwrap();
    let mut rows = vec![];
    s.for_each_out(m, None, |r| {
        rows.push((r.domain, r.mail_id, r.recipient, r.size))
    })
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "ch-a.mssante.fr".into(),
                "m1".into(),
                "r2@out.fr".into(),
                70
            ),
            (
                "ch-a.mssante.fr".into(),
                "m1".into(),
                "z@ch-b.mssante.fr".into(),
                70
            ),
            (
                "ch-a.mssante.fr".into(),
                "m2".into(),
                "r1@out.fr".into(),
                50
            ),
        ]
    );
    let rcv = s.received(m).unwrap();
    assert_eq!(rcv.len(), 1);
    assert_eq!(
        rcv["z@ch-b.mssante.fr"],
        "2026-10-06T09:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_microsecond()
    );
}

#[test]
fn checkpoints_hold_unflushed_writes_from_the_primary_only() {
    let d = tempfile::tempdir().unwrap();
    let s = CaptureStore::open(&d.path().join("c")).unwrap();
    let l = |t: i64| {
        Record::Login(LoginRecord {
            bal: "a@ch-a.mssante.fr".into(),
            time_us: 1_790_000_000_000_000 + t,
            service: "imap".into(),
            source: "dovecot".into(),
        })
    };
    // In the WAL and memtable only: the primary keeps running.
    s.apply(&[l(1), l(2)], &cls(), true).unwrap();
    let m = Month::of(from_micros(1_790_000_000_000_000), &cls().tz);
    let sec = CaptureStore::open_secondary(&d.path().join("c"), &d.path().join("s")).unwrap();
    sec.checkpoint(&d.path().join("ck2")).unwrap();
    drop(sec);
    let partial = CaptureStore::open(&d.path().join("ck2")).unwrap();
    assert!(
        partial.logins(m).unwrap().is_empty(),
        "secondary checkpoints miss the memtable"
    );
    s.checkpoint(&d.path().join("ck")).unwrap();
    let back = CaptureStore::open(&d.path().join("ck")).unwrap();
    assert_eq!(
        back.logins(m).unwrap()[&("a@ch-a.mssante.fr".to_string(), "imap".to_string())],
        (1_790_000_000_000_002, 2)
    );
    drop(s);
}

#[test]
fn logins_keep_last_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let s = CaptureStore::open(&dir.path().join("c")).unwrap();
    let l = |t: i64| {
        Record::Login(LoginRecord {
            bal: "a@ch-a.mssante.fr".into(),
            time_us: 1_790_000_000_000_000 + t,
            service: "imap".into(),
            source: "dovecot".into(),
        })
    };
    s.apply(&[l(5), l(1)], &cls(), true).unwrap();
    s.apply(&[l(3)], &cls(), false).unwrap();
    let m = Month::of(from_micros(1_790_000_000_000_000), &cls().tz);
    let got = s.logins(m).unwrap();
    assert_eq!(
        got[&("a@ch-a.mssante.fr".to_string(), "imap".to_string())],
        (1_790_000_000_000_005, 3)
    );
}

#[test]
fn purge_drops_old_months_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = CaptureStore::open(&dir.path().join("c")).unwrap();
    let recs = vec![
        msg(
            "old",
            "x@ch-a.mssante.fr",
            &["r@o.fr"],
            "2025-01-05T10:00:00Z",
            1,
        ),
        msg(
            "new",
            "x@ch-a.mssante.fr",
            &["r@o.fr"],
            "2026-10-05T10:00:00Z",
            1,
        ),
    ];
    s.apply(&recs, &cls(), true).unwrap();
    s.purge_before(Month::parse("2025-10").unwrap()).unwrap();
    let mut n = 0;
    s.for_each_out(Month::parse("2025-01").unwrap(), None, |_| n += 1)
        .unwrap();
    assert_eq!(n, 0);
    s.for_each_out(Month::parse("2026-10").unwrap(), None, |_| n += 1)
        .unwrap();
    assert_eq!(n, 1);
    // The purged month's last sent date survives in the summary, and
    // only up to the end of the month asked for.
    let t = |at: &str| at.parse::<jiff::Timestamp>().unwrap().as_microsecond();
    let oct = Month::parse("2026-10").unwrap();
    let d = s.last_dates(oct, t("2026-11-01T00:00:00Z")).unwrap();
    assert_eq!(d.sent["x@ch-a.mssante.fr"], t("2026-10-05T10:00:00Z"));
    let d = s.last_dates(oct, t("2026-10-01T00:00:00Z")).unwrap();
    assert_eq!(d.sent["x@ch-a.mssante.fr"], t("2025-01-05T10:00:00Z"));
    // Purging again (daily) changes nothing.
    s.purge_before(Month::parse("2025-10").unwrap()).unwrap();
    let d = s.last_dates(oct, t("2026-10-01T00:00:00Z")).unwrap();
    assert_eq!(d.sent["x@ch-a.mssante.fr"], t("2025-01-05T10:00:00Z"));
}

#[test]
fn secondary_sees_primary_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c");
    let s = CaptureStore::open(&p).unwrap();
    s.apply(
        &[msg(
            "m",
            "x@ch-a.mssante.fr",
            &["r@o.fr"],
            "2026-10-05T10:00:00Z",
            9,
        )],
        &cls(),
        true,
    )
    .unwrap();
    let sec = CaptureStore::open_secondary(&p, &dir.path().join("sec")).unwrap();
    let mut n = 0;
    sec.for_each_out(
        Month::parse("2026-10").unwrap(),
        Some("ch-a.mssante.fr"),
        |_| n += 1,
    )
    .unwrap();
    assert_eq!(n, 1);
    assert!(
        CaptureStore::open(&p).is_err(),
        "second writer must be refused"
    );
}
