//! Unix specifics of native processes: signalling a process group, reading Linux `/proc`, an
//! output pipe in or out of the runtime's epoll set. Every `unsafe` call of the process layer
//! lives here; this file holds no state and makes no decisions beyond refusing to signal a
//! group that cannot be a service's.

use std::io;

/// What devstack reads from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 5: the process group id.
    pub pgrp: u32,
    /// Field 6: the session id.
    pub session: u32,
    /// Field 22: start time in clock ticks after boot. With the pid, it names one process for the
    /// whole uptime of the machine, so a reused pid is told apart from the process we recorded.
    pub start_time: u64,
    /// Fields 14 + 15: CPU time in user and kernel mode, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 24: resident pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// A zombie has exited and holds nothing but its pid (and so its group id): no memory, no
    /// ports. Here the zombies of orphans are never reaped when PID 1 does not reap them, so
    /// they count as gone.
    pub(super) fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// `None` when the process does not exist (or `/proc` cannot be read).
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Field 22 of `/proc/PID/stat`.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).map(|s| s.start_time).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse `/proc/{pid}/stat`"),
        )
    })
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // Field 2 is the command name in parentheses and may itself hold spaces and `)`: the fields
    // that follow start after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3, so field N is fields[N - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        rss_pages: fields.get(21)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// CPU ticks and resident bytes summed per process group, for the groups asked for: one pass
/// over `/proc`. Groups with no process are absent.
pub(crate) fn group_usage(pgids: &[u32]) -> std::collections::HashMap<u32, (u64, u64)> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut out = std::collections::HashMap::new();
    for pid in pids() {
        let Some(stat) = proc_stat(pid) else { continue };
        if !stat.is_running() || !pgids.contains(&stat.pgrp) {
            continue;
        }
        let e = out.entry(stat.pgrp).or_insert((0, 0));
        e.0 += stat.cpu_ticks;
        e.1 += stat.rss_pages * page;
    }
    out
}

/// Clock ticks per second (`/proc` times are in these).
pub(crate) fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// The pgid as a `pid_t` that names exactly one other group: positive (0 means our own group and
/// a negative value is invalid), not 1 (init's), and not devstack's own group.
fn target_group(pgid: u32) -> io::Result<libc::pid_t> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}: {why}"),
        )
    };
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| invalid("not a valid group id"))?;
    if pgid <= 1 {
        return Err(invalid("not a service's group"));
    }
    // SAFETY: getpgrp takes no arguments, has no preconditions and cannot fail.
    if pgid == unsafe { libc::getpgrp() } {
        return Err(invalid("it is devstack's own group"));
    }
    Ok(pgid)
}

/// Sends `signal` to every process of group `pgid`. `ESRCH` (no such group) is returned as an
/// error of kind `NotFound`, which callers stopping a group treat as done.
pub(crate) fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let target = target_group(pgid)?;
    // SAFETY: killpg touches no memory of ours; `target` is > 1 and not our own group, so it
    // names one other process group and cannot signal devstack itself.
    let rc = unsafe { libc::killpg(target, signal) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether group `pgid` still has a process that is not a zombie.
pub(crate) fn group_alive(pgid: u32) -> bool {
    group_alive_by(pgid, running_member)
}

/// [`group_alive`] for a group devstack started itself. While devstack is the subreaper of its
/// descendants every member of such a group is one of them (an orphan comes back to devstack,
/// never to init), so only they are looked at: a handful of `/proc` files, not every process on
/// the machine twice (milliseconds of each restart on a busy laptop).
pub(crate) fn own_group_alive(pgid: u32) -> bool {
    if !is_subreaper() {
        return group_alive(pgid);
    }
    group_alive_by(pgid, |g| {
        running_descendant(g).or_else(|| running_member(g))
    })
}

/// `Some(true)` if a descendant of devstack in group `pgid` is running; `None` when the kernel
/// does not list children.
fn running_descendant(pgid: u32) -> Option<bool> {
    Some(
        descendants()?
            .into_iter()
            .filter_map(proc_stat)
            .any(|stat| stat.pgrp == pgid && stat.is_running()),
    )
}

fn group_alive_by(pgid: u32, running: impl Fn(u32) -> Option<bool>) -> bool {
    let Ok(target) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if target <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; killpg only checks that the group exists and that we may
    // signal it. `target` is positive, so it names one group.
    let rc = unsafe { libc::killpg(target, 0) };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // The group exists, but zombies keep it existing: look for a member that still runs. A
    // member can fork just before it dies while the scan is past the child's slot (pids wrap),
    // so "gone" is only believed when a second scan agrees.
    match running(pgid) {
        Some(found) => found || running(pgid).unwrap_or(true),
        None => true,
    }
}

/// `Some(true)` if a process of group `pgid` is running; `None` when `/proc` cannot be listed.
fn running_member(pgid: u32) -> Option<bool> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(dir.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
            .and_then(proc_stat)
            .is_some_and(|stat| stat.pgrp == pgid && stat.is_running())
    }))
}

/// Every pid in `/proc`.
pub(crate) fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .collect()
}

/// The regular files devstack's own standard output and error go to (`devstack up > up.log`),
/// as the kernel names them.
pub(crate) fn own_output_files() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: `stat` is plain data; fstat fills it for a descriptor that may or may not be
        // open (then it fails and the value is not read).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        if let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// devstack's own children, from each of its threads' `children` list (a handful of small
/// files instead of every process on the machine); `None` where the kernel does not offer them.
fn own_children() -> Option<Vec<u32>> {
    // Without CONFIG_PROC_CHILDREN no thread has the file: that is "cannot tell", not "none".
    let main = format!("/proc/self/task/{}/children", std::process::id());
    if !std::path::Path::new(&main).exists() {
        return None;
    }
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let text = match std::fs::read_to_string(task.path().join("children")) {
            Ok(t) => t,
            // A thread that has just ended.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Some(out)
}

/// Every descendant of devstack, walked down from its own children through each process's
/// `children` lists; `None` where the kernel does not offer them.
pub(crate) fn descendants() -> Option<Vec<u32>> {
    let mut out = Vec::new();
    let mut todo = own_children()?;
    // A tree has no cycle; the bound only guards against pids reused while walking.
    while let Some(pid) = todo.pop().filter(|_| out.len() < 100_000) {
        out.push(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue; // ended meanwhile
        };
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                todo.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    Some(out)
}

/// Whether devstack is the subreaper of its descendants (their orphans come back to it).
pub(crate) fn is_subreaper() -> bool {
    let mut flag: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the address it is given, which is ours
    // and lives through the call.
    let rc = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut flag as *mut libc::c_int as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    rc == 0 && flag != 0
}

/// The value of `var` in a process's environment (as it was at exec), if readable and set.
fn environ_value(pid: u32, var: &str) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    bytes
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Running processes (not zombies) whose environment has `var` set to a value that `matches`.
pub(crate) fn marked(var: &str, matches: &dyn Fn(&str) -> bool) -> Vec<(u32, String)> {
    marked_among(pids(), var, matches)
}

/// [`marked`] among `candidates` only.
pub(crate) fn marked_among(
    candidates: Vec<u32>,
    var: &str,
    matches: &dyn Fn(&str) -> bool,
) -> Vec<(u32, String)> {
    let me = std::process::id();
    candidates
        .into_iter()
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let value = environ_value(pid, var)?;
            let running = proc_stat(pid).is_some_and(|s| s.is_running());
            (running && matches(&value)).then_some((pid, value))
        })
        .collect()
}

/// Sends `signal` to one process. `ESRCH` (gone) is fine.
pub(crate) fn signal_pid(pid: u32, signal: i32) {
    let Ok(target) = libc::pid_t::try_from(pid) else {
        return;
    };
    if target <= 1 || pid == std::process::id() {
        return;
    }
    // SAFETY: kill touches no memory of ours; `target` is > 1 and not devstack itself.
    unsafe { libc::kill(target, signal) };
}

/// Whether this process ignores a signal its children would inherit ignored: an ignored signal
/// stays ignored across exec, and a shell cannot even trap it. Under `nohup` (SIGHUP ignored)
/// or as a background job of a script (SIGINT and SIGQUIT ignored), devstack would hand that
/// on to every service, which then never sees a `stop_signal` it relies on and is killed after
/// its grace. SIGPIPE is left out: the standard library resets it in every child itself.
pub(crate) fn ignores_signals() -> bool {
    (1..32)
        .filter(|&s| !matches!(s, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE))
        .any(|signal| {
            // SAFETY: sigaction with a null new action only reads the current one into `old`.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
            }
        })
}

/// Has every signal at its default disposition in the child `cmd` spawns (see
/// [`ignores_signals`]). Handlers are reset by exec anyway; only ignored signals need this. A
/// step after the fork, so the spawn cannot take the faster `posix_spawn` path: only used when
/// devstack ignores a signal.
pub(crate) fn default_signals_in_child(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec. It only calls `signal`, which
    // is async-signal-safe, allocates nothing and takes no lock. SIGKILL and SIGSTOP cannot be
    // changed (EINVAL), which is fine: they cannot be ignored either.
    unsafe {
        cmd.pre_exec(|| {
            for signal in 1..32 {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}

/// A service's output pipe, read non-blocking: in the runtime's epoll set while its reader
/// waits for bytes, or out of it while a flooding writer keeps it full (the reader,
/// `unit/output.rs`, decides which).
pub(crate) enum Pipe {
    Plain(std::fs::File),
    Watched(tokio::io::unix::AsyncFd<std::fs::File>),
}

impl Pipe {
    /// The pipe of `fd`, out of the epoll set, in non-blocking mode: a read with nothing to
    /// take returns `WouldBlock` instead of waiting.
    pub(crate) fn new(fd: std::os::fd::OwnedFd) -> io::Result<Pipe> {
        set_nonblocking(std::os::fd::AsFd::as_fd(&fd))?;
        Ok(Pipe::Plain(std::fs::File::from(fd)))
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        match self {
            Pipe::Plain(f) => f,
            Pipe::Watched(w) => w.get_ref(),
        }
    }

    /// Out of the epoll set.
    pub(crate) fn plain(self) -> Pipe {
        match self {
            Pipe::Watched(w) => Pipe::Plain(w.into_inner()),
            p => p,
        }
    }

    /// In the epoll set; the file and the error if it cannot be added.
    pub(crate) fn watched(
        self,
    ) -> Result<tokio::io::unix::AsyncFd<std::fs::File>, (std::fs::File, io::Error)> {
        let f = match self {
            Pipe::Watched(w) => return Ok(w),
            Pipe::Plain(f) => f,
        };
        // SAFETY: a `File` owns its descriptor and always returns that one; it is open, and
        // stays so while the `AsyncFd` owns the `File`.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(f, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts())
    }
}

/// Puts the open file of `fd` in non-blocking mode: a read with nothing to take returns
/// `WouldBlock` instead of waiting.
fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a descriptor the caller keeps open read and set its status
    // flags, and touch no memory of ours.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes devstack the reaper of its orphaned descendants (a service's double-forked daemon
/// becomes devstack's child, not init's), so that nothing of a service escapes it.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reaps the zombies of orphans that became devstack's children (as their subreaper). A child
/// devstack spawned itself is never taken: services are group leaders in devstack's session, and
/// probes and suites are in devstack's own group; tokio waits for those.
pub(crate) fn reap_orphans() -> usize {
    let me = std::process::id();
    let Some(own) = proc_stat(me) else {
        return 0;
    };
    let mut reaped = 0;
    for pid in own_children().unwrap_or_else(pids) {
        let Some(st) = proc_stat(pid) else { continue };
        if st.ppid != me || st.is_running() {
            continue;
        }
        let spawned_service = st.pgrp == pid && st.session == own.session;
        if spawned_service || st.pgrp == own.pgrp {
            continue;
        }
        let Ok(target) = libc::pid_t::try_from(pid) else {
            continue;
        };
        let mut status = 0;
        // SAFETY: waitpid on one specific zombie child of ours; `status` is a valid out pointer.
        if unsafe { libc::waitpid(target, &mut status, libc::WNOHANG) } == target {
            reaped += 1;
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_fields_after_the_command_name() {
        let cases = [
            (
                "1234 (sleep) S 1 1234 1234 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100",
                Some(('S', 1234, 987654)),
            ),
            (
                "77 (a) (b c) Z 1 70 70 0 -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 42 0 0",
                Some(('Z', 70, 42)),
            ),
            ("77 (truncated", None),
            ("77 (short) S 1 2", None),
        ];
        for (text, want) in cases {
            let got = parse_stat(text).map(|s| (s.state, s.pgrp, s.start_time));
            assert_eq!(got, want, "{text}");
        }
        // utime 7 + stime 3 ticks; 100 resident pages.
        let s = parse_stat(
            "1234 (sleep) S 1 1234 1234 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 987654 1000 100",
        )
        .expect("parses");
        assert_eq!((s.cpu_ticks, s.rss_pages), (10, 100));
    }

    #[test]
    fn sums_own_group_usage() {
        // SAFETY: getpgrp has no preconditions.
        let own = u32::try_from(unsafe { libc::getpgrp() }).expect("pgid is positive");
        let usage = group_usage(&[own]);
        assert!(usage[&own].1 > 0, "the test process itself is resident");
        assert!(group_usage(&[u32::MAX]).is_empty());
    }

    #[test]
    fn refuses_to_signal_init_its_own_or_an_invalid_group() {
        // SAFETY: getpgrp has no preconditions.
        let own = u32::try_from(unsafe { libc::getpgrp() }).expect("pgid is positive");
        for pgid in [0, 1, own, u32::MAX] {
            let err = signal_group(pgid, 0).expect_err("must refuse");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{pgid}");
        }
    }

    #[test]
    fn reads_own_start_time() {
        let me = std::process::id();
        let stat = proc_stat(me).expect("own /proc entry");
        assert!(stat.is_running());
        assert_eq!(start_time(me).expect("own start time"), stat.start_time);
    }
}
