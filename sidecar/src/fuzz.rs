//! Fuzzing entry points: each takes arbitrary bytes and drives one parser
//! the way the daemon does, without I/O. Used by the libFuzzer targets in
//! `fuzz/` and by the stable smoke test `tests/tests/fuzz_smoke.rs`; a
//! panic (or a failed `debug_assert!`) is a bug.

use crate::proxy::observer::{ClientItem, Limits, Observer};

/// Canned upstream replies for [`observer_session`]'s auto-responder.
pub const REPLIES: [&[u8]; 10] = [
    b"250 2.1.0 Ok\r\n",
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"334 VXNlcm5hbWU6\r\n",
    b"235 2.7.0 Authentication successful\r\n",
    b"452 4.5.3 Too many recipients\r\n",
    b"550 5.1.1 No such user\r\n",
    b"250 2.0.0 Ok: queued as 4XyZ12\r\n",
    b"250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 CHUNKING\r\n",
    b"221 2.0.0 Bye\r\n",
    b"220 mx.test ESMTP\r\n",
];

/// Op codes of [`observer_session`]'s input (low 2 bits of a control byte;
/// the high 6 bits + 1 are the payload length for ops 0-2).
pub const OP_CLIENT: u8 = 0;
pub const OP_UPSTREAM: u8 = 2;
pub const OP_REPLY: u8 = 3;

/// Encode a client chunk / raw upstream chunk for [`observer_session`].
pub fn encode_chunk(op: u8, bytes: &[u8], out: &mut Vec<u8>) {
    for c in bytes.chunks(64) {
        out.push(((c.len() as u8 - 1) << 2) | op);
        out.extend_from_slice(c);
    }
}

/// Encode "answer the oldest command in flight with `REPLIES[choice % len]`".
pub fn encode_reply(choice: u8, out: &mut Vec<u8>) {
    out.push(OP_REPLY | ((choice & 63) << 2));
}

/// One proxied session: the input is a stream of operations (control byte,
/// payload): client bytes, raw upstream bytes, or "answer the oldest command
/// in flight with a canned reply". Drives the observer as the session does
/// (stops on upstream garbage or a close, restarts TLS on STARTTLS) and
/// checks its invariants.
pub fn observer_session(data: &[u8]) {
    observer_session_commits(data);
}

/// [`observer_session`], returning how many messages were committed.
pub fn observer_session_commits(data: &[u8]) -> usize {
    let mut commits = 0;
    let limits = Limits {
        max_recipients: 5,
        max_message_bytes: if data.first().is_some_and(|b| b & 0x80 != 0) {
            300
        } else {
            0
        },
        max_line: 512,
        max_held: 4096,
        ..Limits::default()
    };
    let tls = data.len() % 2 == 0;
    let mut o = Observer::new(limits, tls);
    if o.upstream_input(b"220 mx.test ESMTP\r\n").is_err() {
        unreachable!("a valid greeting is accepted");
    }
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        i += 1;
        let (op, n) = (c & 3, (c >> 2) as usize + 1);
        let ok = match op {
            OP_REPLY => {
                let r = REPLIES[(c >> 2) as usize % REPLIES.len()];
                o.in_flight() == 0 || o.upstream_input(r).is_ok()
            }
            OP_UPSTREAM => {
                let end = (i + n).min(data.len());
                let r = o.upstream_input(&data[i..end]).is_ok();
                i = end;
                r
            }
            _ => {
                let end = (i + n).min(data.len());
                o.client_input(&data[i..end]);
                i = end;
                true
            }
        };
        let _ = o.take_upstream();
        let _ = o.take_outside();
        for item in o.take_client() {
            match item {
                ClientItem::Commit(acc, reply) => {
                    commits += 1;
                    assert!(!acc.recipients.is_empty(), "a commit without recipients");
                    assert!(reply.starts_with(b"2"), "a commit on a non-2xx reply");
                }
                ClientItem::StartTls(_) => o.client_tls_started(),
                ClientItem::Close(_) => return commits,
                ClientItem::Reply(r) => assert!(!r.is_empty(), "an empty reply"),
                ClientItem::Login { user, .. } => assert!(!user.is_empty()),
            }
        }
        if !ok {
            return commits;
        }
    }
    commits
}

/// `POST /v1/dovecot` and `POST /v1/logins` bodies.
pub fn events_json(data: &[u8]) {
    if let Ok(crate::events::DovecotOutcome::Login(r)) = crate::events::parse_dovecot(data) {
        assert!(crate::events::valid_bal(&r.bal) && crate::events::plausible(r.time_us));
    }
    if let Ok(recs) = crate::events::parse_logins(data) {
        for r in recs {
            assert!(crate::events::valid_bal(&r.bal) && crate::events::plausible(r.time_us));
        }
    }
}

/// The dict-proxy protocol: the input is split into lines as the socket
/// reader does (lossy UTF-8, CR/LF trimmed).
pub fn dict_lines(data: &[u8]) {
    let mut s = crate::events::dict::Session::default();
    for line in data.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let (reply, recs) = s.line(line.trim_end_matches(['\n', '\r']));
        if let Some(r) = reply {
            assert!(r.ends_with('\n') && !r[..r.len() - 1].contains('\n'));
        }
        for r in recs {
            assert!(crate::events::valid_bal(&r.bal));
        }
    }
}

/// `mss-admin mailbox import` files.
pub fn mailbox_csv(data: &[u8]) {
    let domains = ["ch-a.mssante.fr".to_string()];
    if let Ok(rows) = crate::admin::mailbox::parse(data, &domains, None) {
        for r in rows {
            assert!(r.bal.ends_with("@ch-a.mssante.fr"));
        }
    }
    let _ = crate::admin::mailbox::parse(data, &domains, Some("ch-a.mssante.fr"));
}

/// `mss-admin logins import` log files, both formats.
pub fn backfill_log(data: &[u8]) {
    let tz = jiff::tz::TimeZone::get("Europe/Paris").expect("bundled tzdb");
    let reference: jiff::Timestamp = "2026-11-30T12:00:00Z".parse().expect("constant");
    let domains = ["ch-a.mssante.fr".to_string()];
    for f in [
        crate::admin::logins::Format::Dovecot,
        crate::admin::logins::Format::Postfix,
    ] {
        let r = crate::admin::logins::read(data, f, &tz, reference, &domains).expect("in memory");
        for (bal, _, _) in &r.logins {
            assert!(bal.ends_with("@ch-a.mssante.fr"));
        }
    }
}
