//! The report's words (French by default, English with `--lang en`) and its
//! CSV rendering: the same figures as the JSON, one per line.

use std::fmt::Write;

use super::{Report, Summary, HEADLINES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// `fr` or `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "fr" => Some(Lang::Fr),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }
}

/// The label of `key` in `lang` (the key itself when unknown).
pub fn t(lang: Lang, key: &str) -> String {
    let (fr, en) = match key {
        "title" => ("Rapport mensuel MSSanté", "MSSanté monthly report"),
        "structure" => ("Structure", "Structure"),
        "finess_eg" => ("FINESS géographique (EG)", "FINESS site (EG)"),
        "finess_ej" => ("FINESS juridique (EJ)", "FINESS legal entity (EJ)"),
        "unattached" => (
            "BAL non rattachées à un FINESS (« de ville »), domaine",
            "Mailboxes attached to no FINESS (\"de ville\"), domain",
        ),
        "month" => ("Mois", "Month"),
        "lead" => (
            "Ce rapport présente l'activité de messagerie MSSanté de votre structure pour le mois, telle que votre opérateur l'a déclarée à l'Agence du Numérique en Santé (ANS).",
            "This report shows your structure's MSSanté mail activity for the month, as your operator reported it to the Agence du Numérique en Santé (ANS).",
        ),
        "glance_caption" => (
            "Chiffres du mois comparés au mois précédent et au même mois l'an dernier",
            "This month's figures beside the previous month and the same month last year",
        ),
        "types_caption" => ("BAL déclarées et exclues, par type", "Mailboxes reported and left out, by type"),
        "connexions_caption" => (
            "Dernière connexion des BAL déclarées à l'ANS",
            "Last login of the mailboxes reported to the ANS",
        ),
        "domains" => ("Domaines", "Domains"),
        "glance" => ("En bref", "At a glance"),
        "this_month" => ("Ce mois", "This month"),
        "previous_month" => ("Mois précédent", "Previous month"),
        "year_before" => ("Même mois l'an dernier", "Same month last year"),
        "not_captured" => ("non capté", "not captured"),
        "messages" => ("Messages envoyés", "Messages sent"),
        "rows" => (
            "Destinataires (lignes Echanges)",
            "Recipients (Echanges rows)",
        ),
        "bytes" => ("Volume (octets)", "Volume (bytes)"),
        "mailboxes" => (
            "BAL déclarées à l'ANS (Connexions)",
            "Mailboxes reported to the ANS (Connexions)",
        ),
        "connected_in_month" => ("BAL connectées ce mois", "Mailboxes used this month"),
        "connected_earlier" => (
            "Connectées avant ce mois",
            "Last used before this month",
        ),
        "never" => ("Jamais connectées", "Never used"),
        "unknown" => ("Sans information", "No information"),
        "bal_types" => ("Boîtes aux lettres par type", "Mailboxes by type"),
        "type" => ("Type", "Type"),
        "included" => ("Déclarées", "Reported"),
        "excluded" => ("Exclues", "Left out"),
        "personnelle" => ("Personnelle", "Personal"),
        "organisationnelle" => ("Organisationnelle", "Organisational"),
        "applicative" => ("Applicative", "Application"),
        "undeclared" => ("Non déclarée au registre", "Not in the registry"),
        "excluded_list" => ("BAL exclues des fichiers, et pourquoi", "Mailboxes left out, and why"),
        "bal" => ("Adresse", "Address"),
        "why" => ("Motif", "Reason"),
        "sent" => ("Messages envoyés", "Mail sent"),
        "per_day" => ("Destinataires par jour", "Recipients per day"),
        "per_day_alt" => (
            "Histogramme du nombre de destinataires par jour du mois ; les valeurs sont dans le tableau qui suit.",
            "Bar chart of recipients per day of the month; the values are in the table that follows.",
        ),
        "day" => ("Jour", "Day"),
        "by_type" => ("Par type de BAL", "By mailbox type"),
        "top" => ("Les dix BAL les plus actives", "The ten most active mailboxes"),
        "trust" => (
            "Destinataires dans / hors de l'Espace de Confiance",
            "Recipients inside / outside the Espace de Confiance",
        ),
        "inside" => ("Dans l'Espace de Confiance", "Inside"),
        "outside" => ("Hors de l'Espace de Confiance", "Outside"),
        "connexions" => ("Connexions", "Logins"),
        "to_act" => (
            "À traiter : BAL personnelles jamais connectées ou pas depuis 3 mois",
            "To act on: personal mailboxes never used or not in 3 months",
        ),
        "to_act_help" => (
            "Bonne pratique ANS : supprimer ces BAL ou les inscrire en liste rouge.",
            "ANS good practice: delete these mailboxes or put them on the red list.",
        ),
        "last_connexion" => ("Dernière connexion déclarée", "Last login reported"),
        "over_3_months" => ("pas depuis 3 mois", "not in 3 months"),
        "without_finess" => (
            "BAL personnelles sans FINESS (à rattacher)",
            "Personal mailboxes without a FINESS (to attach)",
        ),
        "none" => ("Aucune.", "None."),
        "footer" => (
            "Ces chiffres sont ceux des fichiers transmis à l'ANS pour ce mois (mêmes indicateurs, même registre).",
            "These figures are those of the files sent to the ANS for this month (same indicators, same registry).",
        ),
        "archive" => ("Archive", "Archive"),
        "state" => ("État du dépôt", "Deposit state"),
        "not_built" => ("pas encore construite", "not built yet"),
        "check" => (
            "Si ces chiffres ne correspondent pas à votre activité, contactez votre opérateur.",
            "If these figures do not match your activity, contact your operator.",
        ),
        "built" => ("construite", "built"),
        "validated" => ("validée", "validated"),
        "submitted" => ("déposée", "submitted"),
        "report_pending" => ("compte rendu en attente", "report pending"),
        "accepted" => ("acceptée par l'ANS", "accepted by the ANS"),
        "rejected" => ("refusée par l'ANS", "rejected by the ANS"),
        "test" => ("BAL de test", "test mailbox"),
        "suspended" => ("suspendue", "suspended"),
        "deleted" => ("supprimée", "deleted"),
        "not_yet_registered" => ("créée après le mois", "created after the month"),
        _ => return key.to_string(),
    };
    match lang {
        Lang::Fr => fr.to_string(),
        Lang::En => en.to_string(),
    }
}

fn opt(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// The report as CSV (`;`, header, LF): `section;item;value;previous_month;year_before`.
pub fn csv(r: &Report) -> String {
    let mut o = String::from("section;item;value;previous_month;year_before\n");
    let pick = |s: &Option<Summary>, f: fn(&Summary) -> u64| opt(s.as_ref().map(f));
    let now = r.summary();
    for (k, f) in HEADLINES {
        let v = f(&now);
        let _ = writeln!(
            o,
            "summary;{k};{v};{};{}",
            pick(&r.previous_month, f),
            pick(&r.year_before, f)
        );
    }
    let c = &r.connexions;
    for (k, v) in [
        ("connected_earlier", c.connected_earlier),
        ("unknown", c.unknown),
    ] {
        let _ = writeln!(o, "connexions;{k};{v};;");
    }
    for t in &r.mailboxes.by_type {
        let _ = writeln!(o, "mailboxes_included;{};{};;", t.kind, t.included);
        let _ = writeln!(o, "mailboxes_excluded;{};{};;", t.kind, t.excluded);
    }
    for t in &r.sent.by_type {
        let _ = writeln!(o, "sent_messages;{};{};;", t.kind, t.messages);
        let _ = writeln!(o, "sent_rows;{};{};;", t.kind, t.rows);
        let _ = writeln!(o, "sent_bytes;{};{};;", t.kind, t.bytes);
    }
    if let Some(ts) = r.sent.trust_space {
        let _ = writeln!(o, "trust_space;inside;{};;", ts.inside);
        let _ = writeln!(o, "trust_space;outside;{};;", ts.outside);
    }
    for d in &r.sent.days {
        let _ = writeln!(o, "day_messages;{};{};;", d.day, d.messages);
        let _ = writeln!(o, "day_rows;{};{};;", d.day, d.rows);
    }
    for b in &r.sent.top {
        let _ = writeln!(o, "top_rows;{};{};;", b.bal, b.rows);
    }
    for a in &c.to_act {
        let _ = writeln!(o, "to_act;{};{};;", a.bal, a.why);
    }
    for b in &c.personal_without_finess {
        let _ = writeln!(o, "without_finess;{b};1;;");
    }
    for e in &r.mailboxes.excluded {
        let _ = writeln!(o, "excluded;{};{};;", e.bal, e.because.as_str());
    }
    for l in &c.lines {
        let _ = writeln!(o, "connexion;{};{};;", l.bal, l.date);
    }
    o
}
