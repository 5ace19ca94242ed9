use super::*;

const LOG: &str = "\
Dec 02 10:00:00 mx postfix/smtpd[10]: connect from c[10.0.0.1]
Dec 02 10:00:01 mx postfix/smtpd[10]: AAAAA1: client=c[10.0.0.1]
Dec 02 10:00:01 mx postfix/cleanup[20]: AAAAA1: message-id=<m1@a.fr>
Dec 02 10:00:01 mx postfix/qmgr[30]: AAAAA1: from=<alice+x@a.fr>, size=622, nrcpt=2 (queue active)
Dec 02 10:00:02 mx postfix/smtp[40]: AAAAA1: to=<bob@ext.fr>, relay=r[1.1.1.1]:25, delay=1, status=deferred (try later)
Dec 02 10:00:02 mx postfix/smtp[40]: AAAAA1: to=<carol@ext.fr>, relay=r[1.1.1.1]:25, delay=1, status=sent (250 ok)
Dec 02 10:05:02 mx postfix/qmgr[30]: AAAAA1: from=<alice+x@a.fr>, size=622, nrcpt=2 (queue active)
Dec 02 10:05:03 mx postfix/smtp[40]: AAAAA1: to=<bob@ext.fr>, relay=r[1.1.1.1]:25, delay=300, status=sent (250 ok)
Dec 02 10:05:03 mx postfix/qmgr[30]: AAAAA1: removed
Dec 02 10:06:00 mx postfix/smtpd[10]: disconnect from c[10.0.0.1]
Dec 02 11:00:00 mx postfix/smtpd[11]: connect from c[10.0.0.1]
Dec 02 11:00:00 mx postfix/smtpd[11]: warning: connect to Milter service inet:127.0.0.1:8891: Connection refused
Dec 02 11:00:01 mx postfix/smtpd[11]: BBBBB2: client=c[10.0.0.1]
Dec 02 11:00:01 mx postfix/cleanup[20]: BBBBB2: message-id=<m2@a.fr>
Dec 02 11:00:01 mx postfix/qmgr[30]: BBBBB2: from=<alice@a.fr>, size=588, nrcpt=1 (queue active)
Dec 02 11:00:02 mx postfix/smtp[40]: BBBBB2: to=<dan@ext.fr>, orig_to=<dan-alias@ext.fr>, relay=r, status=bounced (no)
Dec 02 11:00:02 mx postfix/qmgr[30]: BBBBB2: removed
Dec 02 11:00:03 mx postfix/qmgr[30]: CCCCC3: from=<>, size=2000, nrcpt=1 (queue active)
Dec 02 11:00:03 mx postfix/local[41]: CCCCC3: to=<alice@a.fr>, relay=local, status=sent (delivered)
Dec 02 11:00:03 mx postfix/qmgr[30]: CCCCC3: removed
Dec 02 12:00:00 mx postfix/cleanup[21]: warning: connect to Milter service inet:127.0.0.1:8891: Connection refused
Dec 02 12:00:00 mx postfix/pickup[50]: DDDDD4: uid=0 from=<root@a.fr>
Dec 02 12:00:00 mx postfix/cleanup[21]: DDDDD4: message-id=<m4@a.fr>
Dec 02 12:00:00 mx postfix/qmgr[30]: DDDDD4: from=<root@a.fr>, size=400, nrcpt=1 (queue active)
Dec 02 12:00:01 mx postfix/postsuper[60]: DDDDD4: requeued
Dec 02 12:00:02 mx postfix/pickup[50]: EEEEE5: uid=0 from=<root@a.fr> orig_id=DDDDD4
Dec 02 12:00:02 mx postfix/qmgr[30]: EEEEE5: from=<root@a.fr>, size=400, nrcpt=1 (queue active)
Dec 02 12:00:03 mx postfix/smtp[40]: EEEEE5: to=<eve@ext.fr>, relay=r, status=sent (250)
Dec 02 12:00:03 mx postfix/qmgr[30]: EEEEE5: removed
";

/// The messages of `lines` (December 2026, UTC), in the order they end.
fn episodes<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<Message> {
    let mut clock = parse::Clock::new(TimeZone::UTC, 2026, 12);
    let mut eps = Episodes::default();
    let mut out = Vec::new();
    for l in lines {
        eps.line(&clock.split(l).unwrap(), |m| out.push(m));
    }
    eps.finish(|m| out.push(m));
    out
}

fn cls() -> Classifier {
    Classifier::new(
        &["a.fr".to_string()],
        TimeZone::get("Europe/Paris").unwrap(),
    )
}

fn row(qid: &str, rcpt: &str, sender: &str, local: &str) -> OutRow {
    let tz = TimeZone::get("Europe/Paris").unwrap();
    let dt: jiff::civil::DateTime = local.parse().unwrap();
    OutRow {
        domain: "a.fr".into(),
        time_us: dt.to_zoned(tz).unwrap().timestamp().as_microsecond(),
        mail_id: format!("n1.x.{qid}"),
        recipient: rcpt.into(),
        sender: sender.into(),
        size: 434,
        frontend: "milter".into(),
        queue_id: Some(qid.into()),
        message_id: None,
    }
}

#[test]
fn deferred_once_milter_down_requeued_once_phantom() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("maillog");
    std::fs::write(&p, LOG).unwrap();
    let month = Month::parse("2026-12").unwrap();
    let mut cov = Coverage::default();
    let msgs = read_logs(&[p], month, &cls(), &mut cov).unwrap();
    let tz = cls().tz;
    let rows = vec![
        row(
            "AAAAA1",
            "bob@ext.fr",
            "alice+x@a.fr",
            "2026-12-02T10:00:01",
        ),
        row(
            "AAAAA1",
            "carol@ext.fr",
            "alice+x@a.fr",
            "2026-12-02T10:00:01",
        ),
        row("DDDDD4", "eve@ext.fr", "root@a.fr", "2026-12-02T12:00:00"),
        row("ZZZZZ9", "x@ext.fr", "root@a.fr", "2026-12-02T11:30:00"),
    ];
    let span = span_of(&cov, &tz);
    let r = reconcile(month, &tz, &msgs, &rows, cov, span);
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(
        j,
        serde_json::json!({
            "month": "2026-12",
            "matched": 3,
            "filled": 0,
            "missing": [{"queue_id": "BBBBB2", "sender": "alice@a.fr",
                "recipient": "dan-alias@ext.fr", "time": "2026-12-02 11:00:01",
                "reason": "milter_down"}],
            "phantom": [{"mail_id": "n1.x.ZZZZZ9", "queue_id": "ZZZZZ9", "sender": "root@a.fr",
                "recipient": "x@ext.fr", "time": "2026-12-02 11:30:00"}],
            "by_domain": [{"domain": "a.fr", "matched": 3, "filled": 0, "missing": 1, "phantom": 1,
                "days": [{"day": "2026-12-02", "matched": 3, "filled": 0, "missing": 1, "phantom": 1}]}],
            "coverage": {"files": 1, "lines": 29, "unreadable": 0,
                "first_line": "2026-12-02 10:00:00", "last_line": "2026-12-02 12:00:03",
                "gaps": [], "without_origin": 1, "rows_outside_logs": 0, "sidecar_down": []}
        })
    );
    assert!(!r.reconciled());

    // --fill: the milter_down recipient gets a row (TAILLE: size= minus the
    // median overhead of matched smtpd messages); reconciled once it is
    // there, and a second fill adds nothing.
    let filled = fill::rows(&r, "n1");
    assert_eq!(filled.len(), 1);
    assert_eq!(filled[0].recipient, "dan-alias@ext.fr");
    let mut rows = rows;
    rows.extend(filled.iter().map(|f| f.to_row()));
    let cov2 = r.coverage.clone();
    let again = reconcile(month, &tz, &msgs, &rows, cov2, span);
    assert_eq!(
        (again.matched, again.filled, again.missing.len()),
        (3, 1, 0)
    );
    assert!(fill::rows(&again, "n1").is_empty());
    assert_eq!(again.by_domain[0].figures.filled, 1);
}

#[test]
fn cleanup_warning_pins_pickup_message() {
    let out = episodes(LOG.lines().skip(20).take(4));
    assert_eq!(out.len(), 1);
    assert!(out[0].milter_down);
    assert_eq!(out[0].origin, Origin::Pickup);
}

#[test]
fn sender_rule() {
    let c = cls();
    assert_eq!(sender_domain("alice+t@a.fr", &c).as_deref(), Some("a.fr"));
    assert_eq!(sender_domain("", &c), None);
    assert_eq!(sender_domain("double-bounce@a.fr", &c), None);
    assert_eq!(sender_domain("srs0=h=tt=b.fr=u@a.fr", &c), None);
    assert_eq!(sender_domain("u@b.fr", &c), None);
}

#[test]
fn messages_of_one_syslog_second_keep_log_order_not_queue_id_order() {
    let log = "\
Dec 02 12:00:00 mx postfix/smtpd[10]: FFFFF1: client=c[10.0.0.1]
Dec 02 12:00:00 mx postfix/pickup[50]: 00000A: uid=0 from=<root@a.fr>
Dec 02 12:00:00 mx postfix/qmgr[30]: FFFFF1: from=<alice@a.fr>, size=400, nrcpt=1 (queue active)
Dec 02 12:00:00 mx postfix/qmgr[30]: 00000A: from=<root@a.fr>, size=400, nrcpt=1 (queue active)
";
    let out = episodes(log.lines());
    let ids: Vec<&str> = out.iter().map(|m| m.queue_id.as_str()).collect();
    assert_eq!(ids, ["FFFFF1", "00000A"]);
}

/// Lines as a real Postfix 3.7 logged them when the sidecar stopped under
/// load: the milter died at end of message (cleanup warns after the
/// message-id of the message it was on) and during a RCPT (smtpd warns in
/// the session whose transaction is in progress).
#[test]
fn milter_dying_mid_message_pins_that_message_only() {
    let log = "\
Dec 05 11:46:25 mx postfix/smtpd[911]: connect from localhost[127.0.0.1]
Dec 05 11:46:25 mx postfix/smtpd[911]: 147B798E174: client=localhost[127.0.0.1]
Dec 05 11:46:25 mx postfix/smtpd[915]: connect from localhost[127.0.0.1]
Dec 05 11:46:25 mx postfix/smtpd[915]: 2A00000E175: client=localhost[127.0.0.1]
Dec 05 11:46:25 mx postfix/cleanup[712]: 0AAAAAAE170: message-id=<done@vm>
Dec 05 11:46:25 mx postfix/qmgr[662]: 0AAAAAAE170: from=<dr.load@a.fr>, size=600, nrcpt=1 (queue active)
Dec 05 11:46:25 mx postfix/smtpd[915]: warning: milter inet:127.0.0.1:34777: can't read SMFIC_RCPT reply packet header: Application error
Dec 05 11:46:25 mx postfix/cleanup[711]: 147B798E174: message-id=<77e1.0007.0160@vm>
Dec 05 11:46:25 mx postfix/cleanup[711]: warning: milter inet:127.0.0.1:34777: can't read SMFIC_BODYEOB reply packet header: Application error
Dec 05 11:46:25 mx postfix/cleanup[712]: 2A00000E175: message-id=<x@vm>
Dec 05 11:46:25 mx postfix/qmgr[662]: 147B798E174: from=<dr.load@a.fr>, size=607, nrcpt=2 (queue active)
Dec 05 11:46:25 mx postfix/qmgr[662]: 2A00000E175: from=<dr.load@a.fr>, size=607, nrcpt=1 (queue active)
Dec 05 11:46:25 mx postfix/discard[910]: 147B798E174: to=<83r@ext.test>, relay=none, status=sent (ext.test)
Dec 05 11:46:25 mx postfix/discard[910]: 2A00000E175: to=<84r@ext.test>, relay=none, status=sent (ext.test)
Dec 05 11:46:25 mx postfix/discard[910]: 0AAAAAAE170: to=<85r@ext.test>, relay=none, status=sent (ext.test)
Dec 05 11:46:25 mx postfix/qmgr[662]: 147B798E174: removed
Dec 05 11:46:25 mx postfix/qmgr[662]: 2A00000E175: removed
Dec 05 11:46:25 mx postfix/qmgr[662]: 0AAAAAAE170: removed
";
    let out = episodes(log.lines());
    let pinned: Vec<(&str, bool)> = out
        .iter()
        .map(|m| (m.queue_id.as_str(), m.milter_down))
        .collect();
    assert_eq!(
        pinned,
        [
            ("147B798E174", true),
            ("2A00000E175", true),
            // Its cleanup (712) warned about nothing while on it.
            ("0AAAAAAE170", false),
        ]
    );
}
