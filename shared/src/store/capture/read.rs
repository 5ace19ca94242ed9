//! Reading one month's keys.

use std::collections::BTreeMap;

use rocksdb::{IteratorMode, ReadOptions};

use super::keys::{
    decode_out, prefix_upper_bound, read_u64, split_login, OutRow, CF_LOGIN, CF_OUT, CF_POL,
    CF_RCV, CF_SNT,
};
use super::{explain, CaptureStore};
use crate::error::{Error, Result};
use crate::month::Month;

impl CaptureStore {
    /// Every Echanges row of `month` (all domains, or one), in key order:
    /// domain, then date, then MAIL_ID, then recipient.
    pub fn for_each_out(
        &self,
        month: Month,
        domain: Option<&str>,
        mut f: impl FnMut(OutRow),
    ) -> Result<()> {
        let mut prefix = month.key().to_vec();
        if let Some(d) = domain {
            prefix.extend_from_slice(d.as_bytes());
            prefix.push(0);
        }
        self.scan(CF_OUT, &prefix, |k, v| {
            if let Some(row) = decode_out(k, v) {
                f(row);
            }
        })
    }

    /// Last reception per BAL for `month`.
    pub fn received(&self, month: Month) -> Result<BTreeMap<String, i64>> {
        self.last_per_bal(CF_RCV, month)
    }

    /// Recipients outside the Espace de Confiance, per (sender domain,
    /// recipient domain), in `month`.
    pub fn outside(&self, month: Month) -> Result<BTreeMap<(String, String), u64>> {
        let mut out = BTreeMap::new();
        self.scan(CF_POL, &month.key(), |k, v| {
            let rest = &k[6..];
            let mut parts = rest.splitn(2, |b| *b == 0);
            let s = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let r = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            *out.entry((s, r)).or_default() += read_u64(v);
        })?;
        Ok(out)
    }

    /// Last message sent per operator BAL for `month`.
    pub fn sent(&self, month: Month) -> Result<BTreeMap<String, i64>> {
        self.last_per_bal(CF_SNT, month)
    }

    pub(super) fn last_per_bal(&self, cf: &str, month: Month) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        self.scan(cf, &month.key(), |k, v| {
            out.insert(
                String::from_utf8_lossy(&k[6..]).into_owned(),
                read_u64(v) as i64,
            );
        })?;
        Ok(out)
    }

    /// Logins of `month`: (BAL, service) → (last time µs, count).
    pub fn logins(&self, month: Month) -> Result<BTreeMap<(String, String), (i64, u64)>> {
        let mut out = BTreeMap::new();
        self.scan(CF_LOGIN, &month.key(), |k, v| {
            let rest = &k[6..];
            let (bal, service) = match rest.iter().position(|&b| b == 0) {
                Some(p) => (&rest[..p], &rest[p + 1..]),
                None => (rest, &[][..]),
            };
            let (t, n) = split_login(v);
            out.insert(
                (
                    String::from_utf8_lossy(bal).into_owned(),
                    String::from_utf8_lossy(service).into_owned(),
                ),
                (t as i64, n),
            );
        })?;
        Ok(out)
    }

    pub(super) fn scan(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        if self.db.cf_handle(cf).is_none() {
            return Ok(()); // not created yet by the primary (older store)
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_upper_bound(prefix));
        ro.fill_cache(false);
        let it = self.db.iterator_cf_opt(
            self.cf(cf),
            ro,
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| Error::store(&self.path, explain(&e)))?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v);
        }
        Ok(())
    }

    pub(super) fn scan_range(
        &self,
        cf: &str,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let Some(h) = self.db.cf_handle(cf) else {
            return Ok(()); // older store: not created yet
        };
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(to.to_vec());
        ro.fill_cache(false);
        let it =
            self.db
                .iterator_cf_opt(h, ro, IteratorMode::From(from, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(|e| Error::store(&self.path, e))?;
            f(&k, &v);
        }
        Ok(())
    }
}
