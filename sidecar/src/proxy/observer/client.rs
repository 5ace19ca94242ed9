//! The client side: command lines framed as Postfix does, barriers (DATA,
//! AUTH), SASL response lines, DATA and BDAT bodies.

use base64::Engine;
use smtp_proto::request::receiver::BdatReceiver;
use smtp_proto::Request;

use mss_shared::model::normalize_address;

use super::transaction::*;
use super::*;

impl Observer {
    pub(super) fn behind_barrier(&self) -> bool {
        self.pending.iter().any(Pending::is_barrier)
    }

    /// Feed bytes read from the client.
    pub fn client_input(&mut self, mut data: &[u8]) {
        if self.closed {
            return;
        }
        if self.behind_barrier() {
            self.hold(data);
            return;
        }
        while !data.is_empty() && !self.closed {
            if self.behind_barrier() {
                self.hold(data);
                return;
            }
            data = match &mut self.state {
                ClientState::Discard => return,
                ClientState::Command => self.command_bytes(data),
                ClientState::AuthLine { .. } => self.auth_bytes(data),
                ClientState::Bdat(_) => self.bdat_bytes(data),
                ClientState::Data(_) => self.data_bytes(data),
            };
        }
    }

    pub(super) fn hold(&mut self, data: &[u8]) {
        if self.held.len() + data.len() > self.limits.max_held {
            self.local_close(b"554 5.5.0 Too much data sent before the server's reply\r\n");
            return;
        }
        self.held.extend_from_slice(data);
    }

    /// Complete a line from `data`; returns the rest, or `None` if no full line yet.
    pub(super) fn take_line<'a>(&mut self, data: &'a [u8]) -> Option<&'a [u8]> {
        match data.iter().position(|&b| b == b'\n') {
            Some(p) if self.line.len() + p < self.limits.max_line => {
                self.line.extend_from_slice(&data[..=p]);
                Some(&data[p + 1..])
            }
            None if self.line.len() + data.len() < self.limits.max_line => {
                self.line.extend_from_slice(data);
                None
            }
            _ => {
                self.line.clear();
                self.local_close(b"500 5.5.2 Line too long\r\n");
                None
            }
        }
    }

    pub(super) fn command_bytes<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let Some(rest) = self.take_line(data) else {
            return &[];
        };
        let line = std::mem::take(&mut self.line);
        self.command(&line);
        rest
    }

    pub(super) fn command(&mut self, line: &[u8]) {
        let parsed = Request::parse(&mut line.iter());
        let mut forward = true;
        let pending = match parsed {
            Ok(Request::Ehlo { .. }) | Ok(Request::Helo { .. }) | Ok(Request::Lhlo { .. }) => {
                self.rcpts_sent = 0;
                Pending::Ehlo
            }
            Ok(Request::Mail { from }) => {
                self.rcpts_sent = 0;
                self.body = BodyStats::default();
                self.mail_from = normalize_address(&from.address);
                Pending::Mail {
                    from: self.mail_from.clone(),
                }
            }
            Ok(Request::Rcpt { to }) => {
                let rcpt = normalize_address(&to.address);
                let outside = self
                    .limits
                    .policy
                    .as_ref()
                    .and_then(|p| p.outside(&self.mail_from, &rcpt).map(|o| (o, p.enforce)));
                if let Some(((sd, rd), refuse)) = &outside {
                    self.outside.push((sd.clone(), rd.clone(), *refuse));
                }
                if self.rcpts_sent >= self.limits.max_recipients {
                    forward = false;
                    Pending::Local(b"452 4.5.3 Too many recipients\r\n".to_vec())
                } else if outside.as_ref().is_some_and(|(_, refuse)| *refuse) {
                    forward = false;
                    Pending::Local(format!("550 5.7.1 {}\r\n", crate::policy::REFUSAL).into_bytes())
                } else {
                    self.rcpts_sent += 1;
                    Pending::Rcpt { to: rcpt }
                }
            }
            Ok(Request::Data) => Pending::Data,
            Ok(Request::Bdat {
                chunk_size,
                is_last,
            }) => {
                self.state = ClientState::Bdat(BdatReceiver::new(chunk_size, is_last));
                if chunk_size == 0 {
                    // An empty chunk completes at once.
                    self.to_upstream.extend_from_slice(line);
                    self.finish_bdat_chunk(is_last);
                    return;
                }
                self.to_upstream.extend_from_slice(line);
                return;
            }
            Ok(Request::Auth {
                mechanism,
                initial_response,
            }) => {
                let mech = match mechanism {
                    smtp_proto::AUTH_PLAIN => Mech::Plain,
                    smtp_proto::AUTH_LOGIN => Mech::Login,
                    _ => Mech::Other,
                };
                let user = match (mech, initial_response.as_ref()) {
                    (_, "") => None,
                    (Mech::Plain, ir) => plain_user(ir),
                    (Mech::Login, ir) => b64_text(ir),
                    _ => None,
                };
                Pending::Auth { mech, user }
            }
            Ok(Request::StartTls) => {
                forward = false;
                if self.tls_available && !self.client_tls {
                    self.state = ClientState::Discard;
                    Pending::StartTlsLocal
                } else {
                    Pending::Local(b"454 4.7.0 TLS not available\r\n".to_vec())
                }
            }
            Ok(Request::Rset) => {
                self.rcpts_sent = 0;
                Pending::Rset
            }
            Ok(Request::Quit) => Pending::Other,
            Ok(_) | Err(_) => Pending::Other,
        };
        if forward {
            self.to_upstream.extend_from_slice(line);
        }
        self.push_pending(pending);
    }

    pub(super) fn auth_bytes<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let Some(rest) = self.take_line(data) else {
            return &[];
        };
        let line = std::mem::take(&mut self.line);
        let ClientState::AuthLine { mech, user } =
            std::mem::replace(&mut self.state, ClientState::Command)
        else {
            unreachable!("auth_bytes only in AuthLine");
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let user = match (mech, user) {
            (_, Some(u)) => Some(u),
            (Mech::Plain, None) => plain_user(text),
            (Mech::Login, None) => b64_text(text),
            _ => None,
        };
        self.to_upstream.extend_from_slice(&line);
        self.push_pending(Pending::Auth { mech, user });
        rest
    }

    pub(super) fn bdat_bytes<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let ClientState::Bdat(rx) = &mut self.state else {
            unreachable!("bdat_bytes only in Bdat");
        };
        let mut it = data.iter();
        let mut sink = Vec::new();
        let done = rx.ingest(&mut it, &mut sink);
        let is_last = rx.is_last;
        let rest = it.as_slice();
        let used = data.len() - rest.len();
        self.body.push(&sink);
        // Checked before forwarding: the bytes that cross the limit (maybe
        // the end of the message) never reach the upstream.
        if self.too_big() {
            return &[];
        }
        self.to_upstream.extend_from_slice(&data[..used]);
        if done {
            self.finish_bdat_chunk(is_last);
        }
        rest
    }

    /// Past `max_message_bytes`: refuse the message and close (the
    /// upstream connection is dropped without the end of the message, so it
    /// discards what it got).
    pub(super) fn too_big(&mut self) -> bool {
        let max = self.limits.max_message_bytes;
        if max == 0 || self.body.size <= max {
            return false;
        }
        self.local_close(b"552 5.3.4 Message size exceeds fixed maximum message size\r\n");
        true
    }

    pub(super) fn finish_bdat_chunk(&mut self, last: bool) {
        self.state = ClientState::Command;
        let (size, message_id) = if last {
            let s = self.body.size;
            let id = self.body.message_id();
            self.body = BodyStats::default();
            self.rcpts_sent = 0;
            (s, id)
        } else {
            (self.body.size, None)
        };
        self.push_pending(Pending::Bdat {
            last,
            size,
            message_id,
        });
    }

    pub(super) fn data_bytes<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let ClientState::Data(body) = &mut self.state else {
            unreachable!("data_bytes only in Data");
        };
        let (chunk, rest, ended) = match body.guard.scan(data) {
            Guard::Smuggling => {
                self.local_close(b"554 5.5.2 Bare LF next to the end-of-data dot: message refused (RFC 5321 section 4.1.1.4)\r\n");
                return &[];
            }
            Guard::More => (data, &data[data.len()..], false),
            Guard::End(n) => (&data[..n], &data[n..], true),
        };
        let mut it = chunk.iter();
        let rx_done = body.rx.ingest(&mut it, &mut body.sink);
        debug_assert_eq!(rx_done, ended, "dot guard and DataReceiver disagree");
        let keep = if ended { 0 } else { body.sink.len().min(1) };
        let upto = body.sink.len() - keep;
        self.body.push(&body.sink[..upto]);
        body.sink.drain(..upto);
        // Checked before forwarding: the bytes that cross the limit (maybe
        // the end-of-data dot) never reach the upstream.
        if self.too_big() {
            return &[];
        }
        self.to_upstream.extend_from_slice(chunk);
        if ended {
            self.state = ClientState::Command;
            let size = self.body.size;
            let message_id = self.body.message_id();
            self.body = BodyStats::default();
            self.rcpts_sent = 0;
            self.push_pending(Pending::DataEnd { size, message_id });
        }
        rest
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

fn b64_text(s: &str) -> Option<String> {
    b64(s)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|u| !u.is_empty() && u.len() <= 255)
}

/// PLAIN: `authzid NUL authcid NUL passwd` → authcid (the authenticated identity).
fn plain_user(s: &str) -> Option<String> {
    let raw = b64(s)?;
    let mut parts = raw.split(|&b| b == 0);
    let _authz = parts.next()?;
    let authc = parts.next()?;
    parts.next()?;
    String::from_utf8(authc.to_vec())
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 255)
}
