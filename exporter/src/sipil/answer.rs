//! Reading SIPIL answers: the deposit id, the report's verdict, excerpts.

use mss_shared::config::Sipil;

use super::Verdict;

/// The deposit id in a deposit response, per `sipil.deposit_id_regex`.
pub fn deposit_id(s: &Sipil, body: &str) -> Option<String> {
    let id = match s.deposit_id_regex() {
        Some(re) => re.captures(body)?.get(1)?.as_str().trim().to_string(),
        None => body.trim().to_string(),
    };
    (!id.is_empty() && id.len() <= 1024).then_some(id)
}

/// Classify a report: rejected, then pending, then accepted patterns; no
/// match at all counts as pending. Returns the verdict and the matched text.
pub fn classify(s: &Sipil, report: &str) -> (Verdict, Option<String>) {
    let (rejected, pending, accepted) = s.report_patterns();
    for (re, v) in [
        (rejected, Verdict::Rejected),
        (pending, Verdict::Pending),
        (accepted, Verdict::Accepted),
    ] {
        if let Some(m) = re.find(report) {
            return (v, Some(m.as_str().to_string()));
        }
    }
    (Verdict::Pending, None)
}

/// A short one-line excerpt of a response body for error messages.
pub fn excerpt(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 200 {
        format!("{}…", one.chars().take(200).collect::<String>())
    } else if one.is_empty() {
        "(empty body)".into()
    } else {
        one
    }
}

/// A report made readable: pretty JSON, XML/HTML without tags, or the text.
pub fn readable(raw: &str) -> String {
    let t = raw.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
        if v.is_object() || v.is_array() {
            return serde_json::to_string_pretty(&v).unwrap_or_else(|_| t.to_string());
        }
    }
    if t.starts_with('<') {
        let mut out = String::new();
        let mut in_tag = false;
        for c in t.chars() {
            match c {
                '<' => {
                    in_tag = true;
                    out.push('\n');
                }
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        return out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
    }
    t.to_string()
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
