use base64::Engine;

use super::*;

/// Feed the whole client script in pieces of `split`, replying from a
/// scripted upstream as each command reaches it; return client items.
fn run(client: &[u8], upstream_replies: &[&str], split: usize) -> (Vec<ClientItem>, Vec<u8>) {
    let mut o = Observer::new(Limits::default(), false);
    let mut items = vec![];
    let mut upstream_seen = Vec::new();
    o.upstream_input(upstream_replies[0].as_bytes()).unwrap();
    let mut replies = upstream_replies[1..].iter();
    for chunk in client.chunks(split.max(1)) {
        o.client_input(chunk);
        upstream_seen.extend(o.take_upstream());
        // Answer every command now in flight (scripted upstream).
        while o.in_flight() > 0 {
            let Some(r) = replies.next() else { break };
            o.upstream_input(r.as_bytes()).unwrap();
            upstream_seen.extend(o.take_upstream());
        }
        items.extend(o.take_client());
    }
    items.extend(o.take_client());
    (items, upstream_seen)
}

fn commits(items: &[ClientItem]) -> Vec<Accepted> {
    items
        .iter()
        .filter_map(|i| match i {
            ClientItem::Commit(a, _) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

const SESSION: &[u8] = b"EHLO c\r\nMAIL FROM:<A@ch.fr> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@x.fr>\r\nRCPT TO:<bad@x.fr>\r\nRCPT TO:<c@x.fr>\r\nDATA\r\nMessage-ID: <m1@ch.fr>\r\nSubject: t\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";

fn session_replies() -> Vec<&'static str> {
    vec![
        "220 up ESMTP\r\n",
        "250-up\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
        "250 2.1.0 Ok\r\n",
        "250 2.1.5 Ok\r\n",
        "550 5.1.1 <bad@x.fr>: unknown\r\n",
        "250 2.1.5 Ok\r\n",
        "354 End data with <CR><LF>.<CR><LF>\r\n",
        "250 2.0.0 Ok: queued as 4AbC12\r\n",
        "221 2.0.0 Bye\r\n",
    ]
}

#[test]
fn accepted_recipients_only_at_every_split() {
    let want = Accepted {
        sender: "a@ch.fr".into(),
        recipients: vec!["b@x.fr".into(), "c@x.fr".into()],
        size: "Message-ID: <m1@ch.fr>\r\nSubject: t\r\n\r\n.dot\r\nbody\r\n".len() as u64,
        message_id: Some("m1@ch.fr".into()),
        queue_id: Some("4AbC12".into()),
    };
    for split in 1..=SESSION.len() {
        let (items, up) = run(SESSION, &session_replies(), split);
        assert_eq!(commits(&items), vec![want.clone()], "split {split}");
        assert_eq!(up, SESSION, "forwarded unchanged, split {split}");
        assert_eq!(items.len(), 9, "one item per reply, split {split}");
    }
}

#[test]
fn rejected_final_reply_records_nothing() {
    let mut r = session_replies();
    r[7] = "554 5.7.1 header_checks: no\r\n";
    let (items, _) = run(SESSION, &r, 7);
    assert!(commits(&items).is_empty());
}

#[test]
fn rset_aborts_and_pipelined_transactions_are_separate() {
    let c = b"EHLO c\r\nMAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nRSET\r\nMAIL FROM:<a@ch.fr>\r\nRCPT TO:<c@x.fr>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<d@ch.fr>\r\nRCPT TO:<e@x.fr>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n";
    let r = [
        "220 x\r\n",
        "250 x\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "250 reset\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 queued as A1\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250 queued as B2\r\n",
        "221 bye\r\n",
    ];
    for split in [1, 3, 17, c.len()] {
        let (items, up) = run(c, &r, split);
        let got: Vec<(String, Vec<String>, u64)> = commits(&items)
            .into_iter()
            .map(|a| (a.sender, a.recipients, a.size))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a@ch.fr".into(), vec!["c@x.fr".into()], 3),
                ("d@ch.fr".into(), vec!["e@x.fr".into()], 3)
            ],
            "split {split}"
        );
        assert_eq!(up, c);
    }
}

#[test]
fn data_refused_means_following_bytes_are_commands() {
    let c = b"EHLO c\r\nMAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\nRSET\r\nQUIT\r\n";
    let r = [
        "220 x\r\n",
        "250 x\r\n",
        "250 ok\r\n",
        "554 no\r\n",
        "554 5.5.1 no valid recipients\r\n",
        "250 ok\r\n",
        "221 bye\r\n",
    ];
    let (items, up) = run(c, &r, c.len());
    assert!(commits(&items).is_empty());
    assert_eq!(up, c);
    assert_eq!(items.len(), 7);
}

#[test]
fn bdat_chunks_are_counted() {
    let c = b"EHLO c\r\nMAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nBDAT 5\r\nab\r\n.BDAT 3 LAST\r\nxyzQUIT\r\n";
    let r = [
        "220 x\r\n",
        "250 x\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "250 5 octets\r\n",
        "250 queued as Q9\r\n",
        "221 bye\r\n",
    ];
    for split in 1..=c.len() {
        let (items, up) = run(c, &r, split);
        let got = commits(&items);
        assert_eq!(got.len(), 1, "split {split}");
        assert_eq!(got[0].size, 8);
        assert_eq!(got[0].queue_id.as_deref(), Some("Q9"));
        assert_eq!(up, c);
    }
}

#[test]
fn smuggled_dot_is_refused_and_never_forwarded() {
    for body in [
        &b"x\n.\r\nMAIL FROM:<evil@ch.fr>\r\n"[..],
        b"x\r\n.\nMAIL",
        b"x\n.\nMAIL",
    ] {
        let mut c = b"EHLO c\r\nMAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\n".to_vec();
        c.extend_from_slice(body);
        for split in 1..=c.len() {
            let r = [
                "220 x\r\n",
                "250 x\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
            ];
            let (items, up) = run(&c, &r, split);
            assert!(
                matches!(items.last(), Some(ClientItem::Close(r)) if r.starts_with(b"554 5.5.2")),
                "split {split}"
            );
            // The dot line's terminator never reaches the upstream.
            let ends =
                up.windows(3).any(|w| w == b"\n.\n") || up.windows(4).any(|w| w == b"\n.\r\n");
            assert!(!ends, "split {split}: {:?}", String::from_utf8_lossy(&up));
            assert!(!String::from_utf8_lossy(&up).contains("MAIL FROM:<evil"));
            assert!(commits(&items).is_empty());
        }
    }
}

#[test]
fn auth_plain_and_login_yield_the_authenticated_user() {
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alice@ch.fr\0secret");
    let c = format!("EHLO c\r\nAUTH PLAIN {plain}\r\nQUIT\r\n");
    let r = ["220 x\r\n", "250 x\r\n", "235 2.7.0 ok\r\n", "221 bye\r\n"];
    let (items, _) = run(c.as_bytes(), &r, 5);
    assert!(items.contains(&ClientItem::Login {
        user: "alice@ch.fr".into(),
        mechanism: "PLAIN"
    }));

    let u = base64::engine::general_purpose::STANDARD.encode(b"Bob@ch.fr");
    let c = format!("EHLO c\r\nAUTH LOGIN\r\n{u}\r\ncGFzcw==\r\nQUIT\r\n");
    let r = [
        "220 x\r\n",
        "250 x\r\n",
        "334 VXNlcm5hbWU6\r\n",
        "334 UGFzc3dvcmQ6\r\n",
        "235 ok\r\n",
        "221 bye\r\n",
    ];
    let (items, up) = run(c.as_bytes(), &r, 4);
    assert!(items.contains(&ClientItem::Login {
        user: "bob@ch.fr".into(),
        mechanism: "LOGIN"
    }));
    assert_eq!(up, c.as_bytes());

    // Failed authentication and a forged MAIL AUTH= parameter: no login.
    let c = format!(
        "EHLO c\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<a@ch.fr> AUTH=<alice@ch.fr>\r\nQUIT\r\n"
    );
    let r = [
        "220 x\r\n",
        "250 x\r\n",
        "535 5.7.8 bad\r\n",
        "250 ok\r\n",
        "221 bye\r\n",
    ];
    let (items, _) = run(c.as_bytes(), &r, 3);
    assert!(!items.iter().any(|i| matches!(i, ClientItem::Login { .. })));
}

#[test]
fn too_many_recipients_are_answered_locally_in_order() {
    let mut o = Observer::new(
        Limits {
            max_recipients: 1,
            ..Limits::default()
        },
        false,
    );
    o.upstream_input(b"220 x\r\n").unwrap();
    o.client_input(b"MAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nRCPT TO:<c@x.fr>\r\n");
    assert_eq!(
        o.take_upstream(),
        b"MAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\n"
    );
    o.upstream_input(b"250 ok\r\n250 ok\r\n").unwrap();
    let items = o.take_client();
    assert_eq!(
        items.last(),
        Some(&ClientItem::Reply(
            b"452 4.5.3 Too many recipients\r\n".to_vec()
        ))
    );
    assert_eq!(items.len(), 4);
}

#[test]
fn ehlo_rewrite_hides_upstream_starttls_and_offers_ours() {
    let mut o = Observer::new(Limits::default(), true);
    o.upstream_input(b"220 x\r\n").unwrap();
    o.client_input(b"EHLO c\r\n");
    assert_eq!(o.take_upstream(), b"EHLO c\r\n");
    o.upstream_input(b"250-up\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
        .unwrap();
    let items = o.take_client();
    assert_eq!(
        items[1],
        ClientItem::Reply(b"250-up\r\n250-8BITMIME\r\n250 STARTTLS\r\n".to_vec())
    );
    o.client_input(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n");
    assert!(
        o.take_upstream().is_empty(),
        "STARTTLS and what follows never reach the upstream"
    );
    assert!(matches!(&o.take_client()[..], [ClientItem::StartTls(_)]));
}

#[test]
fn long_line_and_garbage_upstream() {
    let mut o = Observer::new(Limits::default(), false);
    o.upstream_input(b"220 x\r\n").unwrap();
    o.client_input(&vec![b'A'; 5000]);
    assert!(
        matches!(&o.take_client()[..], [ClientItem::Reply(_), ClientItem::Close(r)] if r.starts_with(b"500"))
    );
    assert!(o.take_upstream().is_empty());

    let mut o = Observer::new(Limits::default(), false);
    assert!(o.upstream_input(b"HTTP/1.1 400 Bad\r\n").is_err());
}

#[test]
fn message_over_max_message_bytes_is_refused_and_never_completed() {
    let limits = Limits {
        max_message_bytes: 10,
        ..Limits::default()
    };
    let mut o = Observer::new(limits, false);
    o.upstream_input(b"220 x\r\n").unwrap();
    o.client_input(b"MAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\n");
    o.upstream_input(b"250 ok\r\n250 ok\r\n354 go\r\n").unwrap();
    o.take_client();
    o.take_upstream();
    o.client_input(b"0123456789");
    assert!(o.take_client().is_empty(), "10 bytes is within the limit");
    o.client_input(b"abc\r\n.\r\n");
    assert_eq!(
        o.take_client(),
        vec![ClientItem::Close(
            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n".to_vec()
        )]
    );
    let up = o.take_upstream();
    assert!(
        !up.ends_with(b"\r\n.\r\n"),
        "the end of data never reaches the upstream"
    );
    o.client_input(b"QUIT\r\n");
    assert!(o.take_upstream().is_empty() && o.take_client().is_empty());
}

#[test]
fn partial_command_is_reported_until_its_line_ends() {
    let mut o = Observer::new(Limits::default(), false);
    o.upstream_input(b"220 x\r\n").unwrap();
    assert!(!o.partial_command());
    o.client_input(b"EH");
    assert!(o.partial_command());
    o.client_input(b"LO x\r\n");
    assert!(!o.partial_command());
}

/// Drive one DATA body (after `354`) and return the client items and
/// what reached the upstream.
fn data_session(body: &[u8]) -> (Vec<ClientItem>, Vec<u8>) {
    let mut o = Observer::new(Limits::default(), false);
    o.upstream_input(b"220 x\r\n").unwrap();
    o.client_input(b"MAIL FROM:<a@ch.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\n");
    o.upstream_input(b"250 ok\r\n250 ok\r\n354 go\r\n").unwrap();
    o.take_client();
    o.take_upstream();
    o.client_input(body);
    let up = o.take_upstream();
    if o.in_flight() > 0 {
        let _ = o.upstream_input(b"250 2.0.0 Ok: queued as Q1\r\n");
    }
    (o.take_client(), up)
}

#[test]
fn empty_message_ends_at_the_first_dot_line() {
    // Found by fuzz_smoke: smtp-proto's DataReceiver starts without a
    // preceding CRLF and did not see this end (debug_assert fired).
    let (items, up) = data_session(b".\r\n");
    assert_eq!(up, b".\r\n");
    match &items[..] {
        [ClientItem::Commit(a, _)] => assert_eq!(a.size, 0),
        other => panic!("{other:?}"),
    }
    // And a first line starting with a dot is unstuffed like the others.
    let (items, _) = data_session(b"..x\r\n.\r\n");
    match &items[..] {
        [ClientItem::Commit(a, _)] => assert_eq!(a.size, 4, ".x CRLF"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dot_cr_cr_lf_is_refused_like_smuggling() {
    // Found by fuzz_smoke: smtp-proto ends the data at `\r\n.\r\r\n`,
    // Postfix does not: two servers would disagree on where the message ends.
    let (items, up) = data_session(b"hello\r\n.\r\r\nMAIL FROM:<x@y>\r\n.\r\n");
    assert_eq!(
        up, b"",
        "nothing from the ambiguous line on reaches the upstream"
    );
    assert!(
        matches!(&items[..], [ClientItem::Close(r)] if r.starts_with(b"554 5.5.2")),
        "{items:?}"
    );
}
