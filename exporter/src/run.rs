//! `mss-export submit | report | run | status`: delivery of a month's
//! archive(s) to the ANS and the monthly state machine (see [`crate::state`]).
//!
//! Exit codes (shared/src/exit.rs, README.md "Delivering to the ANS"):
//! 0 accepted / done, 2 configuration or TLS identity problem, 3 store,
//! 5 invalid archive, 6 pending (the timer tries again), 7 rejected and the
//! rebuilt archive is identical, 8 deadline passed without acceptance,
//! 9 SIPIL unreachable or refusing (TLS, HTTP error, no deposit id), 16 (with
//! `[central]`) waiting for a node to ship the month.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use mss_shared::config::{Config, Sipil};
use mss_shared::month::Month;
use mss_shared::{exit, Error};

use crate::sipil::{self, Client, Verdict};
use crate::state::{self, with_reg, Archive, MonthRecord, Report, State, Submission};
use crate::validate;

fn sipil_cfg(cfg: &Config) -> Result<&Sipil, Error> {
    cfg.sipil.as_ref().ok_or_else(|| {
        Error::Config(
            "section [sipil] is missing: post_url, report_url, client_cert, client_key and ca_file are needed to deliver"
                .into(),
        )
    })
}

fn load(cfg: &Config, month: Month) -> Result<Option<MonthRecord>, Error> {
    with_reg(cfg, |r| state::load(r, month))
}

fn save(cfg: &Config, month: Month, rec: &MonthRecord) -> Result<(), Error> {
    with_reg(cfg, |r| state::save(r, month, rec))
}

fn is_month_archive(name: &str, month: Month) -> bool {
    let Some(rest) = name.strip_prefix(&format!("{}_IndicateursMSSante", month.compact())) else {
        return false;
    };
    let Some(mid) = rest.strip_suffix(".zip") else {
        return false;
    };
    mid.is_empty()
        || mid.strip_prefix('_').is_some_and(|p| {
            p.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
        })
}

/// The month's archives present in `dir`, sorted by name.
fn month_archives(dir: &Path, month: Month) -> Result<Vec<PathBuf>, Error> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::Other(format!("{}: {e}", dir.display()))),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| is_month_archive(&e.file_name().to_string_lossy(), month))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

fn describe(paths: &[PathBuf]) -> Result<Vec<Archive>, Error> {
    paths
        .iter()
        .map(|p| {
            let bytes =
                std::fs::read(p).map_err(|e| Error::Other(format!("{}: {e}", p.display())))?;
            Ok(Archive {
                file: file_name(p),
                sha256: sipil::sha256_hex(&bytes),
                size: bytes.len() as u64,
            })
        })
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Build the month's archive(s) into `dir` with the build code.
fn build_into(cfg: &Config, month: Month, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let sec = tempfile::Builder::new()
        .prefix("mss-export-secondary-")
        .tempdir()
        .map_err(|e| Error::Other(format!("temporary directory: {e}")))?;
    let cap = mss_shared::central::snapshot::open_for_reading(cfg, sec.path())?;
    let report = with_reg(cfg, |reg| crate::build::build(cfg, &cap, reg, month, dir))?;
    Ok(report.archives)
}

/// Build into a staging directory beside `export.out_dir` (same file system).
fn stage(cfg: &Config, month: Month) -> Result<(tempfile::TempDir, Vec<PathBuf>), Error> {
    let out = &cfg.export.out_dir;
    std::fs::create_dir_all(out).map_err(|e| Error::Other(format!("{}: {e}", out.display())))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!(".staging-{}-", month.compact()))
        .tempdir_in(out)
        .map_err(|e| Error::Other(format!("{}: {e}", out.display())))?;
    let paths = build_into(cfg, month, dir.path())?;
    Ok((dir, paths))
}

/// Replace the month's archives in `export.out_dir` with the staged ones.
fn install(cfg: &Config, month: Month, staged: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let out = &cfg.export.out_dir;
    for old in month_archives(out, month)? {
        std::fs::remove_file(&old).map_err(|e| Error::Other(format!("{}: {e}", old.display())))?;
    }
    let mut paths = vec![];
    for p in staged {
        let dest = out.join(file_name(p));
        std::fs::rename(p, &dest).map_err(|e| Error::Other(format!("{}: {e}", dest.display())))?;
        paths.push(dest);
    }
    // The quarantine list goes beside the archives (a stale one is removed).
    crate::quarantine::install(staged.first().and_then(|p| p.parent()), out, month)?;
    Ok(paths)
}

fn check(cfg: &Config, paths: &[PathBuf]) -> Result<Vec<String>, Error> {
    let rules = validate::Rules {
        delimiter: cfg.export.delimiter.as_bytes()[0],
        crlf: cfg.export.crlf,
        max_archive_bytes: cfg.export.max_archive_bytes,
    };
    let mut problems = vec![];
    for p in paths {
        let found = validate::check_path(p, &rules)
            .map_err(|e| Error::Other(format!("{}: {e}", p.display())))?;
        problems.extend(found.into_iter().map(|x| format!("{}: {x}", p.display())));
    }
    Ok(problems)
}

/// Deposit one archive and record the answer in `rec`.
fn deposit(client: &Client, s: &Sipil, rec: &mut MonthRecord, path: &Path) -> Result<(), Error> {
    let name = file_name(path);
    let bytes =
        std::fs::read(path).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let sha256 = sipil::sha256_hex(&bytes);
    let answer = client.post_archive(&name, &bytes)?;
    let text = answer.text();
    let ok = (200..300).contains(&answer.status);
    let id = if ok {
        sipil::deposit_id(s, &text)
    } else {
        None
    };
    rec.submissions.push(Submission {
        file: name.clone(),
        sha256: sha256.clone(),
        size: bytes.len() as u64,
        time: state::now_string(),
        http_status: answer.status,
        response: text.clone(),
        deposit_id: id.clone(),
    });
    if !ok {
        return Err(Error::Remote(format!(
            "deposit of {name}: {} answered HTTP {}: {}",
            s.post_url,
            answer.status,
            sipil::excerpt(&text)
        )));
    }
    let Some(id) = id else {
        return Err(Error::Remote(format!(
            "deposit of {name}: HTTP {} but no deposit id in the response (rule: {}): {}",
            answer.status,
            s.deposit_id_regex
                .as_deref()
                .map(|r| format!("sipil.deposit_id_regex = {r:?}"))
                .unwrap_or_else(|| "the whole trimmed body".into()),
            sipil::excerpt(&text)
        )));
    };
    println!(
        "deposited {name} ({} bytes, sha256 {sha256}): deposit id {id}",
        bytes.len()
    );
    Ok(())
}

/// Deposit every archive of the current set not accepted yet; the record is
/// saved after each call, failures included.
fn deposit_all(
    cfg: &Config,
    client: &Client,
    s: &Sipil,
    month: Month,
    rec: &mut MonthRecord,
    paths: &[PathBuf],
) -> Result<(), Error> {
    for p in paths {
        let sha = sipil::sha256_hex(
            &std::fs::read(p).map_err(|e| Error::Other(format!("{}: {e}", p.display())))?,
        );
        if rec.accepted(&sha) {
            println!("{}: already accepted, not deposited again", file_name(p));
            continue;
        }
        let r = deposit(client, s, rec, p);
        rec.last_error = r.as_ref().err().map(|e| e.to_string());
        rec.recompute(true);
        save(cfg, month, rec)?;
        r?;
    }
    Ok(())
}

/// Fetch the report of every current deposit whose verdict is not final
/// (`all`: every current deposit). Prints each report.
fn fetch_reports(
    cfg: &Config,
    client: &Client,
    s: &Sipil,
    month: Month,
    rec: &mut MonthRecord,
    all: bool,
) -> Result<(), Error> {
    let todo: Vec<(Archive, String)> = rec
        .archives
        .iter()
        .filter(|a| all || !rec.accepted(&a.sha256))
        .filter_map(|a| {
            let id = rec.deposit_of(&a.sha256)?.deposit_id.clone()?;
            let final_ = matches!(
                rec.report_of(&id).map(|r| r.verdict),
                Some(Verdict::Accepted | Verdict::Rejected)
            );
            (all || !final_).then(|| (a.clone(), id))
        })
        .collect();
    for (a, id) in todo {
        let r = client.get_report(&id).and_then(|answer| {
            if !(200..300).contains(&answer.status) {
                return Err(Error::Remote(format!(
                    "report of deposit {id}: {} answered HTTP {}: {}",
                    s.report_url,
                    answer.status,
                    sipil::excerpt(&answer.text())
                )));
            }
            Ok(answer)
        });
        match r {
            Ok(answer) => {
                let raw = answer.text();
                let (verdict, matched) = sipil::classify(s, &raw);
                println!(
                    "report of {} (deposit {id}): {verdict}{}",
                    a.file,
                    matched
                        .as_deref()
                        .map(|m| format!(" (matched {m:?})"))
                        .unwrap_or_default()
                );
                for line in sipil::readable(&raw).lines() {
                    println!("  | {line}");
                }
                rec.reports.push(Report {
                    deposit_id: id,
                    file: a.file.clone(),
                    sha256: a.sha256.clone(),
                    time: state::now_string(),
                    http_status: answer.status,
                    content_type: answer.content_type,
                    raw,
                    verdict,
                    matched,
                });
                rec.last_error = None;
                rec.recompute(true);
                save(cfg, month, rec)?;
            }
            Err(e) => {
                rec.last_error = Some(e.to_string());
                save(cfg, month, rec)?;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `mss-export submit --month`: deposit the month's archive(s), building
/// them when absent.
pub fn submit(cfg: &Config, month: Month) -> Result<i32, Error> {
    let s = sipil_cfg(cfg)?;
    let client = Client::new(s)?;
    let mut rec = load(cfg, month)?.unwrap_or_else(|| MonthRecord::new(month));
    if rec.state == State::Accepted {
        return Err(Error::Usage(format!(
            "{month} is already accepted by the ANS: an accepted archive is never submitted again (see `mss-export status`)"
        )));
    }
    let mut paths = month_archives(&cfg.export.out_dir, month)?;
    if paths.is_empty() {
        paths = build_into(cfg, month, &cfg.export.out_dir)?;
        for p in &paths {
            eprintln!("built {}", p.display());
        }
    }
    rec.archives = describe(&paths)?;
    rec.recompute(false);
    let problems = check(cfg, &paths)?;
    if !problems.is_empty() {
        save(cfg, month, &rec)?;
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("error: {month}: the archive fails validation, nothing submitted");
        return Ok(exit::INVALID);
    }
    rec.recompute(true);
    save(cfg, month, &rec)?;
    deposit_all(cfg, &client, s, month, &mut rec, &paths)?;
    println!("{month}: {}", rec.state);
    Ok(exit::OK)
}

fn code_of(st: State) -> i32 {
    match st {
        State::Accepted => exit::OK,
        State::Rejected => exit::REJECTED,
        _ => exit::PENDING,
    }
}

/// `mss-export report --month`: read the report of every current deposit.
pub fn report(cfg: &Config, month: Month) -> Result<i32, Error> {
    let s = sipil_cfg(cfg)?;
    let mut rec =
        load(cfg, month)?.filter(|r| r.submissions.iter().any(|x| x.deposit_id.is_some()));
    let Some(rec) = rec.as_mut() else {
        return Err(Error::Usage(format!(
            "nothing deposited for {month}: run `mss-export submit --month {month}` first"
        )));
    };
    let client = Client::new(s)?;
    fetch_reports(cfg, &client, s, month, rec, true)?;
    println!("{month}: {}", rec.state);
    Ok(code_of(rec.state))
}

/// Deadline facts of a target month at `now`.
struct Deadline {
    date: jiff::civil::Date,
    days_left: i64,
}

impl Deadline {
    fn of(s: &Sipil, target: Month, now: Timestamp, tz: &jiff::tz::TimeZone) -> Deadline {
        let due = target.next();
        let date = jiff::civil::Date::new(due.year, due.month, s.deadline_day as i8)
            .unwrap_or_else(|_| due.first_day());
        let today = now.to_zoned(tz.clone()).date();
        let days_left = (date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .unwrap_or(0)
            - today
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp().as_second())
                .unwrap_or(0))
            / 86_400;
        Deadline { date, days_left }
    }

    fn passed(&self) -> bool {
        self.days_left < 0
    }
}

/// `mss-export run`: the timer's entry point (see the module doc for exit codes).
pub fn run(cfg: &Config, month: Option<Month>, now: Option<Timestamp>) -> Result<i32, Error> {
    let s = sipil_cfg(cfg)?;
    let tz = cfg.tz();
    let now = now.unwrap_or_else(Timestamp::now);
    let target = month.unwrap_or_else(|| Month::of(now, &tz).prev());
    let deadline = Deadline::of(s, target, now, &tz);
    let mut rec = load(cfg, target)?;
    // [central]: who has not shipped the whole month yet.
    let lagging = mss_shared::central::nodes::incomplete(cfg, target)?;
    if let Some(r) = rec.as_mut() {
        if !r.incomplete.is_empty() && lagging.is_empty() && !deadline.passed() {
            eprintln!(
                "{target}: submitted without what these nodes held ({}); they have shipped it: rebuilding and submitting again",
                r.incomplete.join("; ")
            );
            let mut again = MonthRecord::new(target);
            again.submissions = std::mem::take(&mut r.submissions);
            again.reports = std::mem::take(&mut r.reports);
            *r = again;
            save(cfg, target, r)?;
        }
    }
    if let Some(r) = &rec {
        if r.state == State::Accepted {
            println!("{target}: accepted, nothing to do");
            mail_reports(cfg, target)?;
            return Ok(exit::OK);
        }
    }
    // [central]: wait for every node to have shipped the month, until the
    // day before the deadline; then submit what is there, saying who lags.
    let mut missing = vec![];
    let not_submitted = rec
        .as_ref()
        .is_none_or(|r| matches!(r.state, State::Built | State::Validated));
    if not_submitted && !lagging.is_empty() {
        let why = lagging.join("; ");
        if deadline.days_left > 1 {
            println!("{target}: waiting for every node to ship the month: {why}");
            return Ok(exit::INCOMPLETE);
        }
        eprintln!(
            "WARNING: the ANS deadline is {}: submitting {target} without what these nodes hold: {why}",
            deadline.date
        );
        missing = lagging;
    }
    let client = Client::new(s)?;
    let mut rec = rec.unwrap_or_else(|| MonthRecord::new(target));
    if !missing.is_empty() {
        rec.incomplete = missing;
    }
    let outcome = drive(cfg, &client, s, target, &mut rec);
    let state = match outcome {
        Ok(st) => st,
        Err(e) if deadline.passed() && matches!(e, Error::Remote(_)) => {
            eprintln!("error: {e}");
            rec.state
        }
        Err(e) => return Err(e),
    };
    if state == State::Accepted {
        println!("{target}: accepted");
        mail_reports(cfg, target)?;
        return Ok(exit::OK);
    }
    if deadline.passed() {
        eprintln!(
            "error: DEADLINE PASSED: the figures of {target} were due at the ANS by {} and are not accepted (state: {state}); deliver them as soon as possible",
            deadline.date
        );
        return Ok(exit::DEADLINE);
    }
    if deadline.days_left <= 2 {
        eprintln!(
            "WARNING: the figures of {target} are not accepted yet (state: {state}) and the ANS deadline is {} ({} day(s) left)",
            deadline.date, deadline.days_left
        );
    }
    println!("{target}: {state}");
    Ok(code_of(state))
}

/// `[report] mail_to_structures`: the structures' reports of an accepted month.
fn mail_reports(cfg: &Config, month: Month) -> Result<(), Error> {
    for l in crate::mail_reports::mail_pending(cfg, month)? {
        println!("{l}");
    }
    Ok(())
}

/// One run of the state machine for `month`; returns the state reached.
fn drive(
    cfg: &Config,
    client: &Client,
    s: &Sipil,
    month: Month,
    rec: &mut MonthRecord,
) -> Result<State, Error> {
    let mut rebuilt = false;
    let mut just_deposited = false;
    loop {
        match rec.state {
            State::Accepted => return Ok(State::Accepted),
            State::Built | State::Validated => {
                let (_dir, staged) = stage(cfg, month)?;
                deliver(cfg, client, s, month, rec, &staged)?;
                just_deposited = true;
            }
            State::Rejected => {
                if rebuilt {
                    return Ok(State::Rejected);
                }
                rebuilt = true;
                let (_dir, staged) = stage(cfg, month)?;
                let new = describe(&staged)?;
                let same = {
                    let mut a: Vec<&str> = new.iter().map(|x| x.sha256.as_str()).collect();
                    let mut b: Vec<&str> = rec.archives.iter().map(|x| x.sha256.as_str()).collect();
                    a.sort_unstable();
                    b.sort_unstable();
                    a == b
                };
                if same {
                    eprintln!(
                        "error: {month}: the deposit report shows blocking errors and a rebuild gives the same archive (sha256 {}): fix the captured data or the mailbox registry (mss-admin), then run again",
                        rec.archives.iter().map(|a| a.sha256.as_str()).collect::<Vec<_>>().join(", ")
                    );
                    return Ok(State::Rejected);
                }
                eprintln!("{month}: data changed since the rejected deposit: resubmitting");
                deliver(cfg, client, s, month, rec, &staged)?;
                just_deposited = true;
            }
            State::Submitted | State::ReportPending => {
                let polls = if just_deposited {
                    s.report_polls
                } else {
                    s.report_polls.max(1)
                };
                for i in 0..polls {
                    if just_deposited || i > 0 {
                        std::thread::sleep(Duration::from_secs(s.report_poll_interval_secs));
                    }
                    fetch_reports(cfg, client, s, month, rec, false)?;
                    if !matches!(rec.state, State::Submitted | State::ReportPending) {
                        break;
                    }
                }
                if matches!(rec.state, State::Submitted | State::ReportPending) {
                    return Ok(rec.state);
                }
                just_deposited = false;
            }
        }
    }
}

/// Install staged archives, validate, record, deposit.
fn deliver(
    cfg: &Config,
    client: &Client,
    s: &Sipil,
    month: Month,
    rec: &mut MonthRecord,
    staged: &[PathBuf],
) -> Result<(), Error> {
    let paths = install(cfg, month, staged)?;
    rec.archives = describe(&paths)?;
    rec.state = State::Built;
    rec.recompute(false);
    save(cfg, month, rec)?;
    let problems = check(cfg, &paths)?;
    if !problems.is_empty() {
        return Err(Error::Other(format!(
            "{month}: the built archive fails validation: {}",
            problems.join("; ")
        )));
    }
    rec.recompute(true);
    save(cfg, month, rec)?;
    deposit_all(cfg, client, s, month, rec, &paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        let m = Month::parse("2026-01").unwrap();
        assert!(is_month_archive("202601_IndicateursMSSante.zip", m));
        assert!(is_month_archive("202601_IndicateursMSSante_1-2.zip", m));
        assert!(!is_month_archive(
            "202601_IndicateursMSSante.zip.invalid",
            m
        ));
        assert!(!is_month_archive("202602_IndicateursMSSante.zip", m));
        assert!(!is_month_archive("202601_IndicateursMSSante_x.zip", m));
    }
}
