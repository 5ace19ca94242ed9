//! `[report] mail_to_structures`: once the ANS has accepted a month, each
//! structure with a contact (`mss-admin structure set FINESS --contact A`)
//! gets its monthly report (HTML, CSV, JSON attached), handed to the local
//! MTA with `sendmail(1)` — never an SMTP client of ours.
//!
//! Each mail sent is recorded in the registry (`meta` key
//! `report/mailed/YYYY-MM/<FINESS>`, synced) before the next one: a run that
//! fails half way mails the others at the next run, and nobody gets the
//! same month twice.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{Message, SendmailTransport, Transport};

use mss_shared::config::Config;
use mss_shared::month::Month;
use mss_shared::report::text::{t, Lang};
use mss_shared::report::write::{render, Format};
use mss_shared::report::{build, Report, Select};
use mss_shared::Error;

use crate::state::with_reg;

fn key(month: Month, finess: &str) -> String {
    format!("report/mailed/{month}/{finess}")
}

fn message(r: &Report, from: &str, to: &str, lang: Lang) -> Result<Message, String> {
    let parse = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("{a}: {e}"));
    let finess = r.structure.finess().unwrap_or_default();
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let subject = format!("{} {} — FINESS {finess}{name}", t(lang, "title"), r.month);
    let s = r.summary();
    let body = match lang {
        Lang::Fr => format!(
            "Bonjour,\n\nVoici le rapport mensuel MSSanté de votre structure (FINESS {finess}) pour {m} : \
{msg} messages envoyés à {rows} destinataires, {bals} boîtes aux lettres déclarées, \
{act} BAL personnelle(s) à traiter (jamais connectées ou pas depuis 3 mois).\n\n\
Ces chiffres sont ceux des fichiers transmis à l'ANS pour {m}, que l'ANS a acceptés. \
Le détail est dans le fichier HTML joint (CSV et JSON pour vos outils).\n\
S'ils ne correspondent pas à votre activité, répondez à ce message.\n",
            m = r.month,
            msg = s.messages,
            rows = s.rows,
            bals = s.mailboxes,
            act = r.connexions.to_act.len()
        ),
        Lang::En => format!(
            "Hello,\n\nHere is the MSSanté monthly report of your structure (FINESS {finess}) for {m}: \
{msg} messages sent to {rows} recipients, {bals} mailboxes reported, \
{act} personal mailbox(es) to act on (never used or not in 3 months).\n\n\
These figures are those of the files sent to the ANS for {m}, which the ANS accepted. \
The details are in the attached HTML file (CSV and JSON for your tools).\n\
If they do not match your activity, reply to this message.\n",
            m = r.month,
            msg = s.messages,
            rows = s.rows,
            bals = s.mailboxes,
            act = r.connexions.to_act.len()
        ),
    };
    let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body));
    for (f, ct) in [
        (Format::Html, "text/html; charset=utf-8"),
        (Format::Csv, "text/csv; charset=utf-8"),
        (Format::Json, "application/json"),
    ] {
        let ct = ContentType::parse(ct).map_err(|e| e.to_string())?;
        parts = parts.singlepart(
            Attachment::new(format!("{}.{}", r.stem(), f.ext()))
                .body(render(r, f, lang).into_bytes(), ct),
        );
    }
    Message::builder()
        .from(parse(from)?)
        .to(parse(to)?)
        .subject(subject)
        .multipart(parts)
        .map_err(|e| e.to_string())
}

/// Mail the reports of accepted `month` not mailed yet. Returns the lines
/// to print; a structure whose mail fails is named in the error (the others
/// are still mailed).
///
/// # Errors
/// Store errors; [`Error::Other`] listing the structures not mailed.
pub fn mail_pending(cfg: &Config, month: Month) -> Result<Vec<String>, Error> {
    let rs = &cfg.report;
    let Some(from) = rs.from.as_deref().filter(|_| rs.mail_to_structures) else {
        return Ok(vec![]);
    };
    let sec = tempfile::Builder::new()
        .prefix("mss-export-secondary-")
        .tempdir()
        .map_err(|e| Error::Other(format!("temporary directory: {e}")))?;
    let cap = mss_shared::central::snapshot::open_for_reading(cfg, sec.path())?;
    let (reports, mailed) = with_reg(cfg, |reg| {
        let reports = build(
            cfg,
            &cap,
            Some(reg),
            month,
            jiff::Timestamp::now(),
            &Select::All,
        )?;
        let mailed = reg.list_meta(&format!("report/mailed/{month}/"))?;
        Ok((reports, mailed))
    })?;
    let done: Vec<String> = mailed.into_iter().map(|(k, _)| k).collect();
    let transport = SendmailTransport::new_with_command(&rs.sendmail);
    let (mut out, mut failed) = (vec![], vec![]);
    for r in &reports {
        let (Some(finess), Some(to)) = (r.structure.finess(), r.contact.as_deref()) else {
            continue;
        };
        if done.contains(&key(month, finess)) {
            continue;
        }
        let sent = message(r, from, to, rs.language()).and_then(|m| {
            transport
                .send(&m)
                .map_err(|e| format!("{} {e}", rs.sendmail.display()))
        });
        match sent {
            Ok(()) => {
                with_reg(cfg, |reg| {
                    reg.put_meta_synced(
                        &key(month, finess),
                        &serde_json::json!({"to": to, "time": crate::state::now_string()}),
                    )
                })?;
                out.push(format!("{month}: report of FINESS {finess} mailed to {to}"));
            }
            Err(e) => failed.push(format!("FINESS {finess} ({to}): {e}")),
        }
    }
    if failed.is_empty() {
        Ok(out)
    } else {
        for l in &out {
            println!("{l}");
        }
        Err(Error::Other(format!(
            "{month}: report(s) not mailed, tried again at the next run: {}",
            failed.join("; ")
        )))
    }
}
