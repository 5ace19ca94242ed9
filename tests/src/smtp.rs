//! A raw SMTP client for tests: exact bytes in, exact replies out.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    /// Connect and return the client with the greeting.
    pub fn connect(addr: &str) -> (RawClient, String) {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = RawClient {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let g = c.reply();
        (c, g)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Send, reporting a write error (the peer may have closed) instead of panicking.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The underlying socket (timeouts, shutdown).
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// One complete (possibly multi-line) reply; empty string at EOF.
    pub fn reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return out,
                Ok(_) => {}
            }
            out.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return out;
            }
        }
    }

    /// Send `bytes`, then read `n` replies.
    pub fn exchange(&mut self, bytes: &[u8], n: usize) -> Vec<String> {
        self.send(bytes);
        (0..n).map(|_| self.reply()).collect()
    }

    /// The codes of replies.
    pub fn codes(replies: &[String]) -> Vec<u16> {
        replies
            .iter()
            .map(|r| r.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0))
            .collect()
    }
}

/// `queued as XXXX` in a reply.
pub fn queued_as(reply: &str) -> Option<String> {
    let i = reply.find("queued as ")?;
    let id: String = reply[i + 10..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!id.is_empty()).then_some(id)
}
