//! What a batch of records writes: the [`Classifier`] decides the keys.

use std::collections::HashSet;

use jiff::tz::TimeZone;
use rocksdb::{WriteBatch, WriteOptions};

use super::keys::{
    login_key, login_value, out_key, out_value, CF_LOGIN, CF_OUT, CF_POL, CF_RCV, CF_SNT,
};
use super::{explain, CaptureStore};
use crate::config::domain_of;
use crate::error::{Error, Result};
use crate::indicators::address::drop_trailing_dot;
use crate::model::{MessageRecord, Record};
use crate::month::{from_micros, Month};

/// Decides which keys a record produces: the operator's domains and time zone.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub domains: HashSet<String>,
    pub tz: TimeZone,
}

impl Classifier {
    pub fn new(domains: &[String], tz: TimeZone) -> Self {
        Classifier {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            tz,
        }
    }

    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Classifier::new(&cfg.operator.domains, cfg.tz())
    }

    /// The operator domain of `addr`, if it is on one.
    pub fn operator_domain(&self, addr: &str) -> Option<String> {
        domain_of(addr).filter(|d| self.domains.contains(d))
    }
}

impl CaptureStore {
    /// Apply records in one atomic batch; with `sync`, the WAL is fsync'd
    /// before returning (the capture writer's group commit).
    pub fn apply(&self, records: &[Record], cls: &Classifier, sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        for r in records {
            self.add_to_batch(&mut batch, r, cls);
        }
        self.outbox_add(&mut batch, records);
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| Error::store(&self.path, explain(&e)))
    }

    pub(super) fn add_to_batch(&self, batch: &mut WriteBatch, r: &Record, cls: &Classifier) {
        match r {
            Record::Message(m) => self.add_message(batch, m, cls),
            Record::Outside(o) => {
                let month = Month::of(from_micros(o.time_us), &cls.tz);
                let mut k = month.key().to_vec();
                k.extend_from_slice(o.sender_domain.as_bytes());
                k.push(0);
                k.extend_from_slice(o.recipient_domain.as_bytes());
                batch.merge_cf(self.cf(CF_POL), k, 1u64.to_be_bytes());
            }
            Record::Login(l) => {
                let month = Month::of(from_micros(l.time_us), &cls.tz);
                batch.merge_cf(
                    self.cf(CF_LOGIN),
                    login_key(month, l),
                    login_value(l.time_us, 1),
                );
            }
        }
    }

    pub(super) fn add_message(&self, batch: &mut WriteBatch, m: &MessageRecord, cls: &Classifier) {
        let month = Month::of(from_micros(m.time_us), &cls.tz);
        // A domain's trailing dot (`a@ch-a.fr.`) is dropped here: one BAL, one spelling.
        let sender = drop_trailing_dot(&m.sender);
        if let Some(domain) = cls.operator_domain(&sender) {
            let value = if sender.len() == m.sender.len() {
                out_value(m)
            } else {
                out_value(&MessageRecord {
                    sender: sender.to_string(),
                    ..m.clone()
                })
            };
            let mut k = month.key().to_vec();
            k.extend_from_slice(sender.as_bytes());
            batch.merge_cf(self.cf(CF_SNT), k, (m.time_us.max(0) as u64).to_be_bytes());
            for rcpt in &m.recipients {
                batch.put_cf(
                    self.cf(CF_OUT),
                    out_key(
                        month,
                        &domain,
                        m.time_us,
                        &m.mail_id,
                        &drop_trailing_dot(rcpt),
                    ),
                    &value,
                );
            }
        }
        for rcpt in &m.recipients {
            let rcpt = drop_trailing_dot(rcpt);
            if cls.operator_domain(&rcpt).is_some() {
                let mut k = month.key().to_vec();
                k.extend_from_slice(rcpt.as_bytes());
                batch.merge_cf(self.cf(CF_RCV), k, (m.time_us.max(0) as u64).to_be_bytes());
            }
        }
    }
}
