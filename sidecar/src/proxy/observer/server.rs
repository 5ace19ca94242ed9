//! The server side: upstream replies (multi-line, pipelined) matched in
//! order to the commands in flight; the final reply of a message; the EHLO
//! rewrite.

use mss_shared::model::normalize_address;

use super::transaction::*;
use super::*;

impl Observer {
    /// Feed bytes read from the upstream.
    ///
    /// # Errors
    /// [`UpstreamGarbage`] when the upstream does not speak SMTP (or answers
    /// when nothing was asked); the session then tells the client `421`.
    pub fn upstream_input(&mut self, data: &[u8]) -> Result<(), UpstreamGarbage> {
        self.reply_buf.extend_from_slice(data);
        loop {
            let Some(end) = reply_end(&self.reply_buf)? else {
                if self.reply_buf.len() > 64 * 1024 {
                    return Err(UpstreamGarbage("reply longer than 64 KiB".into()));
                }
                return Ok(());
            };
            let raw: Vec<u8> = self.reply_buf.drain(..end).collect();
            self.reply(raw)?;
        }
    }

    pub(super) fn reply(&mut self, raw: Vec<u8>) -> Result<(), UpstreamGarbage> {
        let code = reply_code(&raw);
        let positive = (200..300).contains(&code);
        let Some(p) = self.pending.pop_front() else {
            return Err(UpstreamGarbage(format!(
                "unexpected reply with no command pending: {}",
                String::from_utf8_lossy(&raw).trim_end()
            )));
        };
        match p {
            Pending::Greeting | Pending::Other => self.to_client.push(ClientItem::Reply(raw)),
            Pending::Ehlo => {
                self.txn = None;
                let r = if positive {
                    self.rewrite_ehlo(&raw)
                } else {
                    raw
                };
                self.to_client.push(ClientItem::Reply(r));
            }
            Pending::Rset => {
                self.txn = None;
                self.to_client.push(ClientItem::Reply(raw));
            }
            Pending::Mail { from } => {
                self.txn = positive.then(|| Txn {
                    from,
                    rcpts: vec![],
                    failed: false,
                });
                self.to_client.push(ClientItem::Reply(raw));
            }
            Pending::Rcpt { to } => {
                if positive {
                    if let Some(t) = &mut self.txn {
                        t.rcpts.push(to);
                    }
                }
                self.to_client.push(ClientItem::Reply(raw));
            }
            Pending::Data => {
                self.state = if code == 354 {
                    ClientState::Data(Box::new(DataBody {
                        rx: primed_receiver(),
                        guard: DotGuard::new(),
                        sink: Vec::with_capacity(1024),
                    }))
                } else {
                    ClientState::Command
                };
                self.to_client.push(ClientItem::Reply(raw));
                self.release_held();
            }
            Pending::DataEnd { size, message_id } => {
                self.final_reply(raw, positive, size, message_id)
            }
            Pending::Bdat {
                last,
                size,
                message_id,
            } => {
                if last {
                    self.final_reply(raw, positive, size, message_id);
                } else {
                    if !positive {
                        if let Some(t) = &mut self.txn {
                            t.failed = true;
                        }
                    }
                    self.to_client.push(ClientItem::Reply(raw));
                }
            }
            Pending::Auth { mech, user } => {
                if code == 334 {
                    self.state = ClientState::AuthLine { mech, user };
                } else if code == 235 {
                    if let Some(user) = user {
                        self.to_client.push(ClientItem::Login {
                            user: normalize_address(&user),
                            mechanism: mech.name(),
                        });
                    }
                }
                self.to_client.push(ClientItem::Reply(raw));
                self.release_held();
            }
            Pending::StartTlsLocal | Pending::Local(_) | Pending::LocalClose(_) => {
                unreachable!("local replies are flushed before upstream replies")
            }
        }
        self.flush_local();
        Ok(())
    }

    pub(super) fn final_reply(
        &mut self,
        raw: Vec<u8>,
        positive: bool,
        size: u64,
        message_id: Option<String>,
    ) {
        let txn = self.txn.take();
        match txn {
            Some(t) if positive && !t.failed && !t.rcpts.is_empty() => {
                let queue_id = queue_id(&raw);
                self.to_client.push(ClientItem::Commit(
                    Accepted {
                        sender: t.from,
                        recipients: t.rcpts,
                        size,
                        message_id,
                        queue_id,
                    },
                    raw,
                ));
            }
            _ => self.to_client.push(ClientItem::Reply(raw)),
        }
    }

    pub(super) fn release_held(&mut self) {
        if !self.behind_barrier() && !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.client_input(&held);
        }
    }

    /// Remove the upstream's STARTTLS (the proxy never passes TLS through: it
    /// would go blind) and offer ours when configured.
    pub(super) fn rewrite_ehlo(&self, raw: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(raw);
        let mut lines: Vec<&str> = text
            .split_terminator('\n')
            .map(|l| l.trim_end_matches('\r'))
            .collect();
        let had = lines.len();
        lines.retain(|l| {
            !l.get(4..)
                .is_some_and(|c| c.eq_ignore_ascii_case("STARTTLS"))
        });
        let offer = self.tls_available && !self.client_tls;
        if lines.len() == had && !offer {
            return raw.to_vec();
        }
        let mut caps: Vec<String> = lines
            .iter()
            .map(|l| l.get(4..).unwrap_or("").to_string())
            .collect();
        if offer {
            caps.push("STARTTLS".into());
        }
        let code = lines.first().and_then(|l| l.get(..3)).unwrap_or("250");
        let mut out = Vec::new();
        for (i, c) in caps.iter().enumerate() {
            let sep = if i + 1 == caps.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{code}{sep}{c}\r\n").as_bytes());
        }
        out
    }
}

/// Index just past the end of the first complete reply in `buf`, if any.
fn reply_end(buf: &[u8]) -> Result<Option<usize>, UpstreamGarbage> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl + 1];
        let ok = line.len() >= 4
            && line[..3].iter().all(u8::is_ascii_digit)
            && matches!(line[3], b' ' | b'-' | b'\r' | b'\n');
        if !ok {
            return Err(UpstreamGarbage(format!(
                "not an SMTP reply line: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )));
        }
        start += nl + 1;
        if line[3] != b'-' {
            // Validate the whole reply with smtp-proto's parser.
            let mut rr = smtp_proto::response::parser::ResponseReceiver::default();
            let mut it = buf[..start].iter();
            if let Err(e) = rr.parse(&mut it) {
                return Err(UpstreamGarbage(format!("unparseable reply: {e:?}")));
            }
            return Ok(Some(start));
        }
    }
    Ok(None)
}

fn reply_code(raw: &[u8]) -> u16 {
    std::str::from_utf8(&raw[..3.min(raw.len())])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `queued as XXXX` in Postfix's final reply.
fn queue_id(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let i = text.find("queued as ")?;
    let id: String = text[i + 10..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!id.is_empty()).then_some(id)
}
