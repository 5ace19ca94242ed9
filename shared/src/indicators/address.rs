//! Address canonicalisation: the BAL an address stands for.
//!
//! - the domain is lower-cased and loses a trailing dot (`alice@CH-A.fr.` → `alice@ch-a.fr`);
//! - with `[operator] recipient_delimiter` (Postfix's meaning, e.g. `"+"`; empty = off), the
//!   extension is stripped from the local part: `alice+rdv@d` → `alice@d` (the first delimiter
//!   character found starts the extension, as in Postfix);
//! - a sender `SRS0=…`/`SRS1=…` on an operator domain is a forward ([`is_srs_forward`]):
//!   never mail sent by a BAL.
//!
//! The local part keeps its case (it is the operator's to interpret); it is
//! already lower-cased by capture for everything captured.

/// The domain of `addr` without a trailing dot, lower-cased.
pub fn domain(addr: &str) -> Option<String> {
    let (_, d) = addr.rsplit_once('@')?;
    let d = d.strip_suffix('.').unwrap_or(d);
    (!d.is_empty()).then(|| d.to_ascii_lowercase())
}

/// `addr` with its domain's trailing dot dropped (nothing else changed): what capture stores.
pub fn drop_trailing_dot(addr: &str) -> std::borrow::Cow<'_, str> {
    match addr.strip_suffix('.') {
        Some(s) if s.contains('@') && !s.ends_with('@') => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Borrowed(addr),
    }
}

/// The local part without its extension (`delimiters` as Postfix's `recipient_delimiter`:
/// any of these characters starts the extension; empty = off). A local part that *starts*
/// with a delimiter is kept whole (Postfix does the same: `+x@d` is not `@d`).
pub fn strip_extension<'a>(local: &'a str, delimiters: &str) -> &'a str {
    if delimiters.is_empty() || local.starts_with('"') {
        return local;
    }
    match local.find(|c| delimiters.contains(c)) {
        Some(i) if i > 0 => &local[..i],
        _ => local,
    }
}

/// The BAL `addr` stands for: domain lower-cased without trailing dot, extension stripped.
/// An address without `@` is returned unchanged.
pub fn canonical(addr: &str, delimiters: &str) -> String {
    let Some((local, _)) = addr.rsplit_once('@') else {
        return addr.to_string();
    };
    let d = domain(addr).unwrap_or_default();
    let mut out = String::with_capacity(addr.len());
    out.push_str(strip_extension(local, delimiters));
    out.push('@');
    out.push_str(&d);
    out
}

/// A sender rewritten by SRS (`SRS0=…` or `SRS1=…`, any case) on one of the operator's
/// domains: a forward made by the operator's MTA, not a mail sent by a BAL.
pub fn is_srs_forward(addr: &str, is_operator_domain: impl Fn(&str) -> bool) -> bool {
    let Some((local, _)) = addr.rsplit_once('@') else {
        return false;
    };
    let srs = local
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("SRS0=") || p.eq_ignore_ascii_case("SRS1="));
    srs && domain(addr).is_some_and(|d| is_operator_domain(&d))
}

/// A mailbox address: one `@`, non-empty local part, a dotted domain, no
/// spaces or control characters, ≤ 255.
pub fn valid_bal(s: &str) -> bool {
    let Some((l, d)) = s.rsplit_once('@') else {
        return false;
    };
    !l.is_empty()
        && d.contains('.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && s.len() <= 255
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical("alice+rdv@ch-a.fr", "+"), "alice@ch-a.fr");
        assert_eq!(canonical("alice+rdv@ch-a.fr", ""), "alice+rdv@ch-a.fr");
        assert_eq!(canonical("alice-x+y@ch-a.fr", "+-"), "alice@ch-a.fr");
        assert_eq!(canonical("alice@CH-A.fr.", ""), "alice@ch-a.fr");
        assert_eq!(canonical("alice+a+b@ch-a.fr.", "+"), "alice@ch-a.fr");
        assert_eq!(canonical("+x@ch-a.fr", "+"), "+x@ch-a.fr");
        assert_eq!(canonical("\"a+b\"@ch-a.fr", "+"), "\"a+b\"@ch-a.fr");
        assert_eq!(canonical("nobody", "+"), "nobody");
    }

    #[test]
    fn trailing_dot() {
        assert_eq!(drop_trailing_dot("a@b.fr."), "a@b.fr");
        assert_eq!(drop_trailing_dot("a@b.fr"), "a@b.fr");
        assert_eq!(drop_trailing_dot("a@."), "a@.");
        assert_eq!(drop_trailing_dot("a."), "a.");
        assert_eq!(domain("a@B.fr."), Some("b.fr".into()));
        assert_eq!(domain("a@"), None);
    }

    #[test]
    fn srs() {
        let op = |d: &str| d == "ch-a.fr";
        assert!(is_srs_forward("SRS0=HHH=TT=ext.fr=bob@ch-a.fr", op));
        assert!(is_srs_forward("srs1=x=y@CH-A.fr.", op));
        assert!(!is_srs_forward("SRS0=HHH=TT=ext.fr=bob@other.fr", op));
        assert!(!is_srs_forward("srs@ch-a.fr", op));
        assert!(!is_srs_forward("alice@ch-a.fr", op));
    }
}
