//! Dovecot's `last_login` plugin through the dict-proxy protocol
//! (`[events] dict_socket`, a Unix socket; Dovecot 2.3 = protocol 3,
//! Dovecot 2.4 = protocol 4).
//!
//! One line per command, fields separated by TAB, escaped with `\x01`
//! (`\x011` = `\x01`, `\x01t` = TAB, `\x01n` = LF, `\x01r` = CR,
//! `\x010` = NUL): `H<major>\t<minor>\t…` hello (no reply; 3 and 4
//! accepted), `B<id>\t<user>[\t<expire_secs>]` begin (the third field
//! from protocol 4), `S<id>\t<key>\t<value>` set, `U<id>\t<key>` unset,
//! `A<id>\t<key>\t<diff>` atomic increment, `T`/`V` timestamp and
//! hide-log-values (transaction commands: no reply), `C<id>` / `D<id>`
//! commit (reply `O<id>`), `R<id>` rollback (no reply), `L<key>` lookup
//! (reply `N`: we keep nothing to look up), `I…` iterate (reply: the empty
//! line that ends an iteration). The plugin sets `shared/last-login/<user>`
//! to the unix time of the login; the login is recorded at commit; an
//! increment is not a login and is ignored. Anything else gets no reply and
//! is ignored, so that a newer Dovecot never blocks on us. The socket file is removed at start if stale and at
//! stop: a socket file nobody listens on delays every IMAP login by ~3 s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use mss_shared::model::{normalize_address, LoginRecord};

use super::{plausible, store, valid_bal, EventsContext};

/// Longest line accepted from Dovecot.
const MAX_LINE: usize = 64 * 1024;

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x01' {
            match it.next() {
                Some('1') => out.push('\x01'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Open transactions per connection; a client opening more without
/// committing is misbehaving: further ones are ignored (memory stays bounded).
const MAX_TXNS: usize = 1024;
/// Logins kept per transaction (the plugin sets one key per login).
const MAX_PER_TXN: usize = 64;

/// One connection's protocol state: the pending logins of each open
/// transaction. No I/O (fuzzed).
#[derive(Default)]
pub struct Session {
    txns: HashMap<String, Vec<LoginRecord>>,
}

impl Session {
    /// Handle one line (without its LF); returns the reply line, if any, and
    /// the logins a commit makes final.
    pub fn line(&mut self, line: &str) -> (Option<String>, Vec<LoginRecord>) {
        let Some(cmd) = line.chars().next() else {
            return (None, vec![]);
        };
        let rest = &line[cmd.len_utf8()..];
        let f: Vec<String> = rest.split('\t').map(unescape).collect();
        match cmd {
            'B' => {
                if self.txns.len() < MAX_TXNS {
                    self.txns.insert(f[0].clone(), vec![]);
                }
                (None, vec![])
            }
            'S' if f.len() >= 3 => {
                let key = &f[1];
                if let Some(user) = key.rsplit_once("last-login/").map(|(_, u)| u) {
                    if let Ok(secs) = f[2].trim().parse::<i64>() {
                        let bal = normalize_address(user);
                        let us = secs.saturating_mul(1_000_000);
                        let room = match self.txns.get(&f[0]) {
                            Some(v) => v.len() < MAX_PER_TXN,
                            None => self.txns.len() < MAX_TXNS,
                        };
                        if valid_bal(&bal) && plausible(us) && room {
                            self.txns
                                .entry(f[0].clone())
                                .or_default()
                                .push(LoginRecord {
                                    bal,
                                    time_us: us,
                                    service: "dovecot".into(),
                                    source: "dict".into(),
                                });
                        } else {
                            tracing::info!(key = %key, "dict: last-login value refused (not an address or implausible time)");
                        }
                    }
                }
                (None, vec![])
            }
            'C' | 'D' => {
                let recs = self.txns.remove(&f[0]).unwrap_or_default();
                // Echo the id as received (still escaped): unescaped, an id
                // holding `\x01n` would put a newline in our reply and
                // inject a second reply line (found by fuzz_smoke).
                let raw_id = rest.split('\t').next().unwrap_or("");
                (Some(format!("O{raw_id}\n")), recs)
            }
            'R' => {
                self.txns.remove(&f[0]);
                (None, vec![])
            }
            'H' => {
                if !matches!(f[0].as_str(), "2" | "3" | "4") {
                    tracing::warn!(version = %f[0], "dict: unknown protocol major version, answering as 4");
                }
                (None, vec![])
            }
            'L' => (Some("N\n".into()), vec![]),
            'I' => (Some("\n".into()), vec![]),
            _ => (None, vec![]),
        }
    }
}

/// Read the next line (LF included) into `buf`, however the bytes arrive;
/// false at end of stream, on error, or for a line over [`MAX_LINE`].
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let n = match r.take(MAX_LINE as u64).read_until(b'\n', buf).await {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    if n == MAX_LINE && buf.last() != Some(&b'\n') {
        tracing::warn!("dict: line longer than {MAX_LINE} bytes, closing");
        return false;
    }
    true
}

async fn connection(stream: UnixStream, ctx: Arc<EventsContext>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut s = Session::default();
    let mut buf = Vec::new();
    while next_line(&mut r, &mut buf).await {
        let line = String::from_utf8_lossy(&buf);
        let (reply, recs) = s.line(line.trim_end_matches(['\n', '\r']));
        if !recs.is_empty() {
            store(&ctx, recs).await;
        }
        if let Some(rep) = reply {
            if w.write_all(rep.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The bound dict socket; removes its file on drop.
pub struct DictListener {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for DictListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl DictListener {
    /// Bind `path`, replacing a stale socket file (refusing if one is live).
    ///
    /// # Errors
    /// The path is in use by a running process, or cannot be bound.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running process", path.display()),
            ));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        // Dovecot's dict client runs as the mail user: let it connect.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
        Ok(DictListener {
            listener,
            path: path.to_path_buf(),
        })
    }
}

/// Serve the dict socket until `stop` turns true; the socket file is removed.
pub async fn serve(
    l: DictListener,
    ctx: Arc<EventsContext>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            a = l.listener.accept() => match a {
                Ok((s, _)) => { tokio::spawn(connection(s, ctx.clone())); }
                Err(e) => {
                    tracing::warn!("dict socket accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }
    drop(l);
}

#[cfg(test)]
mod tests {
    #[test]
    fn commit_reply_echoes_the_escaped_id_on_one_line() {
        // Reproducer from fuzz_smoke (10 M run): an id with an escaped LF.
        let mut s = Session::default();
        let (r, _) = s.line("C1\x01n2");
        assert_eq!(r.as_deref(), Some("O1\x01n2\n"));
        let (r, _) = s.line("Cnte.fr\t1790000000");
        assert_eq!(r.as_deref(), Some("Onte.fr\n"));
    }

    use super::*;

    #[test]
    fn protocol_lines() {
        let mut s = Session::default();
        assert_eq!(s.line("H3\t2\t0\t\tlastlogin").0, None);
        assert_eq!(s.line("B1\talice@ch-a.fr").0, None);
        assert_eq!(
            s.line("S1\tshared/last-login/Alice@CH-A.fr\t1790000000").0,
            None
        );
        let (rep, recs) = s.line("C1");
        assert_eq!(rep.as_deref(), Some("O1\n"));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].bal, "alice@ch-a.fr");
        assert_eq!(recs[0].time_us, 1_790_000_000_000_000);
        // Rolled back (`R`, as Dovecot's dict client sends it): nothing.
        s.line("B2\tbob@ch-a.fr");
        s.line("S2\tshared/last-login/bob@ch-a.fr\t1790000000");
        assert_eq!(s.line("R2"), (None, vec![]));
        assert_eq!(s.line("C2").1.len(), 0);
        // Escapes, absurd values, unknown commands.
        assert_eq!(unescape("a\x01tb\x011\x01n"), "a\tb\x01\n");
        s.line("B3\tx");
        s.line("S3\tshared/last-login/x@ch-a.fr\t12");
        s.line("S3\tshared/last-login/not-an-address\t1790000000");
        assert!(s.line("D3").1.is_empty());
        assert_eq!(s.line("L shared/x").0.as_deref(), Some("N\n"));
        assert_eq!(s.line("Zwhatever").0, None);
        assert_eq!(s.line("").0, None);
    }

    #[test]
    fn open_transactions_are_bounded() {
        let mut s = Session::default();
        for i in 0..5000 {
            s.line(&format!("B{i}\tu"));
            s.line(&format!("S{i}\tshared/last-login/a@ch-a.fr\t1790000000"));
        }
        assert_eq!(s.txns.len(), MAX_TXNS);
        for _ in 0..100 {
            s.line("S1\tshared/last-login/a@ch-a.fr\t1790000000");
        }
        assert_eq!(s.line("C1").1.len(), MAX_PER_TXN);
        assert_eq!(s.line("C4999"), (Some("O4999\n".into()), vec![]));
    }

    /// The exact traffic of one IMAP login through Dovecot 2.4.1's
    /// last_login plugin (Debian 13), as recorded in issue 19.
    #[test]
    fn dovecot_2_4_protocol_4() {
        let mut s = Session::default();
        assert_eq!(s.line("H4\t0\t0\t\tlastlogin"), (None, vec![]));
        assert_eq!(s.line("B1\talice@op.example\t0"), (None, vec![]));
        assert_eq!(
            s.line("S1\tshared/last-login/alice@op.example\t1796234710"),
            (None, vec![])
        );
        let (rep, recs) = s.line("C1");
        assert_eq!(rep.as_deref(), Some("O1\n"));
        assert_eq!(
            recs,
            vec![LoginRecord {
                bal: "alice@op.example".into(),
                time_us: 1_796_234_710_000_000,
                service: "dovecot".into(),
                source: "dict".into(),
            }]
        );
    }

    #[test]
    fn atomic_increment_unset_timestamp_are_not_logins_and_get_no_reply() {
        let mut s = Session::default();
        s.line("H4\t0\t0\t\tlastlogin");
        s.line("B7\tbob@op.example\t3600");
        assert_eq!(
            s.line("A7\tshared/last-login/bob@op.example\t1"),
            (None, vec![])
        );
        assert_eq!(s.line("U7\tshared/x"), (None, vec![]));
        assert_eq!(s.line("T7\t1796234710\t0"), (None, vec![]));
        assert_eq!(s.line("V7\tyes"), (None, vec![]));
        // `A` no longer rolls back: the transaction still commits, empty.
        assert_eq!(s.line("C7"), (Some("O7\n".into()), vec![]));
        // An iteration ends at once (empty line); a rollback of an unknown
        // id is harmless.
        assert_eq!(s.line("I0\tshared/"), (Some("\n".into()), vec![]));
        assert_eq!(s.line("R99"), (None, vec![]));
        assert_eq!(unescape("a\x010b"), "a\0b");
    }

    /// Dovecot 2.3 (protocol 3): BEGIN without expire, then a rollback.
    #[test]
    fn dovecot_2_3_protocol_3_and_rollback() {
        let mut s = Session::default();
        s.line("H3\t2\t0\t\tlastlogin");
        s.line("B1\tcarol@op.example");
        s.line("S1\tshared/last-login/carol@op.example\t1796234710");
        assert_eq!(s.line("R1"), (None, vec![]));
        assert_eq!(s.line("C1"), (Some("O1\n".into()), vec![]));
        s.line("B2\tcarol@op.example");
        s.line("S2\tshared/last-login/carol@op.example\t1796234711");
        let (rep, recs) = s.line("C2");
        assert_eq!(rep.as_deref(), Some("O2\n"));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].time_us, 1_796_234_711_000_000);
    }

    /// Dovecot 2.4.1's traffic for one login, split at every byte (two
    /// writes, the second after a pause): the same replies and login.
    #[tokio::test]
    async fn dovecot_2_4_traffic_split_at_every_byte() {
        use tokio::io::AsyncWriteExt;
        let traffic = b"H4\t0\t0\t\tlastlogin\nB1\talice@op.example\t0\nS1\tshared/last-login/alice@op.example\t1796234710\nC1\n";
        for k in 0..=traffic.len() {
            let (mut tx, rx) = tokio::io::duplex(16);
            let writer = tokio::spawn(async move {
                tx.write_all(&traffic[..k]).await.unwrap();
                tokio::task::yield_now().await;
                tx.write_all(&traffic[k..]).await.unwrap();
            });
            let mut r = BufReader::new(rx);
            let (mut s, mut buf) = (Session::default(), Vec::new());
            let (mut replies, mut recs) = (String::new(), vec![]);
            while next_line(&mut r, &mut buf).await {
                let line = String::from_utf8_lossy(&buf);
                let (rep, got) = s.line(line.trim_end_matches(['\n', '\r']));
                replies.push_str(rep.as_deref().unwrap_or(""));
                recs.extend(got);
            }
            writer.await.unwrap();
            assert_eq!(replies, "O1\n", "split at {k}");
            assert_eq!(recs.len(), 1, "split at {k}");
            assert_eq!(recs[0].bal, "alice@op.example");
            assert_eq!(recs[0].time_us, 1_796_234_710_000_000);
        }
    }
}
