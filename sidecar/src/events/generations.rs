//! `parse_dovecot` on the bodies of Dovecot 2.3 (`service`) and Dovecot 2.4
//! (`protocol`) event exporters.

use super::{parse_dovecot, DovecotOutcome};
use mss_shared::model::LoginRecord;

/// A Dovecot 2.4.1 body as recorded on Debian 13 (issue 19), trimmed of
/// fields we do not read.
const BODY_24: &str = r#"{"event":"auth_request_finished","hostname":"mx","start_time":"2026-12-02T18:05:10.841207Z","end_time":"2026-12-02T18:05:10.843117Z","fields":{"success":"yes","mechanism":"PLAIN","transport":"secured","protocol":"imap","remote_ip":"127.0.0.1","user":"Alice@op.example"}}"#;

fn login(service: &str) -> DovecotOutcome {
    DovecotOutcome::Login(LoginRecord {
        bal: "alice@op.example".into(),
        time_us: 1_796_234_710_843_117,
        service: service.into(),
        source: "dovecot".into(),
    })
}

#[test]
fn dovecot_2_4_protocol_is_the_service() {
    assert_eq!(parse_dovecot(BODY_24.as_bytes()).unwrap(), login("imap"));
}

#[test]
fn dovecot_2_3_service_still_read() {
    let b = BODY_24.replace(r#""protocol":"imap""#, r#""service":"pop3""#);
    assert_eq!(parse_dovecot(b.as_bytes()).unwrap(), login("pop3"));
}

#[test]
fn doveadm_ignored_in_either_generation() {
    for f in [r#""protocol":"doveadm""#, r#""service":"doveadm""#] {
        let b = BODY_24.replace(r#""protocol":"imap""#, f);
        assert_eq!(
            parse_dovecot(b.as_bytes()).unwrap(),
            DovecotOutcome::Ignored("doveadm")
        );
    }
    // 2.3 with `service` = imap and a 2.4-style `protocol` = doveadm: ignored.
    let b = BODY_24.replace(
        r#""protocol":"imap""#,
        r#""service":"imap","protocol":"doveadm""#,
    );
    assert_eq!(
        parse_dovecot(b.as_bytes()).unwrap(),
        DovecotOutcome::Ignored("doveadm")
    );
}

#[test]
fn failed_2_4_login_has_no_success_field() {
    let b = BODY_24.replace(r#""success":"yes","#, "");
    assert_eq!(
        parse_dovecot(b.as_bytes()).unwrap(),
        DovecotOutcome::Ignored("not a successful login")
    );
}
