//! Dropping root: `mss-sidecar` started as root binds its listeners, then
//! becomes `[service] user` before it opens any store or reads any mail.
//!
//! Order (each step checked): resolve the user, chown the Unix sockets we
//! created (so the user can remove them at stop), `setgroups([gid])` (drop
//! root's supplementary groups), `setgid`, `setuid`; then verify that real
//! and effective ids changed, that no supplementary group but the user's is
//! left and that `setuid(0)` now fails. glibc applies the id changes to every
//! thread of the process (tokio's workers included).

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use mss_shared::Error;

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Become `user` if running as root; do nothing otherwise. `sockets` are Unix
/// socket files this process created as root (chowned to the user).
///
/// `user = "root"` is the explicit opt-out: stay root (tests, containers).
///
/// # Errors
/// [`Error::Config`] naming `service.user` when the user does not exist or
/// has uid 0 under another name; [`Error::Other`] when a system call fails or the check after
/// the drop does not hold.
pub fn drop_to(user: &str, sockets: &[&Path]) -> Result<Option<(u32, u32)>, Error> {
    if !is_root() {
        return Ok(None);
    }
    if user == "root" {
        tracing::warn!("running as root: `service.user` = \"root\" (not recommended outside tests and containers)");
        return Ok(None);
    }
    let pw = User::from_name(user)
        .map_err(|e| Error::Config(format!("key `service.user`: cannot look up {user:?}: {e}")))?
        .ok_or_else(|| {
            Error::Config(format!(
                "key `service.user`: no user {user:?} on this system (mss-sidecar started as root drops to it; create it, e.g. `adduser --system --group {user}`)"
            ))
        })?;
    if pw.uid.is_root() {
        return Err(Error::Config(format!(
            "key `service.user`: {user:?} has uid 0: pick an unprivileged user"
        )));
    }
    for s in sockets {
        std::os::unix::fs::chown(s, Some(pw.uid.as_raw()), Some(pw.gid.as_raw()))
            .map_err(|e| Error::Other(format!("chown {} to {user}: {e}", s.display())))?;
    }
    let fail = |what: &str, e: nix::Error| Error::Other(format!("dropping root: {what}: {e}"));
    nix::unistd::setgroups(&[pw.gid]).map_err(|e| fail("setgroups", e))?;
    nix::unistd::setgid(pw.gid).map_err(|e| fail("setgid", e))?;
    nix::unistd::setuid(pw.uid).map_err(|e| fail("setuid", e))?;
    verify(pw.uid, pw.gid)?;
    tracing::info!(
        user,
        uid = pw.uid.as_raw(),
        gid = pw.gid.as_raw(),
        "dropped root privileges"
    );
    Ok(Some((pw.uid.as_raw(), pw.gid.as_raw())))
}

fn verify(uid: Uid, gid: Gid) -> Result<(), Error> {
    let bad = |why: String| Err(Error::Other(format!("dropping root: {why}")));
    if Uid::current() != uid || Uid::effective() != uid {
        return bad(format!(
            "uid is {}/{} instead of {uid}",
            Uid::current(),
            Uid::effective()
        ));
    }
    if Gid::current() != gid || Gid::effective() != gid {
        return bad(format!(
            "gid is {}/{} instead of {gid}",
            Gid::current(),
            Gid::effective()
        ));
    }
    let groups = nix::unistd::getgroups().map_err(|e| Error::Other(format!("getgroups: {e}")))?;
    if groups.iter().any(|g| *g != gid) {
        return bad(format!("supplementary groups left: {groups:?}"));
    }
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return bad("setuid(0) still succeeds".into());
    }
    Ok(())
}
