//! The report as one self-contained HTML page: inline CSS (with an A4 print
//! stylesheet) and an inline SVG chart; no script, no external font or
//! image. Tables have header cells and captions; the chart has a title and
//! a text alternative, and its values are also in a table.

use std::fmt::Write;

use super::text::{t, Lang};
use super::{Report, StructureKey, Summary, HEADLINES};

const CSS: &str = "
body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;color:#1b1b1b;max-width:60rem;margin:1.5rem auto;padding:0 1rem;line-height:1.4;font-size:15px}
h1{font-size:1.5rem;margin:0 0 .3rem;color:#000091}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;border-bottom:2px solid #000091;color:#000091}
h3{font-size:1rem;margin:1rem 0 .4rem}
table{border-collapse:collapse;margin:.3rem 0 .8rem;min-width:50%}caption{text-align:left;font-weight:bold;padding:.2rem 0}
th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:#e3e3fd}.muted{color:#555}.tiles{display:flex;flex-wrap:wrap;gap:.6rem;margin:.5rem 0}
.tile{border:1px solid #bbb;border-left:6px solid #000091;padding:.4rem .7rem;min-width:9rem}.tile b{display:block;font-size:1.4rem}
.alert{border-left-color:#ce0500}.addr{white-space:nowrap}.lead{max-width:45rem}figure{margin:.5rem 0}svg text{font-size:11px;fill:#333}footer{margin-top:2rem;border-top:1px solid #bbb;padding-top:.5rem;font-size:.9rem}
@media print{@page{size:A4;margin:14mm}body{max-width:none;margin:0;font-size:11pt}section{break-inside:avoid-page}h2{break-after:avoid}thead{display:table-header-group}}
";

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// `1234567` → `1 234 567` (French) or `1,234,567` (English).
pub fn num(lang: Lang, n: u64) -> String {
    let s = n.to_string();
    let sep = match lang {
        Lang::Fr => "\u{a0}",
        Lang::En => ",",
    };
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            o.push_str(sep);
        }
        o.push(c);
    }
    o
}

fn structure_line(r: &Report, lang: Lang) -> String {
    let (label, id) = match &r.structure {
        StructureKey::FinessEg(f) => (t(lang, "finess_eg"), f.clone()),
        StructureKey::FinessEj(f) => (t(lang, "finess_ej"), f.clone()),
        StructureKey::Unattached(d) => (t(lang, "unattached"), d.clone()),
    };
    let name = r
        .name
        .as_ref()
        .map(|n| format!(" — {}", esc(n)))
        .unwrap_or_default();
    format!("{}&nbsp;: <b>{}</b>{name}", esc(&label), esc(&id))
}

/// The per-day bar chart of recipients (rows).
fn chart(r: &Report, lang: Lang) -> String {
    let days = &r.sent.days;
    let (w, h, left, bottom) = (700.0_f64, 190.0_f64, 40.0_f64, 22.0_f64);
    let max = days.iter().map(|d| d.rows).max().unwrap_or(0).max(1);
    let n = days.len().max(1) as f64;
    let slot = (w - left) / n;
    let plot = h - bottom - 10.0;
    let mut o = String::new();
    let title = t(lang, "per_day");
    let _ = write!(
        o,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"100%\" aria-labelledby=\"chart-title chart-desc\"><title id=\"chart-title\">{}</title><desc id=\"chart-desc\">{}</desc>",
        esc(&title),
        esc(&t(lang, "per_day_alt"))
    );
    let _ = write!(
        o,
        "<line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{left}\" y1=\"{0}\" x2=\"{w}\" y2=\"{0}\" stroke=\"#888\"/><text x=\"{}\" y=\"14\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{0}\" text-anchor=\"end\">0</text>",
        h - bottom,
        left - 4.0,
        num(lang, max),
        left - 4.0
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let bh = plot * d.rows as f64 / max as f64;
        let _ = write!(
            o,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#000091\"><title>{} : {}</title></rect>",
            h - bottom - bh,
            slot * 0.7,
            d.day,
            d.rows
        );
        let day_no = d.day.get(8..).unwrap_or("");
        if i % 5 == 0 || i + 1 == days.len() {
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{day_no}</text>",
                x + slot * 0.35,
                h - 6.0
            );
        }
    }
    o.push_str("</svg></figure>");
    o
}

fn table(caption: &str, heads: &[String], rows: &[Vec<String>], numeric_from: usize) -> String {
    let mut o = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for (i, h) in heads.iter().enumerate() {
        let cls = if i >= numeric_from {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(o, "<th scope=\"col\"{cls}>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>");
    for r in rows {
        o.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            if i == 0 {
                let cls = if c.contains('@') {
                    " class=\"addr\""
                } else {
                    ""
                };
                let _ = write!(o, "<th scope=\"row\"{cls}>{}</th>", esc(c));
            } else if i >= numeric_from {
                let _ = write!(o, "<td class=\"n\">{}</td>", esc(c));
            } else {
                let _ = write!(o, "<td>{}</td>", esc(c));
            }
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    o
}

fn tile(label: &str, value: String, alert: bool) -> String {
    format!(
        "<div class=\"tile{}\"><b>{value}</b>{}</div>",
        if alert { " alert" } else { "" },
        esc(label)
    )
}

/// The whole page.
pub fn render(r: &Report, lang: Lang) -> String {
    let l = |k: &str| t(lang, k);
    let n = |v: u64| num(lang, v);
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{} — {} — {}</title><style>{CSS}</style></head><body>",
        lang.code(),
        esc(&l("title")),
        esc(&r.month),
        esc(r.structure.finess().unwrap_or(match &r.structure {
            StructureKey::Unattached(d) => d,
            _ => "",
        }))
    );
    let _ = write!(
        o,
        "<header><h1>{} — {}</h1><p>{}</p><p class=\"muted\">{}&nbsp;: {}</p><p class=\"lead\">{}</p></header>",
        esc(&l("title")),
        esc(&r.month),
        structure_line(r, lang),
        esc(&l("domains")),
        esc(&r.domains.join(", ")),
        esc(&l("lead"))
    );
    // At a glance.
    let s = r.summary();
    let c = &r.connexions;
    o.push_str("<section><h2>");
    o.push_str(&esc(&l("glance")));
    o.push_str("</h2><div class=\"tiles\">");
    o.push_str(&tile(&l("messages"), n(s.messages), false));
    o.push_str(&tile(&l("rows"), n(s.rows), false));
    o.push_str(&tile(&l("mailboxes"), n(s.mailboxes), false));
    o.push_str(&tile(
        &l("connected_in_month"),
        n(s.connected_in_month),
        false,
    ));
    o.push_str(&tile(
        &l("to_act"),
        n(c.to_act.len() as u64),
        !c.to_act.is_empty(),
    ));
    o.push_str("</div>");
    let cmp = |v: &Option<Summary>, f: fn(&Summary) -> u64| {
        v.as_ref().map_or(l("not_captured"), |s| n(f(s)))
    };
    let rows: Vec<Vec<String>> = HEADLINES
        .iter()
        .map(|(k, f)| {
            vec![
                l(k),
                n(f(&s)),
                cmp(&r.previous_month, *f),
                cmp(&r.year_before, *f),
            ]
        })
        .collect();
    o.push_str(&table(
        &l("glance_caption"),
        &[
            String::new(),
            l("this_month"),
            l("previous_month"),
            l("year_before"),
        ],
        &rows,
        1,
    ));
    o.push_str("</section>");
    // Mailboxes.
    let _ = write!(o, "<section><h2>{}</h2>", esc(&l("bal_types")));
    let rows: Vec<Vec<String>> = r
        .mailboxes
        .by_type
        .iter()
        .map(|x| vec![l(x.kind), n(x.included), n(x.excluded)])
        .collect();
    o.push_str(&table(
        &l("types_caption"),
        &[l("type"), l("included"), l("excluded")],
        &rows,
        1,
    ));
    if !r.mailboxes.excluded.is_empty() {
        let rows: Vec<Vec<String>> = r
            .mailboxes
            .excluded
            .iter()
            .map(|e| {
                let why = l(e.because.as_str());
                // The detail is English (dates and statuses): shown in English only.
                let detail = match (lang, e.detail.as_deref()) {
                    (Lang::En, Some(d)) => format!(" ({d})"),
                    _ => String::new(),
                };
                vec![e.bal.clone(), l(e.kind), format!("{why}{detail}")]
            })
            .collect();
        o.push_str(&table(
            &l("excluded_list"),
            &[l("bal"), l("type"), l("why")],
            &rows,
            9,
        ));
    }
    o.push_str("</section>");
    // Mail sent.
    let _ = write!(o, "<section><h2>{}</h2>", esc(&l("sent")));
    o.push_str(&chart(r, lang));
    let busy: Vec<Vec<String>> = r
        .sent
        .days
        .iter()
        .filter(|d| d.rows > 0)
        .map(|d| vec![d.day.clone(), n(d.messages), n(d.rows)])
        .collect();
    o.push_str(&table(
        &l("per_day"),
        &[l("day"), l("messages"), l("rows")],
        &busy,
        1,
    ));
    let rows: Vec<Vec<String>> = r
        .sent
        .by_type
        .iter()
        .map(|x| vec![l(x.kind), n(x.messages), n(x.rows), n(x.bytes)])
        .collect();
    o.push_str(&table(
        &l("by_type"),
        &[l("type"), l("messages"), l("rows"), l("bytes")],
        &rows,
        1,
    ));
    let rows: Vec<Vec<String>> = r
        .sent
        .top
        .iter()
        .map(|b| {
            vec![
                b.bal.clone(),
                l(b.kind),
                n(b.messages),
                n(b.rows),
                n(b.bytes),
            ]
        })
        .collect();
    o.push_str(&table(
        &l("top"),
        &[l("bal"), l("type"), l("messages"), l("rows"), l("bytes")],
        &rows,
        2,
    ));
    if let Some(ts) = r.sent.trust_space {
        o.push_str(&table(
            &l("trust"),
            &[String::new(), l("rows")],
            &[
                vec![l("inside"), n(ts.inside)],
                vec![l("outside"), n(ts.outside)],
            ],
            1,
        ));
    }
    o.push_str("</section>");
    // Connexions.
    let _ = write!(o, "<section><h2>{}</h2>", esc(&l("connexions")));
    o.push_str(&table(
        &l("connexions_caption"),
        &[String::new(), l("mailboxes")],
        &[
            vec![l("connected_in_month"), n(c.connected_in_month)],
            vec![l("connected_earlier"), n(c.connected_earlier)],
            vec![l("never"), n(c.never)],
            vec![l("unknown"), n(c.unknown)],
        ],
        1,
    ));
    let _ = write!(
        o,
        "<h3>{}</h3><p class=\"muted\">{}</p>",
        esc(&l("to_act")),
        esc(&l("to_act_help"))
    );
    if c.to_act.is_empty() {
        let _ = write!(o, "<p>{}</p>", esc(&l("none")));
    } else {
        let rows: Vec<Vec<String>> = c
            .to_act
            .iter()
            .map(|a| vec![a.bal.clone(), a.date.clone(), l(a.why)])
            .collect();
        o.push_str(&table(
            &l("to_act"),
            &[l("bal"), l("last_connexion"), l("why")],
            &rows,
            9,
        ));
    }
    let _ = write!(o, "<h3>{}</h3>", esc(&l("without_finess")));
    if c.personal_without_finess.is_empty() {
        let _ = write!(o, "<p>{}</p>", esc(&l("none")));
    } else {
        o.push_str("<ul>");
        for b in &c.personal_without_finess {
            let _ = write!(o, "<li>{}</li>", esc(b));
        }
        o.push_str("</ul>");
    }
    o.push_str("</section>");
    // Footer: the files this report matches.
    let archive = if r.files.archives.is_empty() {
        l("not_built")
    } else {
        r.files.archives.join(", ")
    };
    let state = r.files.state.as_deref().map_or(l("not_built"), l);
    let _ = write!(
        o,
        "<footer><p>{}</p><p>{}&nbsp;: {}<br>{}&nbsp;: {}</p><p>{}</p></footer></body></html>",
        esc(&l("footer")),
        esc(&l("archive")),
        esc(&archive),
        esc(&l("state")),
        esc(&state),
        esc(&l("check"))
    );
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_groups_digits() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(num(Lang::Fr, 1_234_567), "1\u{a0}234\u{a0}567");
        assert_eq!(num(Lang::En, 1_234), "1,234");
        assert_eq!(num(Lang::En, 999), "999");
        assert_eq!(num(Lang::En, 0), "0");
    }
}
