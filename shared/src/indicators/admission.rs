//! Row admission: which captured rows can be written validly into an Echanges file.
//!
//! A row that cannot (a field over 255 characters, an address the ANS format cannot
//! carry) is *quarantined*: left out of the file, listed with its reason in
//! `AAAAMM_quarantine.csv` beside the archive, so one odd row never blocks the month.
//! The limits are the ones `mss-export validate` checks (it calls [`is_address`] and
//! [`MAX_FIELD_CHARS`]): an admitted row always validates.

/// Longest field the ANS files accept, in characters.
pub const MAX_FIELD_CHARS: usize = 255;

/// Why a row is quarantined (the `RAISON` column of the quarantine file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// MAIL_ID empty or over [`MAX_FIELD_CHARS`].
    MailId,
    SenderTooLong,
    SenderNotAddress,
    RecipientTooLong,
    RecipientNotAddress,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MailId => "mail_id",
            Reason::SenderTooLong => "sender_too_long",
            Reason::SenderNotAddress => "sender_not_address",
            Reason::RecipientTooLong => "recipient_too_long",
            Reason::RecipientNotAddress => "recipient_not_address",
        }
    }
}

/// An address the files can carry: `local@domain`, both non-empty, a dot in the domain,
/// no white space, `<`, `>`, `,`, `;` or `"` (a quoted local part cannot be written
/// without CSV quoting around an inner quote), and not the text `null`.
pub fn is_address(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && !d.is_empty()
                && d.contains('.')
                && !s.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
                })
        }
        None => false,
    }
}

fn too_long(s: &str) -> bool {
    // Byte length bounds the character count: skip counting for short fields.
    s.len() > MAX_FIELD_CHARS && s.chars().count() > MAX_FIELD_CHARS
}

/// Admit one Echanges row (already canonicalised), or say why it is quarantined.
/// The sender's domain is the file's by construction (capture keys rows by it).
pub fn admit(mail_id: &str, sender: &str, recipient: &str) -> Result<(), Reason> {
    if mail_id.is_empty() || too_long(mail_id) || mail_id.eq_ignore_ascii_case("null") {
        return Err(Reason::MailId);
    }
    if too_long(sender) {
        return Err(Reason::SenderTooLong);
    }
    if !is_address(sender) {
        return Err(Reason::SenderNotAddress);
    }
    if too_long(recipient) {
        return Err(Reason::RecipientTooLong);
    }
    if !is_address(recipient) {
        return Err(Reason::RecipientNotAddress);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admitted_and_quarantined() {
        assert_eq!(admit("id1", "a@ch-a.fr", "b@ext.fr"), Ok(()));
        let long = format!("{}@ext.fr", "r".repeat(249));
        assert_eq!(long.chars().count(), 256);
        assert_eq!(
            admit("id1", "a@ch-a.fr", &long),
            Err(Reason::RecipientTooLong)
        );
        let fits = format!("{}@ext.fr", "r".repeat(248));
        assert_eq!(admit("id1", "a@ch-a.fr", &fits), Ok(()));
        assert_eq!(
            admit("id1", "\"a b\"@ch-a.fr", "b@ext.fr"),
            Err(Reason::SenderNotAddress)
        );
        assert_eq!(
            admit("id1", "a@ch-a.fr", "\"bob\"@ext.fr"),
            Err(Reason::RecipientNotAddress)
        );
        assert_eq!(
            admit("id1", "a@ch-a.fr", "nodomain"),
            Err(Reason::RecipientNotAddress)
        );
        assert_eq!(admit("", "a@ch-a.fr", "b@ext.fr"), Err(Reason::MailId));
        assert_eq!(admit("NULL", "a@ch-a.fr", "b@ext.fr"), Err(Reason::MailId));
        // 255 two-byte characters are 510 bytes but still fit.
        let accents = format!("{}@ext.fr", "é".repeat(247));
        assert_eq!(accents.chars().count(), 254);
        assert_eq!(admit("id1", "a@ch-a.fr", &accents), Ok(()));
    }

    #[test]
    fn reasons_are_stable_words() {
        assert_eq!(Reason::RecipientTooLong.as_str(), "recipient_too_long");
        assert_eq!(Reason::SenderNotAddress.as_str(), "sender_not_address");
    }
}
