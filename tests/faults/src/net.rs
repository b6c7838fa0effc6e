//! Real network partitions between node processes: one Linux network namespace per node, joined
//! by a bridge, with faults injected as `iptables` rules inside the node namespaces (the kernel
//! drops the packets; the nodes are not told).
//!
//! ```text
//!  root namespace (workload)          skf-{tag}-br                     skf-{tag}-{i}
//!  skf-x{X} 10.231.X.254/24 <-veth-> uplink ─┐
//!                                            br0 ─ n{i} <-veth-> eth0 10.231.X.{i}/24, lo
//! ```
//!
//! The bridge lives in a namespace of its own, not in the root namespace: with `br_netfilter`
//! loaded and `net.bridge.bridge-nf-call-iptables = 1` (the usual state on a host running
//! Docker), frames bridged between two ports of a root-namespace bridge go through the root
//! namespace's `FORWARD` chain, whose policy Docker sets to `DROP`, so node-to-node traffic
//! would silently vanish. In a namespace of its own the bridge sees an empty, accepting
//! `FORWARD` chain, and the root namespace's firewall is never touched. Traffic between the
//! workload and a node is local to the root namespace (`OUTPUT`/`INPUT`), which accept.
//!
//! Every run writes an owner file (`/run/skein-faults/skf-{tag}.owner`: pid, process start time,
//! subnet) so that [`Net::cleanup_stale`] removes only what dead runs left behind.
//!
//! Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), `ip` (iproute2) and `iptables`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every namespace, link and owner file this module creates starts with this.
const PREFIX: &str = "skf";
/// The first two octets of every node subnet: `10.231.X.0/24`.
const NET_A: u8 = 10;
const NET_B: u8 = 231;
/// The host (root namespace) address on every subnet.
const HOST_OCTET: u8 = 254;
/// Where owner files live (tmpfs: a reboot, which removes every namespace, removes them too).
const OWNER_DIR: &str = "/run/skein-faults";
/// Longest tag: namespace names stay short and readable.
const TAG_LEN_MAX: usize = 32;
/// Most nodes in one `Net` (addresses `.1` to `.253`).
const NODES_MAX: usize = HOST_OCTET as usize - 1;

/// Runs `cmd`; on failure the error names the command and quotes its stderr.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let line = command_line(cmd);
    let out: Output = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("run `{line}`: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS..`.
fn ip<I, S>(args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").args(args))
}

/// The command as a shell-like line, for error messages.
pub(crate) fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The start time of process `pid` (clock ticks since boot, field 22 of `/proc/PID/stat`), or
/// `None` when there is no such process. Pid and start time together name one process even
/// when pids are reused.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field 22 is the 20th from there.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A node subnet's owner, as written in its owner file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start_time: u64,
    subnet: u8,
}

impl Owner {
    fn me(subnet: u8) -> anyhow::Result<Owner> {
        let pid = std::process::id();
        let start_time = proc_start_time(pid)
            .ok_or_else(|| anyhow::anyhow!("read /proc/{pid}/stat of this process"))?;
        Ok(Owner {
            pid,
            start_time,
            subnet,
        })
    }

    fn encode(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.subnet)
    }

    fn decode(text: &str) -> Option<Owner> {
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        let start_time = it.next()?.parse().ok()?;
        let subnet = it.next()?.parse().ok()?;
        Some(Owner {
            pid,
            start_time,
            subnet,
        })
    }

    fn is_alive(&self) -> bool {
        proc_start_time(self.pid) == Some(self.start_time)
    }
}

fn owner_path(prefix: &str) -> PathBuf {
    Path::new(OWNER_DIR).join(format!("{prefix}.owner"))
}

fn read_owner(prefix: &str) -> Option<Owner> {
    std::fs::read_to_string(owner_path(prefix))
        .ok()
        .as_deref()
        .and_then(Owner::decode)
}

/// Names of the network namespaces (`ip netns list` prints `NAME (id: N)` or `NAME`).
fn list_namespaces() -> anyhow::Result<Vec<String>> {
    Ok(ip(["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Names of the root namespace's links (`ip -o link show` prints `N: NAME@PEER: <..> ..`).
fn list_root_links() -> anyhow::Result<Vec<String>> {
    Ok(ip(["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect())
}

/// Third octets of the `10.231.X.0/24` subnets any root-namespace address is in.
fn subnets_in_use() -> anyhow::Result<BTreeSet<u8>> {
    let mut used = BTreeSet::new();
    for line in ip(["-o", "-4", "addr", "show"])?.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w != "inet" {
                continue;
            }
            let Some(addr) = words.next() else { break };
            let ip = addr.split('/').next().unwrap_or(addr);
            if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                let [a, b, c, _] = ip.octets();
                if a == NET_A && b == NET_B {
                    used.insert(c);
                }
            }
        }
    }
    Ok(used)
}

/// Kills (SIGKILL) every process inside namespace `ns`; returns how many.
fn kill_namespace_processes(ns: &str) -> usize {
    let Ok(pids) = ip(["netns", "pids", ns]) else {
        return 0;
    };
    let mut n = 0;
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // Resume first: a stopped process dies on SIGKILL too, but be explicit.
        let _ = crate::nodes::signal(pid, libc::SIGCONT);
        if crate::nodes::signal(pid, libc::SIGKILL).is_ok() {
            n += 1;
        }
    }
    n
}

/// Where the 64-bit FNV-1a hash of `tag` lands among the subnets: the first one tried.
fn preferred_subnet(tag: &str) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // 1..=250: leaves .0 and the top few alone.
    (h % 250) as u8 + 1
}

fn check_tag(tag: &str) -> anyhow::Result<()> {
    if tag.is_empty()
        || tag.len() > TAG_LEN_MAX
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        anyhow::bail!(
            "network tag `{tag}`: use 1 to {TAG_LEN_MAX} characters of letters, digits, `_` and `-`"
        );
    }
    Ok(())
}

/// A set of node namespaces on one bridge. Dropping it tears everything down (best effort).
#[derive(Debug)]
pub struct Net {
    tag: String,
    subnet: u8,
    /// Node namespaces, node `i` at index `i - 1`.
    namespaces: Vec<String>,
    /// The namespace holding the bridge.
    bridge_ns: String,
    /// The root-namespace end of the uplink veth (holds the host address).
    host_link: String,
    /// Whether this `Net` wrote its owner file (and so may remove it).
    owns_file: bool,
}

impl Net {
    /// Creates the bridge namespace, `n` node namespaces `skf-{tag}-1..=n` with addresses
    /// `10.231.X.i/24`, and the root-namespace link `10.231.X.254/24`. X is derived from `tag`
    /// (the next free subnet if that one is taken). Fails if namespaces with this tag exist.
    pub fn create(tag: &str, n: usize) -> anyhow::Result<Net> {
        check_tag(tag)?;
        if n == 0 || n > NODES_MAX {
            anyhow::bail!("a network holds 1 to {NODES_MAX} nodes, not {n}");
        }
        let prefix = format!("{PREFIX}-{tag}");
        let namespaces = list_namespaces()?;
        if let Some(ns) = namespaces
            .iter()
            .find(|ns| ns.rsplit_once('-').is_some_and(|(p, _)| p == prefix))
        {
            anyhow::bail!(
                "network namespace {ns} exists: another run with tag `{tag}` is live, or a \
                 crashed one left it (Net::cleanup_stale removes what dead runs left)"
            );
        }
        let used = subnets_in_use()?;
        let links: BTreeSet<String> = list_root_links()?.into_iter().collect();
        let first = preferred_subnet(tag);
        let subnet = (0..250u16)
            .map(|k| ((u16::from(first) - 1 + k) % 250) as u8 + 1)
            .find(|x| !used.contains(x) && !links.contains(&format!("{PREFIX}-x{x}")))
            .ok_or_else(|| anyhow::anyhow!("no free subnet in {NET_A}.{NET_B}.1-250.0/24"))?;

        let mut net = Net {
            tag: tag.to_owned(),
            subnet,
            namespaces: (1..=n).map(|i| format!("{prefix}-{i}")).collect(),
            bridge_ns: format!("{prefix}-br"),
            host_link: format!("{PREFIX}-x{subnet}"),
            owns_file: false,
        };
        // From here on, a failure drops `net`, which removes whatever was created.
        std::fs::create_dir_all(OWNER_DIR)
            .map_err(|e| anyhow::anyhow!("create {OWNER_DIR}: {e}"))?;
        let owner = owner_path(&prefix);
        std::fs::write(&owner, Owner::me(subnet)?.encode())
            .map_err(|e| anyhow::anyhow!("write {}: {e}", owner.display()))?;
        net.owns_file = true;
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> anyhow::Result<()> {
        let br = self.bridge_ns.as_str();
        ip(["netns", "add", br])?;
        ip(["-n", br, "link", "set", "lo", "up"])?;
        ip([
            "-n",
            br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ])?;
        ip(["-n", br, "link", "set", "br0", "up"])?;

        let host = self.host_link.as_str();
        ip([
            "link", "add", host, "type", "veth", "peer", "name", "uplink", "netns", br,
        ])?;
        let host_cidr = format!("{}/24", self.host_addr());
        ip(["addr", "add", &host_cidr, "dev", host])?;
        ip(["link", "set", host, "up"])?;
        ip([
            "-n", br, "link", "set", "dev", "uplink", "master", "br0", "up",
        ])?;

        for (k, ns) in self.namespaces.iter().enumerate() {
            let i = k + 1;
            let port = format!("n{i}");
            ip(["netns", "add", ns])?;
            ip(["-n", ns, "link", "set", "lo", "up"])?;
            ip([
                "-n", br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(["-n", br, "link", "set", "dev", &port, "master", "br0", "up"])?;
            let cidr = format!("{}/24", self.addr(i));
            ip(["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Number of node namespaces.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// Node `i`'s address (`i` from 1).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(NET_A, NET_B, self.subnet, i as u8)
    }

    /// The root namespace's address on the node subnet (where the workload's packets come from).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(NET_A, NET_B, self.subnet, HOST_OCTET)
    }

    /// Node `i`'s namespace name (`i` from 1).
    pub fn ns(&self, i: usize) -> &str {
        &self.namespaces[self.index(i)]
    }

    fn index(&self, i: usize) -> usize {
        assert!(
            (1..=self.namespaces.len()).contains(&i),
            "node {i} is not in this network of {} nodes",
            self.namespaces.len()
        );
        i - 1
    }

    /// `iptables -w ARGS..` inside node `i`'s namespace.
    fn iptables(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", self.ns(i), "iptables", "-w"])
            .args(args))
    }

    /// Node `i` can neither send to nor receive from any other node; the root namespace (the
    /// workload) still reaches it. Connections between them stall (packets are dropped, not
    /// refused), as in a real partition.
    pub fn isolate(&self, i: usize) -> anyhow::Result<()> {
        self.index(i);
        for j in (1..=self.len()).filter(|j| *j != i) {
            let peer = self.addr(j).to_string();
            self.iptables(i, &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
            self.iptables(i, &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Packets from node `from` arriving at node `i` are dropped; packets from `i` still reach
    /// `from` (so a TCP connection either way stalls, but `from` keeps receiving what `i` sends).
    pub fn drop_inbound(&self, i: usize, from: usize) -> anyhow::Result<()> {
        self.index(from);
        if i == from {
            anyhow::bail!("drop_inbound: node {i} cannot be cut from itself");
        }
        let peer = self.addr(from).to_string();
        self.iptables(i, &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
        Ok(())
    }

    /// Node `i`'s current rules (`iptables -S`), for the record.
    pub fn rules(&self, i: usize) -> anyhow::Result<String> {
        self.iptables(i, &["-S"])
    }

    /// Removes every rule in every node namespace.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 1..=self.len() {
            self.iptables(i, &["-F"])?;
        }
        Ok(())
    }

    /// Removes namespaces, links and owner files that runs no longer alive left behind (a run is
    /// alive while the process that wrote its owner file is), after killing any process still
    /// inside those namespaces. Returns what it removed.
    pub fn cleanup_stale() -> anyhow::Result<Vec<String>> {
        let mut removed = Vec::new();
        let live = |prefix: &str| read_owner(prefix).filter(Owner::is_alive);
        let mut live_links = BTreeSet::new();
        for ns in list_namespaces()? {
            if !ns.starts_with(&format!("{PREFIX}-")) {
                continue;
            }
            let Some((prefix, _)) = ns.rsplit_once('-') else {
                continue;
            };
            if let Some(o) = live(prefix) {
                live_links.insert(format!("{PREFIX}-x{}", o.subnet));
                continue;
            }
            let killed = kill_namespace_processes(&ns);
            ip(["netns", "del", &ns])?;
            removed.push(if killed > 0 {
                format!("namespace {ns} (killed {killed} processes in it)")
            } else {
                format!("namespace {ns}")
            });
        }
        // Owner files of dead runs; and the subnets of live ones.
        if let Ok(rd) = std::fs::read_dir(OWNER_DIR) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(prefix) = name.strip_suffix(".owner") else {
                    continue;
                };
                match live(prefix) {
                    Some(o) => {
                        live_links.insert(format!("{PREFIX}-x{}", o.subnet));
                    }
                    None => {
                        std::fs::remove_file(e.path()).map_err(|err| {
                            anyhow::anyhow!("remove {}: {err}", e.path().display())
                        })?;
                        removed.push(format!("owner file {}", e.path().display()));
                    }
                }
            }
        }
        // Root-namespace links: a veth dies with its peer's namespace, but the namespace's
        // teardown is asynchronous, and older layouts put a bridge here.
        for link in list_root_links()? {
            if link.starts_with(PREFIX) && !live_links.contains(&link) {
                match ip(["link", "del", &link]) {
                    Ok(_) => removed.push(format!("link {link}")),
                    // Gone meanwhile with its namespace.
                    Err(_) if !list_root_links()?.contains(&link) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    /// Removes everything this network created; reports what could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        // Deleting one end of a veth deletes the pair, synchronously (namespace deletion is not).
        if list_root_links().is_ok_and(|l| l.contains(&self.host_link)) {
            if let Err(e) = ip(["link", "del", &self.host_link]) {
                problems.push(e.to_string());
            }
        }
        let existing = list_namespaces().unwrap_or_default();
        for ns in self.namespaces.iter().chain([&self.bridge_ns]) {
            if existing.contains(ns) {
                kill_namespace_processes(ns);
                if let Err(e) = ip(["netns", "del", ns]) {
                    problems.push(e.to_string());
                }
            }
        }
        if self.owns_file {
            let p = owner_path(&format!("{PREFIX}-{}", self.tag));
            if let Err(e) = std::fs::remove_file(&p) {
                problems.push(format!("remove {}: {e}", p.display()));
            }
            self.owns_file = false;
        }
        problems
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in self.teardown() {
            eprintln!("skein-faults: tearing down network {}: {p}", self.tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn tags_are_checked_and_subnets_spread() {
        assert!(check_tag("run1").is_ok());
        assert!(check_tag("a-b_c").is_ok());
        assert!(check_tag("").is_err());
        assert!(check_tag("a b").is_err());
        assert!(check_tag(&"x".repeat(TAG_LEN_MAX + 1)).is_err());
        let subnets: BTreeSet<u8> = (0..50)
            .map(|k| preferred_subnet(&format!("t{k}")))
            .collect();
        assert!(subnets.len() > 30, "{subnets:?}");
        assert!(subnets.iter().all(|x| (1..=250).contains(x)));
    }

    #[test]
    fn owner_files_round_trip_and_know_the_living() {
        let me = Owner::me(7).expect("own stat");
        assert_eq!(Owner::decode(&me.encode()), Some(me.clone()));
        assert!(me.is_alive());
        let ghost = Owner {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!ghost.is_alive());
        assert_eq!(Owner::decode("12 x 3"), None);
    }

    #[test]
    fn command_errors_name_the_command_and_its_stderr() {
        let e = run(Command::new("ls").arg("/definitely/not/here"))
            .expect_err("ls of a missing path fails")
            .to_string();
        assert!(e.contains("ls /definitely/not/here"), "{e}");
        assert!(e.contains("No such file"), "{e}");
    }

    /// Whether a TCP connection to `addr` opens within `timeout`, from namespace `ns` (`None`:
    /// the root namespace). The in-namespace probe runs bash's `/dev/tcp` under `ip netns exec`.
    fn reachable(ns: Option<&str>, addr: SocketAddr, timeout: Duration) -> bool {
        match ns {
            None => TcpStream::connect_timeout(&addr, timeout).is_ok(),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "timeout"])
                .arg(format!("{}", timeout.as_secs_f64()))
                .args(["bash", "-c"])
                .arg(format!("echo > /dev/tcp/{}/{}", addr.ip(), addr.port()))
                .output()
                .is_ok_and(|o| o.status.success()),
        }
    }

    /// Manual check of the namespaces and the iptables faults. Needs root, `ip`, `iptables` and
    /// `bash`, hence ignored; run it with
    /// `cargo test -p skein-tests --bin skein-faults netns_smoke -- --ignored --nocapture`.
    ///
    /// Creates a network of 3, runs a TCP echo server in namespace 1 (this test binary re-run
    /// under `ip netns exec` as `netns_echo_server`), checks that namespace 2 and the root
    /// namespace reach it, isolates node 1 (2 no longer reaches it, the root still does), heals,
    /// checks the asymmetric `drop_inbound`, and checks that nothing is left behind.
    #[test]
    #[ignore = "needs root: creates network namespaces"]
    fn netns_smoke() {
        let removed = Net::cleanup_stale().expect("cleanup_stale");
        println!("cleanup_stale removed (before): {removed:?}");

        // What a run killed with SIGKILL leaves: its namespaces, a process in one, the root
        // link, and an owner file naming a process that is gone.
        let stale = format!("skf-stale{}", std::process::id() % 100_000);
        let stale_ns = format!("{stale}-1");
        ip(["netns", "add", &stale_ns]).expect("stale namespace");
        ip([
            "link", "add", "skf-x251", "type", "veth", "peer", "name", "eth0", "netns", &stale_ns,
        ])
        .expect("stale link");
        let mut sleeper = Command::new("ip")
            .args(["netns", "exec", &stale_ns, "sleep", "600"])
            .spawn()
            .expect("process in the stale namespace");
        std::fs::create_dir_all(OWNER_DIR).expect("owner dir");
        let dead = Owner {
            pid: std::process::id(),
            start_time: 1,
            subnet: 251,
        };
        std::fs::write(owner_path(&stale), dead.encode()).expect("stale owner file");
        let removed = Net::cleanup_stale().expect("cleanup_stale");
        println!("cleanup_stale removed (simulated crash): {removed:?}");
        assert!(
            removed
                .iter()
                .any(|r| r.contains(&stale_ns) && r.contains("killed 1")),
            "{removed:?}"
        );
        assert!(!list_namespaces().expect("list").contains(&stale_ns));
        assert!(!list_root_links()
            .expect("links")
            .contains(&"skf-x251".to_owned()));
        assert!(!owner_path(&stale).exists());
        let status = sleeper.wait().expect("reap the sleeper");
        assert!(!status.success(), "the stale process was killed: {status}");

        let tag = format!("smoke{}", std::process::id() % 100_000);
        let net = Net::create(&tag, 3).expect("create network");
        println!(
            "network {tag}: host {}, nodes {} {} {}",
            net.host_addr(),
            net.addr(1),
            net.addr(2),
            net.addr(3)
        );
        assert_eq!(net.ns(2), format!("skf-{tag}-2"));
        let server_addr = SocketAddr::from((net.addr(1), 7000));
        let exe = std::env::current_exe().expect("current exe");
        let mut server = Command::new("ip")
            .args(["netns", "exec", net.ns(1)])
            .arg(&exe)
            .args([
                "net::tests::netns_echo_server",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("SKF_ECHO_ADDR", server_addr.to_string())
            .spawn()
            .expect("start echo server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reachable(None, server_addr, Duration::from_millis(200)) {
            assert!(Instant::now() < deadline, "echo server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        // An echo round trip from the root namespace.
        let mut s = TcpStream::connect(server_addr).expect("connect from root");
        s.write_all(b"ping\n").expect("write");
        let mut buf = [0u8; 5];
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.read_exact(&mut buf).expect("echo");
        assert_eq!(&buf, b"ping\n");
        drop(s);

        let short = Duration::from_secs(1);
        assert!(reachable(Some(net.ns(2)), server_addr, short), "2 -> 1");
        assert!(reachable(None, server_addr, short), "root -> 1");

        net.isolate(1).expect("isolate 1");
        println!(
            "rules of node 1 while isolated:\n{}",
            net.rules(1).expect("rules")
        );
        assert!(
            !reachable(Some(net.ns(2)), server_addr, short),
            "2 -> 1 while isolated"
        );
        assert!(
            !reachable(Some(net.ns(3)), server_addr, short),
            "3 -> 1 while isolated"
        );
        assert!(
            reachable(None, server_addr, short),
            "root -> 1 while isolated"
        );
        net.heal().expect("heal");
        assert_eq!(
            net.rules(1)
                .expect("rules")
                .lines()
                .filter(|l| l.starts_with("-A"))
                .count(),
            0
        );
        assert!(
            reachable(Some(net.ns(2)), server_addr, short),
            "2 -> 1 healed"
        );

        // Asymmetric: 1 drops what 2 sends; 3 is unaffected; a listener in 2 still receives
        // 1's packets (observed as the SYN reaching it: the counter of an ACCEPT rule moves).
        net.drop_inbound(1, 2).expect("drop_inbound");
        assert!(
            !reachable(Some(net.ns(2)), server_addr, short),
            "2 -> 1 dropped"
        );
        assert!(
            reachable(Some(net.ns(3)), server_addr, short),
            "3 -> 1 still flows"
        );
        run(Command::new("ip")
            .args([
                "netns",
                "exec",
                net.ns(2),
                "iptables",
                "-w",
                "-A",
                "INPUT",
                "-s",
            ])
            .arg(net.addr(1).to_string())
            .args(["-p", "tcp", "--dport", "7001", "-j", "ACCEPT"]))
        .expect("counting rule");
        let _ = reachable(
            Some(net.ns(1)),
            SocketAddr::from((net.addr(2), 7001)),
            short,
        );
        let counters = run(Command::new("ip").args([
            "netns",
            "exec",
            net.ns(2),
            "iptables",
            "-w",
            "-L",
            "INPUT",
            "-v",
            "-n",
            "-x",
        ]))
        .expect("counters");
        println!("node 2's INPUT counters after 1 -> 2 connects:\n{counters}");
        let packets: u64 = counters
            .lines()
            .find(|l| l.contains("dpt:7001"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("counter line");
        assert!(
            packets >= 1,
            "1 -> 2 packets arrive while 2 -> 1 is dropped"
        );
        net.heal().expect("heal");

        let _ = server.kill();
        let _ = server.wait();
        let namespaces: Vec<String> = net.namespaces.clone();
        drop(net);
        let left = list_namespaces().expect("list");
        for ns in &namespaces {
            assert!(!left.contains(ns), "{ns} left behind: {left:?}");
        }
        assert!(
            !Path::new(&owner_path(&format!("skf-{tag}"))).exists(),
            "owner file left behind"
        );
    }

    /// Helper process of `netns_smoke`: a TCP echo server on `$SKF_ECHO_ADDR`. Does nothing
    /// when the variable is not set.
    #[test]
    #[ignore = "helper of netns_smoke"]
    fn netns_echo_server() {
        let Ok(addr) = std::env::var("SKF_ECHO_ADDR") else {
            return;
        };
        let l = std::net::TcpListener::bind(&addr).expect("bind echo server");
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }
}
