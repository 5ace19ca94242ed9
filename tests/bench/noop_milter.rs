//! Reference for benchmark 2 (issue 22, part B): a no-op milter.
//!
//! indymilter, the same listener as the sidecar (`NoDelayTcp`: Nagle off,
//! quick ACKs), the same callbacks registered (connect, mail, rcpt, header,
//! eoh, body, eom, abort), the same requested macros and the same no-reply
//! options; it answers "continue" (or no reply where negotiated) and records
//! nothing.
//!
//! Usage: mss-ref-noop-milter HOST:PORT
use std::collections::HashMap;
use std::ffi::CString;

use indymilter::{Callbacks, MacroStage, ProtoOpts, Status};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let Some(addr) = a.first() else {
        eprintln!("usage: mss-ref-noop-milter HOST:PORT | unix:/PATH");
        std::process::exit(2)
    };
    let ask = |s: &str| CString::new(s).expect("no NUL");
    let cbs: Callbacks<()> = Callbacks::new()
        .on_negotiate(move |cx, _, _| {
            let m: HashMap<MacroStage, CString> = [
                (
                    MacroStage::Mail,
                    ask("{auth_authen} {auth_type} {mail_addr} i"),
                ),
                (MacroStage::Rcpt, ask("{rcpt_addr} i")),
                (MacroStage::Data, ask("i")),
                (MacroStage::Eoh, ask("i")),
                (MacroStage::Eom, ask("i")),
            ]
            .into_iter()
            .collect();
            cx.requested_macros = m;
            cx.requested_opts |= ProtoOpts::NOREPLY_CONNECT
                | ProtoOpts::NOREPLY_MAIL
                | ProtoOpts::NOREPLY_DATA
                | ProtoOpts::NOREPLY_HEADER
                | ProtoOpts::NOREPLY_EOH
                | ProtoOpts::NOREPLY_BODY;
            Box::pin(async { Status::Continue })
        })
        .on_connect(|_, _, _| Box::pin(async { Status::Noreply }))
        .on_mail(|_, _| Box::pin(async { Status::Noreply }))
        .on_rcpt(|_, _| Box::pin(async { Status::Continue }))
        .on_header(|_, _, _| Box::pin(async { Status::Noreply }))
        .on_eoh(|_| Box::pin(async { Status::Noreply }))
        .on_body(|_, _| Box::pin(async { Status::Noreply }))
        .on_eom(|_| Box::pin(async { Status::Continue }))
        .on_abort(|_| Box::pin(async { Status::Continue }));
    let config = indymilter::Config {
        max_connections: 1000,
        connection_timeout: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    // The same listeners as the sidecar: TCP with Nagle off, or a Unix
    // socket any local user may connect to (Postfix's smtpd is `postfix`).
    if let Some(path) = addr.strip_prefix("unix:") {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        let l = tokio::net::UnixListener::bind(path).expect("bind");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        indymilter::run(l, cbs, config, std::future::pending::<()>())
            .await
            .expect("milter");
    } else {
        let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let l = mss_sidecar::milter::NoDelayTcp(l);
        indymilter::run(l, cbs, config, std::future::pending::<()>())
            .await
            .expect("milter");
    }
}
